// Package console is the supervisor console served at /console/: the live
// queue (every waiting customer with position, waiting time, estimate and
// P90 band, the agent asked for; the count beyond getwaitcase's 100; who
// was served and who left and why), the agents (status, chats against
// their auto-accept limit, groups, sessions with their age, stale ones
// flagged), how good the estimates are (predicted against actual wait,
// rolling error, P90 coverage, the learned session length and its changes
// of pace), the latest Tucao posts linked to the customer's last session,
// and, for an admin, the kf actions.
//
// # Sources
//
// The console reads only from the bus and the feedback store's query
// layer, never from another service's memory, so it runs in any role or
// alone (`kefu console`):
//
//   - KEFU_KF (kefu.kf.>), KEFU_WECHAT (kefu.wechat.kf.>: sessions and
//     customers joining the queue) and
//     KEFU_TUCAO (kefu.tucao.post.>) through ephemeral ordered consumers,
//     from Config.History (posts: Config.PostHistory) ago at start, then
//     live; after a failure or a redial each resumes at the sequence after
//     the last one applied;
//   - the estimator's queue view, key queue.<appid> of the kefu_state
//     bucket (the body of GET /api/kf/queue), and the kefu_groups bucket,
//     through KV watchers.
//
// Events the console does not know yet are still shown when they name a
// customer: a subject ending in ".joined" puts the customer in the queue,
// and the scalar fields of any kefu.kf.* event about a waiting customer
// appear on their row (at most 8, 64 characters each); the same holds for
// kefu.wechat.kf.* subjects other than sessions. So a queue-join
// event, positions inferred beyond the 100th or an agent-chosen event need
// no change here to be seen.
//
// # Live updates
//
// GET /console/api/events is a server-sent event stream: first a "state"
// event with the whole state (GET /console/api/state answers the same),
// then one "d" event per change, {seq, t, ops: [{c, k, v | del}]}, which
// the page applies to its copy. A change is encoded once and handed to
// every stream without blocking; a stream more than 1024 changes behind
// is closed and the browser's EventSource reconnects to a fresh state.
// At most Config.MaxStreams streams are open (503 beyond).
//
// # Access
//
// Sign-in (POST /console/api/login) takes the admin token
// (KEFU_ADMIN_TOKEN) or the read-only token (KEFU_API_TOKEN) in a JSON
// body, or a one-time code from a sign-in link (Path + "#code=…": the code
// is after '#', which a browser never sends, so it is in no access log; it
// is spent on first use and expires). The session cookie kefu_console is
// HttpOnly, SameSite=Strict, Path=/console/, Secure when the browser came
// over TLS (directly, or through a KEFU_TRUSTED_PROXIES proxy saying so
// with X-Forwarded-Proto), and signed with a key derived from both tokens:
// nothing is stored, every replica accepts it, and changing a token signs
// everyone out. Every POST needs the X-Kefu-Csrf header (an HMAC of the
// cookie, given by /console/api/me) and, when the browser sends
// Sec-Fetch-Site, a same-origin request. Read-only sessions see no actions
// and are refused them (403). No customer appears in a URL: filters and
// actions send the openid in POST bodies, and the console logs actions by
// name and status only. With neither token configured the console is not
// served (404), as /api/ is not.
//
// # Actions
//
// POST /console/api/kf/{action} with a JSON body runs the kf admin API
// (kfadmin.NewHTTPHandler, the code behind `kefu kf` and /api/kf/) with
// the admin token: sessions (create, {openid, kf_account | group, text?}),
// sessions/close ({openid, kf_account, text?}), groups ({name, keywords?,
// members?}), groups/keywords ({name, keywords}), groups/members ({name,
// members}), groups/members/remove ({name, account}), groups/delete
// ({name}). Its answer and errors are passed on unchanged.
//
// # Page
//
// The page (web/, embedded with go:embed: no CDN, no build step) is
// Chinese by default with English a click away, uses the system's fonts,
// lays out for a laptop and a phone, and renders the queue as a virtual
// table, so 10,000 waiting customers cost what the rows on screen cost.
// Its Content-Security-Policy allows only its own scripts and styles.
package console
