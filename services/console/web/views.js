// kefu console views: each renders one part of the state when it changed.
// Text goes in through textContent only, never as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const K = () => window.KEFU;
  const t = (k, v) => K().t(k, v);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function dur(sec) {
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return t("sec", { n: sec });
    if (sec < 3600) return t("min", { m: Math.floor(sec / 60), s: sec % 60 });
    return t("hour", { h: Math.floor(sec / 3600), m: Math.floor((sec % 3600) / 60) });
  }
  function since(iso) {
    if (!iso) return "";
    return dur((Date.now() - Date.parse(iso)) / 1000);
  }
  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleTimeString(K().lang === "en" ? "en-GB" : "zh-CN", { hour: "2-digit", minute: "2-digit" });
  }
  function empty(list, key) {
    list.replaceChildren(el("li", "empty", t(key)));
  }

  // Queue: a virtual table, so 10,000 waiting customers cost as much as
  // the 12 rows on screen.
  const ROW = 40;
  let queueRows = [];
  function renderQueue(st) {
    const f = $("q-filter").value.trim().toLowerCase();
    let rows = Array.from(st.waiting.values());
    if (f) rows = rows.filter((w) => w.openid.toLowerCase().includes(f) || (w.kf_account || "").toLowerCase().includes(f));
    rows.sort((a, b) => (a.position || 1e9) - (b.position || 1e9) || (Date.parse(a.since || 0) - Date.parse(b.since || 0)));
    queueRows = rows;
    $("queue-table").setAttribute("aria-rowcount", String(rows.length + 1));
    drawQueue();
    const s = st.summary || {};
    const listed = Array.from(st.waiting.values()).filter((w) => w.listed).length;
    const beyond = $("q-beyond");
    beyond.textContent = "";
    if (s.unlisted > 0) {
      beyond.textContent = t("beyond", { n: s.unlisted, m: listed || 100 });
      if (s.tail && !s.tail.unknown) beyond.textContent += " · " + t("tail", { w: dur(s.tail.wait_seconds), p: dur(s.tail.wait_p90_seconds) });
    }
  }
  function drawQueue() {
    const body = $("queue-body"), scroll = $("queue-scroll");
    body.style.height = (queueRows.length * ROW) + "px";
    if (!queueRows.length) {
      body.style.height = "";
      body.replaceChildren(el("div", "empty", t("emptyQueue")));
      return;
    }
    const first = Math.max(0, Math.floor(scroll.scrollTop / ROW) - 5);
    const last = Math.min(queueRows.length, first + Math.ceil((scroll.clientHeight || 480) / ROW) + 10);
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const w = queueRows[i];
      const r = el("div", "tr");
      r.setAttribute("role", "row");
      r.setAttribute("aria-rowindex", String(i + 2));
      r.dataset.openid = w.openid;
      r.style.transform = "translateY(" + (i * ROW) + "px)";
      r.appendChild(cell("c-pos", w.position ? String(w.position) : "–"));
      r.appendChild(cell("c-id mono", w.openid));
      r.appendChild(cell("c-wait", w.since ? since(w.since) : ""));
      const est = cell("c-est");
      if (w.unknown) est.appendChild(el("span", "muted", t("unknownEstimate")));
      else if (!w.estimated) est.appendChild(el("span", "muted", t("noEstimate")));
      else {
        const wait = w.wait_seconds || 0, p90 = w.wait_p90_seconds || 0; // zero values are left out
        const left = wait - (Date.now() - Date.parse(w.estimated_at)) / 1000;
        est.appendChild(el("span", "est", "≈ " + dur(Math.max(0, left))));
        est.appendChild(el("span", "band", " (P90 " + dur(Math.max(0, p90 - (wait - left))) + ")"));
      }
      if (w.extra) for (const k in w.extra) est.appendChild(el("span", "chip", k + ": " + w.extra[k]));
      r.appendChild(est);
      r.appendChild(cell("c-kf", w.kf_account || ""));
      frag.appendChild(r);
    }
    body.replaceChildren(frag);
  }
  function cell(cls, text) {
    const c = el("span", cls, text);
    c.setAttribute("role", "cell");
    return c;
  }

  function renderServed(st) {
    const list = $("served-list");
    const items = Array.from(st.served.values()).reverse().slice(0, 12);
    if (!items.length) return empty(list, "emptyList");
    list.replaceChildren(...items.map((s) => {
      const li = el("li");
      li.dataset.openid = s.openid;
      li.appendChild(el("span", "mono", s.openid));
      li.appendChild(el("span", "muted", t("by", { kf: s.kf_account }) + (s.waited_seconds ? " · " + t("waitedFor", { t: dur(s.waited_seconds) }) : "")));
      if (s.estimated) li.appendChild(el("span", s.actual_seconds <= s.p90_seconds ? "ok" : "warn", t("predicted", { p: dur(s.predicted_seconds), a: dur(s.actual_seconds) })));
      li.appendChild(el("time", "muted", clock(s.at)));
      return li;
    }));
  }
  function renderLeft(st) {
    const list = $("left-list");
    const items = Array.from(st.left.values()).reverse().slice(0, 12);
    if (!items.length) return empty(list, "emptyList");
    list.replaceChildren(...items.map((l) => {
      const li = el("li");
      li.appendChild(el("span", "mono", l.openid));
      li.appendChild(el("span", "muted", t("leftReason_" + l.reason) + " · " + t("after", { t: dur(l.waited_seconds) })));
      li.appendChild(el("time", "muted", clock(l.at)));
      return li;
    }));
  }

  function renderAgents(st) {
    const box = $("agents");
    const agents = Array.from(st.agents.values()).sort((a, b) => a.kf_account.localeCompare(b.kf_account));
    if (!agents.length) return box.replaceChildren(el("p", "empty", t("emptyAgents")));
    const stale = (st.summary && st.summary.stale_after_seconds) || 1800;
    const groupsOf = {};
    for (const g of st.groups.values()) for (const m of g.members) (groupsOf[m] = groupsOf[m] || []).push(g.name);
    const canAct = document.body.classList.contains("can-act");
    const focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.openid : null;
    box.replaceChildren(...agents.map((a) => {
      const card = el("div", "agent");
      card.dataset.kf = a.kf_account;
      const head = el("div", "agent-head");
      head.appendChild(el("strong", null, a.kf_account));
      head.appendChild(el("span", "pill on", t(a.status === 2 ? "statusMobile" : a.status === 3 ? "statusBoth" : "statusPC")));
      card.appendChild(head);
      const n = a.sessions.length, cap = Math.max(a.auto_accept, 1);
      const bar = el("div", "bar");
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuenow", String(n));
      bar.setAttribute("aria-valuemax", String(cap));
      bar.setAttribute("aria-label", t("chats", { a: n, b: a.auto_accept }));
      const fill = el("span", n >= cap ? "full" : "");
      fill.style.width = Math.min(100, (n / cap) * 100) + "%";
      bar.appendChild(fill);
      card.appendChild(bar);
      card.appendChild(el("div", "muted small", t("chats", { a: n, b: a.auto_accept }) + (groupsOf[a.kf_account] ? " · " + t("groupsOf") + ": " + groupsOf[a.kf_account].join(", ") : "")));
      const ul = el("ul", "sessions");
      if (!n) ul.appendChild(el("li", "muted small", t("sessionsNone")));
      for (const s of a.sessions) {
        const age = (Date.now() - Date.parse(s.since)) / 1000;
        const li = el("li", age > stale ? "stale" : "");
        li.dataset.openid = s.openid;
        li.appendChild(el("span", "mono", s.openid));
        li.appendChild(el("span", "muted", dur(age)));
        if (age > stale) li.appendChild(el("span", "flag", t("stale")));
        if (canAct) {
          const b = el("button", "ghost small action close-session" + (armed === s.openid ? " armed" : ""), armed === s.openid ? t("confirmClose", { id: "" }).trim() : t("close"));
          b.type = "button";
          b.dataset.openid = s.openid;
          b.dataset.kf = a.kf_account;
          li.appendChild(b);
        }
        ul.appendChild(li);
      }
      card.appendChild(ul);
      return card;
    }));
    if (focused) {
      const b = box.querySelector('button[data-openid="' + CSS.escape(focused) + '"]');
      if (b) b.focus();
    }
  }

  // Predicted against actual wait, on the same scale; the P90 band of each
  // point is a vertical tick.
  function renderAccuracy(st) {
    const svg = $("plot");
    const pts = Array.from(st.served.values()).filter((s) => s.estimated);
    const NS = "http://www.w3.org/2000/svg";
    const mk = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      if (text) e.textContent = text;
      return e;
    };
    const x0 = 40, y0 = 190, w = 270, h = 175;
    let max = 60;
    for (const p of pts) max = Math.max(max, p.predicted_seconds, p.actual_seconds, p.p90_seconds);
    max = Math.ceil(max / 60) * 60;
    const sx = (v) => x0 + (v / max) * w, sy = (v) => y0 - (v / max) * h;
    const kids = [mk("line", { x1: x0, y1: y0, x2: x0 + w, y2: y0, class: "axis" }), mk("line", { x1: x0, y1: y0, x2: x0, y2: y0 - h, class: "axis" }),
      mk("line", { x1: sx(0), y1: sy(0), x2: sx(max), y2: sy(max), class: "diag" }),
      mk("text", { x: x0 + w, y: y0 + 16, class: "tick", "text-anchor": "end" }, dur(max)),
      mk("text", { x: x0 - 4, y: y0 - h + 4, class: "tick", "text-anchor": "end" }, dur(max)),
      mk("text", { x: x0 - 4, y: y0 + 4, class: "tick", "text-anchor": "end" }, "0")];
    for (const p of pts) {
      kids.push(mk("line", { x1: sx(p.predicted_seconds), x2: sx(p.predicted_seconds), y1: sy(0), y2: sy(p.p90_seconds), class: "band" }));
      kids.push(mk("circle", { cx: sx(p.predicted_seconds), cy: sy(p.actual_seconds), r: 4, class: p.actual_seconds <= p.p90_seconds ? "pt ok" : "pt warn" }));
    }
    if (!pts.length) kids.push(mk("text", { x: x0 + w / 2, y: y0 - h / 2, class: "tick", "text-anchor": "middle" }, t("noSamples")));
    svg.replaceChildren(...kids);
    const a = st.accuracy || {};
    const dl = $("acc");
    const row = (k, v) => [el("dt", null, t(k)), el("dd", null, v)];
    dl.replaceChildren(...row("n", String(a.n || 0)), ...row("mae", a.n ? dur(a.mae_seconds) : "–"),
      ...row("bias", a.n ? (a.bias_seconds >= 0 ? "+" : "−") + dur(Math.abs(a.bias_seconds)) : "–"),
      ...row("cov", a.n ? Math.round(a.p90_coverage * 100) + "%" : "–"));
  }

  function renderPace(st) {
    const svg = $("pace");
    const h = (st.pace && st.pace.history) || [];
    const NS = "http://www.w3.org/2000/svg";
    if (h.length < 2) return svg.replaceChildren();
    let lo = Infinity, hi = 0;
    for (const p of h) { lo = Math.min(lo, p.seconds); hi = Math.max(hi, p.seconds); }
    if (hi === lo) { hi += 1; lo -= 1; }
    const d = h.map((p, i) => (i ? "L" : "M") + (5 + (i / (h.length - 1)) * 310).toFixed(1) + " " + (55 - ((p.seconds - lo) / (hi - lo)) * 50).toFixed(1)).join(" ");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", "spark");
    svg.replaceChildren(path);
  }

  function renderSummary(st) {
    const s = st.summary || {};
    $("s-waiting").textContent = String(s.waiting_count || st.waiting.size);
    $("s-unlisted").textContent = s.unlisted ? t("beyond", { n: s.unlisted, m: 100 }) : "";
    $("s-served").textContent = String(st.served.size);
    $("s-left").textContent = st.left.size ? t("left") + " " + st.left.size : "";
    $("s-agents").textContent = String(st.agents.size);
    let n = 0, cap = 0;
    for (const a of st.agents.values()) { n += a.sessions.length; cap += a.auto_accept; }
    $("s-load").textContent = st.agents.size ? t("chats", { a: n, b: cap }) : "";
    $("s-session").textContent = s.mean_session_seconds ? dur(s.mean_session_seconds) : "–";
    $("s-pace").textContent = st.pace ? t("paceChanges", { n: st.pace.changes || 0 }) : "";
    const a = st.accuracy || {};
    $("s-coverage").textContent = a.n ? Math.round(a.p90_coverage * 100) + "%" : "–";
    $("s-mae").textContent = a.n ? t("mae") + " " + dur(a.mae_seconds) : "";
  }

  function renderPosts(items) {
    const list = $("posts");
    if (!items.length) return empty(list, "emptyPosts");
    list.replaceChildren(...items.slice(0, 30).map((p) => {
      const li = el("li", "post");
      li.dataset.id = p.id;
      const head = el("div", "post-head");
      head.appendChild(el("strong", null, p.nick_name || p.openid));
      head.appendChild(el("span", "mono muted", p.openid));
      head.appendChild(el("time", "muted", clock(p.created_at)));
      li.appendChild(head);
      li.appendChild(el("p", null, p.content));
      const meta = el("div", "muted small", p.session ? t("lastSession", { kf: p.session.kf_account, t: clock(p.session.closed_at || p.session.started_at) }) : t("noSession"));
      if (p.reply_count) meta.textContent += " · " + t("replies", { n: p.reply_count });
      li.appendChild(meta);
      for (const r of p.replies || []) {
        const rp = el("blockquote", r.is_admin ? "reply staff" : "reply");
        rp.appendChild(el("strong", null, (r.is_admin ? t("admin") + " · " : "") + (r.nick_name || "")));
        rp.appendChild(document.createTextNode(" " + r.content));
        li.appendChild(rp);
      }
      return li;
    }));
  }
  let armed = null; // the session whose close button was pressed once
  let postFilter = null; // posts from a filter query, or null: the live ones

  function renderGroups(st) {
    const ul = $("groups");
    const gs = Array.from(st.groups.values()).sort((a, b) => a.name.localeCompare(b.name));
    ul.replaceChildren(...gs.map((g) => {
      const li = el("li");
      li.appendChild(el("strong", null, g.name));
      li.appendChild(el("span", "muted", t("members") + ": " + (g.members.join(", ") || "–")));
      li.appendChild(el("span", "muted", t("kw") + ": " + (g.keywords.join(", ") || "–")));
      return li;
    }));
    const sel = $("c-target"), cur = sel.value;
    const og1 = el("optgroup"), og2 = el("optgroup");
    og1.label = t("agentsOpt");
    og2.label = t("groupsOpt");
    for (const a of st.agents.values()) { const o = el("option", null, a.kf_account); o.value = "kf:" + a.kf_account; og1.appendChild(o); }
    for (const g of gs) { const o = el("option", null, g.name); o.value = "group:" + g.name; og2.appendChild(o); }
    sel.replaceChildren(og1, og2);
    if (cur) sel.value = cur;
  }

  window.KEFU_VIEWS = {
    render(st, dirty) {
      if (dirty.has("waiting") || dirty.has("summary")) renderQueue(st);
      if (dirty.has("served")) { renderServed(st); renderAccuracy(st); }
      if (dirty.has("accuracy")) renderAccuracy(st);
      if (dirty.has("left")) renderLeft(st);
      if (dirty.has("agents") || dirty.has("groups") || dirty.has("summary")) renderAgents(st);
      if (dirty.has("pace")) renderPace(st);
      if (dirty.has("groups") || dirty.has("agents")) renderGroups(st);
      if (dirty.has("posts") && !postFilter) renderPosts(Array.from(st.posts.values()).sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at)));
      if (postFilter && dirty.has("posts") && dirty.size > 8) renderPosts(postFilter);
      renderSummary(st);
    }
  };

  function result(ok, msg) {
    const r = $("action-result");
    r.className = "result " + (ok ? "ok" : "warn");
    r.textContent = ok ? t("done") : t("failed", { e: msg });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("queue-scroll").addEventListener("scroll", () => requestAnimationFrame(drawQueue));
    $("q-filter").addEventListener("input", () => { K().dirty.add("waiting"); K().schedule(); });
    $("f-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const openid = $("f-openid").value.trim();
      if (!openid) { postFilter = null; K().dirty.add("posts"); K().schedule(); return; }
      try { postFilter = (await K().api("api/feedback", { openid })).items; renderPosts(postFilter); } catch (err) { result(false, err.message); }
    });
    // Closing a session: the button is in the agents card; the customer
    // goes in the POST body, never in a URL.
    $("agents").addEventListener("click", async (e) => {
      const b = e.target.closest("button.close-session");
      if (!b) return;
      // Two steps, no dialog: the first press asks, the second closes.
      if (armed !== b.dataset.openid) {
        armed = b.dataset.openid;
        b.textContent = t("confirmClose", { id: "" }).trim();
        b.classList.add("armed");
        return;
      }
      armed = null;
      b.disabled = true;
      try { await K().api("api/kf/sessions/close", { openid: b.dataset.openid, kf_account: b.dataset.kf }); result(true); } catch (err) { result(false, err.message); b.disabled = false; }
    });
    $("create-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const target = $("c-target").value, body = { openid: $("c-openid").value.trim() };
      if (target.startsWith("kf:")) body.kf_account = target.slice(3); else body.group = target.slice(6);
      if ($("c-text").value.trim()) body.text = $("c-text").value.trim();
      try { await K().api("api/kf/sessions", body); result(true); } catch (err) { result(false, err.message); }
    });
    $("group-form").addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-group]");
      if (!b) return;
      const name = $("g-name").value.trim(), kws = $("g-keywords").value.split(/[,，]/).map((s) => s.trim()).filter(Boolean), member = $("g-member").value.trim();
      const calls = {
        create: ["api/kf/groups", { name, keywords: kws, members: member ? [member] : [] }],
        keywords: ["api/kf/groups/keywords", { name, keywords: kws }],
        add: ["api/kf/groups/members", { name, members: [member] }],
        remove: ["api/kf/groups/members/remove", { name, account: member }],
        delete: ["api/kf/groups/delete", { name }]
      };
      const c = calls[b.dataset.group];
      try { await K().api(c[0], c[1]); result(true); } catch (err) { result(false, err.message); }
    });
  });
})();
