// Texts of the console, each message in both languages: [Chinese, English].
// Chinese is the default, English switchable (kept in localStorage).
"use strict";
window.I18N = (() => {
  const texts = {
    skip: ["跳到内容", "Skip to content"], title: ["客服控制台", "Service console"], connecting: ["连接中…", "Connecting…"], live: ["实时", "Live"], offline: ["已断开，重连中…", "Disconnected, reconnecting…"],
    signout: ["退出", "Sign out"], signin: ["登录", "Sign in"], signinButton: ["登录", "Sign in"], token: ["令牌", "Token"],
    signinHint: ["使用管理令牌（KEFU_ADMIN_TOKEN）或只读令牌（KEFU_API_TOKEN）登录。", "Sign in with the admin token (KEFU_ADMIN_TOKEN) or the read-only token (KEFU_API_TOKEN)."],
    roleAdmin: ["管理员", "admin"], roleRead: ["只读", "read-only"],
    waitingNow: ["正在排队", "Waiting now"], servedRecent: ["近期接入", "Served recently"], agentsOnline: ["在线客服", "Agents online"], sessionLength: ["学习到的会话时长", "Learned session length"],
    coverage: ["P90 覆盖率", "P90 coverage"], queue: ["排队", "Queue"], filterCustomer: ["按客户筛选", "Filter by customer"], position: ["位置", "Pos."], customer: ["客户", "Customer"],
    waited: ["已等待", "Waited"], estimate: ["预计等待（P90）", "Estimate (P90)"], askedFor: ["指定客服", "Agent asked"], served: ["已接入", "Served"], left: ["已离开", "Left the queue"],
    agents: ["客服", "Agents"], accuracy: ["预估准确度", "How good the estimates are"], sessionTrend: ["会话时长变化", "Learned session length over time"], feedback: ["吐个槽反馈", "Tucao feedback"], search: ["查询", "Search"],
    plotCaption: ["近期接入客户：预计等待（横轴）与实际等待（纵轴），对角线为完全准确", "Recently served customers: predicted wait (x) against actual wait (y); the diagonal is a perfect estimate"],
    actions: ["操作", "Actions"], createSession: ["为客户创建会话", "Create a session for a customer"], agentOrGroup: ["客服账号或分组", "Agent or group"], note: ["附言（可选）", "Message (optional)"], create: ["创建", "Create"],
    groups: ["分组与关键词", "Groups and keywords"], groupName: ["分组名", "Group"], keywords: ["关键词（逗号分隔）", "Keywords (comma-separated)"], member: ["客服账号", "Agent account"],
    createGroup: ["新建分组", "Create group"], setKeywords: ["设置关键词", "Set keywords"], addMember: ["加入成员", "Add member"], removeMember: ["移除成员", "Remove member"], deleteGroup: ["删除分组", "Delete group"],
    emptyQueue: ["没有客户在排队", "Nobody is waiting"], emptyList: ["暂无", "None yet"], emptyAgents: ["没有在线客服", "No agent online"], emptyPosts: ["暂无反馈", "No feedback yet"],
    beyond: ["另有 {n} 位客户排在列出的 {m} 位之后", "{n} more customers wait beyond the {m} listed"], tail: ["最后一位预计 {w}（P90 {p}）", "the last one: about {w} (P90 {p})"],
    leftReason_left: ["主动离开", "asked to leave"], leftReason_vanished: ["离开队列", "left the queue"],
    unknownEstimate: ["无人可接待", "nobody online to serve"], noEstimate: ["估算中", "estimating"],
    statusPC: ["电脑在线", "online (PC)"], statusMobile: ["手机在线", "online (mobile)"], statusBoth: ["电脑和手机在线", "online (PC + mobile)"],
    chats: ["接待中 {a} / 上限 {b}", "{a} chats of {b}"], stale: ["可能已停滞", "possibly stale"], close: ["结束会话", "Close"], sessionsNone: ["没有进行中的会话", "No session in progress"],
    groupsOf: ["分组", "groups"], waitedFor: ["等待 {t}", "waited {t}"], by: ["由 {kf} 接待", "served by {kf}"], after: ["等待 {t} 后", "after {t}"],
    predicted: ["预计 {p}，实际 {a}", "predicted {p}, actual {a}"], n: ["样本", "samples"], mae: ["平均误差", "mean error"], bias: ["偏差", "bias"], cov: ["P90 覆盖率", "P90 coverage"],
    paceChanges: ["节奏变化 {n} 次", "{n} pace changes"], noSamples: ["还没有接入的客户可供比较", "No served customer to compare yet"],
    lastSession: ["上次会话：{kf}，{t}", "last session: {kf}, {t}"], noSession: ["未找到会话", "no session found"], replies: ["{n} 条回复", "{n} replies"], admin: ["官方", "staff"],
    confirmClose: ["确认结束？{id}", "Really close? {id}"], done: ["完成", "Done"], failed: ["失败：{e}", "Failed: {e}"],
    agentsOpt: ["客服", "Agents"], groupsOpt: ["分组", "Groups"], members: ["成员", "members"], kw: ["关键词", "keywords"],
    sec: ["{n}秒", "{n}s"], min: ["{m}分{s}秒", "{m}m {s}s"], hour: ["{h}小时{m}分", "{h}h {m}m"], ago: ["{t}前", "{t} ago"], now: ["刚刚", "just now"]
  };
  const zh = {}, en = {};
  for (const [key, [z, e]] of Object.entries(texts)) {
    zh[key] = z;
    en[key] = e;
  }
  return { zh, en };
})();
