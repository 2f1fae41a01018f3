// kefu console: signs in, follows the live stream (server-sent events) and
// keeps the state the views render. Collections are keyed maps the server
// changes with {c, k, v | del} operations; sections are replaced whole.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const K = window.KEFU = {
    lang: localStorage.getItem("kefu.lang") === "en" ? "en" : "zh",
    me: null, csrf: "",
    st: null,
    dirty: new Set(),
    // for tests and benchmarks: when the first state was on screen, and
    // how many changes were applied.
    metrics: { readyAt: 0, deltas: 0, lastSeq: 0 }
  };

  K.views = window.KEFU_VIEWS;

  K.t = function (key, vars) {
    let s = (I18N[K.lang] && I18N[K.lang][key]) || I18N.zh[key] || key;
    if (vars) for (const k in vars) s = s.split("{" + k + "}").join(vars[k]);
    return s;
  };

  K.applyLang = function () {
    document.documentElement.lang = K.lang === "en" ? "en" : "zh-CN";
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = K.t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = K.t(el.dataset.i18nPlaceholder); });
    $("lang").textContent = K.lang === "en" ? "中文" : "English";
    document.title = "kefu " + K.t("title");
    if (K.me) showWho();
    ["summary", "waiting", "served", "left", "agents", "accuracy", "pace", "posts", "groups"].forEach((c) => K.dirty.add(c));
    schedule();
  };

  const COLLECTIONS = ["waiting", "served", "left", "agents", "posts", "groups"];
  const KEYS = { waiting: "openid", served: "openid", left: "openid", agents: "kf_account", posts: "id", groups: "name" };

  function loadState(s) {
    const st = { seq: s.seq, summary: s.summary, accuracy: s.accuracy, pace: s.pace };
    for (const c of COLLECTIONS) {
      st[c] = new Map();
      for (const v of s[c] || []) st[c].set(v[KEYS[c]], v);
    }
    K.st = st;
    COLLECTIONS.concat(["summary", "accuracy", "pace"]).forEach((c) => K.dirty.add(c));
    schedule();
  }

  function applyDelta(d) {
    const st = K.st;
    if (!st) return;
    for (const o of d.ops) {
      const m = st[o.c];
      if (m instanceof Map) {
        if (o.del) m.delete(o.k);
        else {
          if (o.c === "served" || o.c === "left") m.delete(o.k); // newest last
          m.set(o.k, o.v);
          if (m.size > 200) m.delete(m.keys().next().value);
        }
      } else if (o.c === "summary" || o.c === "accuracy" || o.c === "pace") {
        st[o.c] = o.v;
      }
      K.dirty.add(o.c);
    }
    st.seq = d.seq;
    K.metrics.deltas++;
    K.metrics.lastSeq = d.seq;
    if (d.t) K.metrics.lastDelay = Date.now() - d.t;
    schedule();
  }

  let frame = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(render);
  }
  function render() {
    frame = 0;
    if (!K.st) return;
    const dirty = K.dirty;
    K.dirty = new Set();
    K.views.render(K.st, dirty);
    if (!K.metrics.readyAt && K.me) {
      K.metrics.readyAt = performance.now();
      document.body.dataset.ready = "1";
    }
  }

  // Live stream. EventSource reconnects by itself; when the session has
  // expired the reconnection is refused and the sign-in form comes back.
  let es = null;
  function connect() {
    if (es) es.close();
    es = new EventSource("api/events");
    es.addEventListener("state", (e) => {
      K.metrics.stateAt = K.metrics.stateAt || performance.now();
      loadState(JSON.parse(e.data));
      setLive(true);
    });
    es.addEventListener("d", (e) => applyDelta(JSON.parse(e.data)));
    es.onopen = () => setLive(true);
    es.onerror = () => {
      setLive(false);
      if (es.readyState === EventSource.CLOSED && K.me) setTimeout(checkSession, 2000);
    };
  }
  function setLive(on) {
    $("live").classList.toggle("on", on);
    $("live-text").textContent = K.t(on ? "live" : "offline");
    $("live-text").dataset.i18n = on ? "live" : "offline";
  }

  async function api(path, body) {
    const opts = { method: body === undefined ? "GET" : "POST", headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-Kefu-Csrf"] = K.csrf;
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (_) { /* 204 */ }
    if (!r.ok) {
      // Errors are problem details: detail is the message (error is its
      // deprecated alias, kept for older servers).
      const msg = data && (data.detail || data.error);
      const err = new Error((msg && (data.errmsg ? msg + " (" + data.errcode + " " + data.errmsg + ")" : msg)) || r.statusText);
      err.status = r.status;
      throw err;
    }
    return data;
  }
  K.api = api;

  function signedIn(me) {
    K.metrics.signedInAt = K.metrics.signedInAt || performance.now();
    K.me = me;
    K.csrf = me.csrf;
    $("signin").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    $("actions").hidden = !me.actions;
    document.body.classList.toggle("can-act", !!me.actions);
    showWho();
    if (!es || es.readyState === EventSource.CLOSED) connect();
    K.dirty.add("agents");
    schedule();
  }
  function showWho() {
    const w = $("who");
    w.hidden = false;
    w.textContent = K.t(K.me.role === "admin" ? "roleAdmin" : "roleRead");
  }
  function showSignIn() {
    if (es) { es.close(); es = null; }
    K.me = null;
    // Nothing of the last session stays on the page.
    K.st = null;
    K.metrics.readyAt = 0;
    delete document.body.dataset.ready;
    document.body.classList.remove("can-act");
    ["queue-body", "served-list", "left-list", "agents", "posts", "groups"].forEach((id) => $(id).replaceChildren());
    $("main").hidden = true;
    $("logout").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    setLive(false);
    $("token").focus();
  }

  async function checkSession() {
    // The stream starts at once, beside the question of who is signed in:
    // a big queue's state is on its way while /api/me answers.
    if (!es || es.readyState === EventSource.CLOSED) connect();
    try { signedIn(await api("api/me")); } catch (e) { showSignIn(); }
  }

  // A one-time sign-in link carries its code after '#': browsers never
  // send it to a server, so it stays out of access logs; it is spent here
  // and taken off the address bar.
  async function signInFromLink() {
    const m = location.hash.match(/^#code=([A-Za-z0-9_-]{1,64})$/);
    if (!m) return false;
    history.replaceState(null, "", location.pathname);
    try { signedIn(await api("api/login", { code: m[1] })); return true; } catch (e) { return false; }
  }
  async function start() {
    K.applyLang();
    if (!(await signInFromLink())) checkSession();
  }
  window.addEventListener("hashchange", signInFromLink);

  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("signin-error").textContent = "";
    try {
      const me = await api("api/login", { token: $("token").value.trim() });
      $("token").value = "";
      signedIn(me);
    } catch (err) {
      $("signin-error").textContent = err.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("api/logout", {}); } catch (_) { /* signed out anyway */ }
    showSignIn();
  });
  $("lang").addEventListener("click", () => {
    K.lang = K.lang === "en" ? "zh" : "en";
    localStorage.setItem("kefu.lang", K.lang);
    K.applyLang();
  });

  K.schedule = schedule;
  // Every second the waiting times grow: redraw what shows them.
  setInterval(() => { K.dirty.add("waiting"); K.dirty.add("agents"); schedule(); }, 1000);
  document.addEventListener("DOMContentLoaded", start);
})();
