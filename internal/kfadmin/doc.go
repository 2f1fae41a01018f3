// Package kfadmin is kefu's 多客服 administration: the `kefu kf …` command
// line, the admin HTTP API under /api/kf/, the local agent groups, and the
// keyword Router that ingest asks which agent a customer goes to.
//
// # Groups
//
// WeChat's 多客服 has no agent groups (in WeChat's 多客服 API documentation,
// the account API knows only
// kf_account, nickname and password), so kefu keeps them itself, in the
// JetStream KV bucket kefu_groups: one key per group, the key being the
// group name (1–64 of A–Z a–z 0–9 '-' '_', a single NATS subject token), the
// value the JSON {name, members[], keywords[], updated_at}. Members are kf
// accounts (prefix@wechat-id); when the WeChat API is configured, an account
// getkflist does not list is refused (a typo would otherwise route
// customers to nobody), and with NATS alone only the form is checked.
// Deleting an account through kefu also takes it out of every group. `group
// list` shows each member's nickname, 工号 (kf_id), online state, load and
// whether a WeChat user is bound to it. Every change is a compare-and-set on the
// key's revision (KV Create for a new group, Update with the revision read,
// Delete with LastRevision), retried from a fresh read on conflict, so two
// admins adding members to the same group at once both see their change
// kept.
//
// # Choosing an agent
//
// [PickAgent] takes the online list (getonlinekflist) and returns the
// least-loaded online member: lowest accepted_case/auto_accept, then fewest
// customers already queued for that agent (getwaitcase's kf_account), then
// the account name. An auto_accept of 0 counts as 1 (see PickAgent).
//
// # Keyword routing
//
// [Router] implements ingest's Router interface. When a customer's text
// contains a group's keyword (case-insensitively), it answers the
// least-loaded online member of that group, and ingest's passive
// transfer_customer_service reply carries it in TransInfo/KfAccount, which
// queues the customer for that agent. When several keywords match, the
// longest (in characters) wins; between equally long ones, the one that
// occurs first in the text; then the group whose name sorts first. If the
// winning group has nobody online, the next matching group is tried; if none
// has, Route answers "" and 多客服 assigns any agent. Groups without members
// never match.
//
// Why the passive reply rather than kfsession/create: the reply costs no API
// call on the callback path, where WeChat gives up after 5 seconds and
// retries, and it cannot fail half-way (a create that times out may or may
// not have happened, and is not safe to retry on a customer's duplicate
// callback). It also respects the agent's auto-accept limit: the customer
// waits in the agent's queue instead of being pushed onto a full agent, as
// kfsession/create would do. The price is that a pinned customer waits for
// that agent only; that is why the Router only pins to online agents and
// stops pinning when its view of who is online is stale.
//
// Route never calls WeChat or NATS: the groups are followed with a KV watch
// (kv.WatchAll) and the online list and the queue are polled in the
// background every RefreshInterval (default 10 s), only while some group has
// members and keywords, so no API quota is spent otherwise. If the last good
// poll is older than MaxAge (default 3 intervals) — WeChat failing — or there
// has been none yet, Route answers "". Customers routed since the last poll
// are counted into their agent's accepted_case so that a burst of customers
// is spread over the group rather than all pinned to the agent that was
// least loaded at the poll; a customer who writes again before the next poll
// keeps the agent first chosen.
//
// Why the Router lives here and not in services/ingest, which runs it: it
// routes by the groups this package keeps (their keywords and members,
// validated by the same rules as `kefu kf group …` and /api/kf/groups) and
// picks with the same [PickAgent] as `kf session create --group`, so an
// admin's change and the router's reading of it cannot drift apart. Ingest
// sees only its small Router and Chooser interfaces and stays free of the
// WeChat API on the callback path; internal/app builds the Router for the
// ingest module (docs/architecture.md).
//
// # Customers' choice of agent
//
// With choice keywords configured (RouterConfig.Choice,
// $KEFU_KF_CHOOSE_KEYWORDS), the Router is also ingest's Chooser: a customer
// who sends a keyword gets a numbered menu of the online agents (nickname,
// 工号, load) or of the groups that have members, as a passive text reply;
// their number is answered with the passive transfer naming that agent in
// TransInfo/KfAccount (for a group, PickAgent's choice among its members),
// 0 with a transfer to any agent, and an agent offline or full, or a group
// with nobody online, with an explanation and the current menu. The menu a
// customer was shown waits ChoiceTTL in the kefu_kf_choice bucket, so any
// replica understands the number; each answered number is published as
// events.AgentChosen. The menu comes from the background poll (which then
// also reads getkflist for nicknames and 工号, every KfListInterval or when
// an unknown agent is online), never from a call on the callback path. With
// choice keywords the Router polls even when no group can route. See
// choice.go.
//
// # Command line
//
// [Run] executes what follows `kefu kf`:
//
//	kf account list
//	kf account add ACCOUNT --nickname N [--password P]
//	kf account update ACCOUNT --nickname N [--password P]
//	kf account delete ACCOUNT
//	kf account avatar ACCOUNT FILE
//	kf account invite ACCOUNT WECHAT_ID
//	kf online
//	kf waiting
//	kf session get OPENID
//	kf session list --kf ACCOUNT
//	kf session create --openid O (--kf ACCOUNT | --group G) [--text T]
//	kf session close --openid O --kf ACCOUNT [--text T]
//	kf group list
//	kf group create G [--keywords k1,k2]
//	kf group add G ACCOUNT...
//	kf group remove G ACCOUNT...
//	kf group keywords G --keywords k1,k2
//	kf group delete G
//
// `account invite` calls kfaccount/inviteworker: the WeChat user accepts in
// WeChat, and until then `account list` shows the invitation (invite_wx,
// invite_status waiting / rejected / expired, invite_expire_time); once
// accepted, kf_wx. WeChat refuses a second invitation while one waits
// (65411), an account already bound (65412), a user already an agent
// (65407) or already invited (65408), and an unknown WeChat id (65409).
//
// Flags and arguments may come in any order; --json anywhere prints exactly
// one JSON document (the same documents the HTTP API answers) instead of a
// table. Errors come back as one line; usage mistakes wrap [ErrUsage] (exit
// 2), everything else — a WeChat refusal shows its errcode and errmsg — is a
// failure (exit 1). Every command checks its arguments before it uses
// a backend, so [Run] with empty [Deps] answers help and usage mistakes and
// otherwise stops at [ErrNotConfigured] ([ErrWeChatNotConfigured] when it
// needs WeChat first) without calling WeChat or NATS: `kefu kf` does that
// before it connects anywhere. Passwords are given in clear and sent as their MD5, as
// kfaccount/add expects (wechat.KfAccountInput). Keywords split on ',' and
// on the full-width '，'.
//
// # Remote mode
//
// The commands run against a backend: directly on WeChat and the
// kefu_groups bucket (admin, on the server host), or through a running
// kefu's admin API ([Remote], `kefu kf --server URL`, set in [Deps].Remote),
// which answers the same documents, so both print the same. [ResolveRemote]
// picks the server (--server, else $KEFU_SERVER, else "server" in
// $XDG_CONFIG_HOME/kefu/cli.json) and the token ($KEFU_ADMIN_TOKEN, else
// "token" in that file, which must not be readable by group or others;
// never a flag). The client reads the problem details of an error answer
// (detail, else the older error, with WeChat's errcode and errmsg), says
// in one line what to set on a 401 and what to check when the server
// cannot be reached within $KEFU_SERVER_TIMEOUT (15 s), and follows no
// redirect. See docs/cli.md.
//
// # HTTP API
//
// [NewHTTPHandler] serves, behind "Authorization: Bearer <token>" (compared
// in constant time; missing or wrong → 401 with WWW-Authenticate): the GETs
// to $KEFU_ADMIN_TOKEN or the read-only $KEFU_API_TOKEN, the changes to
// $KEFU_ADMIN_TOKEN only (403 for the read-only one); with neither token
// configured nothing is served (404):
//
//	GET    /api/kf/accounts                          → {"kf_list":[…]}
//	POST   /api/kf/accounts                          {kf_account, nickname, password?} → 201
//	PUT    /api/kf/accounts/{account}                {nickname, password?}
//	DELETE /api/kf/accounts/{account}
//	POST   /api/kf/accounts/{account}/avatar         multipart/form-data, image in field "media" (≤ 5 MiB)
//	POST   /api/kf/accounts/{account}/invite         {invite_wx} → Outcome account.invited
//	GET    /api/kf/online                            → {"kf_online_list":[…]}
//	GET    /api/kf/waiting                           → {"count","listed","waitcaselist":[…]}
//	GET    /api/kf/sessions/{openid}                 → {"openid","kf_account","createtime"}
//	GET    /api/kf/sessions?kf=ACCOUNT               → {"kf_account","sessionlist":[…]}
//	POST   /api/kf/sessions                          {openid, kf_account (alias kf) | group, text?} → 201
//	POST   /api/kf/sessions/close                    {openid, kf_account (alias kf), text?}
//	GET    /api/kf/groups                            → {"groups":[…], "member_status":[…]}
//	POST   /api/kf/groups                            {name, keywords?, members?} → 201
//	GET    /api/kf/groups/{name}
//	DELETE /api/kf/groups/{name}
//	PUT    /api/kf/groups/{name}/keywords            {keywords: […]} ([] clears them)
//	POST   /api/kf/groups/{name}/members             {members: […]}
//	DELETE /api/kf/groups/{name}/members?account=A&account=B   (one change)
//	DELETE /api/kf/groups/{name}/members/{account}
//
// Changes answer the Group, or an Outcome {action, kf_account, openid,
// group, picked, invite_wx, removed_from_groups, warning}. Errors answer
// an RFC 9457 problem (application/problem+json: type, title, status,
// detail, and "error" repeating detail for 1.x clients), plus "errcode" and
// "errmsg" when WeChat refused (docs/http-api.md): bad JSON,
// unknown fields or invalid values (a member getkflist does not list) 400; no
// such group 404; wrong method 405; a group that exists, a conflicting
// concurrent change or nobody online in a group 409; body over 1 MiB
// (avatar: 5 MiB + 64 KiB) 413; WeChat refused or unreachable 502; a
// timeout 504; WeChat or NATS not configured 503. GET /api/kf/queue belongs
// to the estimator and is not served here.
package kfadmin
