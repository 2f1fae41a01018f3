// Package wechattest is a fake WeChat Official Account server for kefu's
// integration tests and for kefu demo. It is a real HTTP server (a
// [Server] is an http.Handler) that keeps 多客服 state — kf accounts,
// online agents, the waiting queue, sessions, customers and the messages
// sent to them — answers with WeChat's JSON and error codes, and posts
// signed (and, in compat and safe modes, encrypted) XML callbacks to a
// callback URL, retrying like WeChat.
//
// # API
//
// Paths and JSON are WeChat's; point a client's API base at the server.
// Every method except the two token endpoints needs ?access_token=.
// Errors come back as HTTP 200 with {"errcode","errmsg"}, the errmsg ending
// in " rid: …" as WeChat's do, so clients must decide on errcode alone.
//
//	GET  cgi-bin/token?grant_type=client_credential&appid&secret
//	POST cgi-bin/stable_token {grant_type, appid, secret, force_refresh}
//	POST customservice/kfaccount/add | update {kf_account, nickname, password}
//	POST customservice/kfaccount/uploadheadimg?kf_account= (multipart "media")
//	GET|POST customservice/kfaccount/del?kf_account=
//	POST customservice/kfaccount/inviteworker {kf_account, invite_wx} (invite.go)
//	GET  cgi-bin/customservice/getkflist | getonlinekflist
//	POST customservice/kfsession/create | close {kf_account, openid, text}
//	GET  customservice/kfsession/getsession?openid=
//	GET  customservice/kfsession/getwaitcase
//	GET  customservice/kfsession/getsessionlist?kf_account=
//	POST cgi-bin/message/custom/send {touser, msgtype, text:{content}, customservice:{kf_account}}
//	POST customservice/msgrecord/getmsglist {starttime, endtime, msgid, number} (msgrecord.go)
//	GET  cgi-bin/getcallbackip                    {ip_list: addresses and CIDR blocks}
//
// getcallbackip answers the list set with [Server.SetCallbackIPs];
// the default, [DefaultCallbackIPs], includes 127.0.0.1 and ::1 so that a
// receiver with an IP allow-list accepts the fake's own callbacks.
//
// Tokens: cgi-bin/token issues a new token on every call and keeps the
// previous one valid for five more minutes (documented). stable_token
// returns the current token until five minutes before its expiry, then a
// new one (the old one living out its lifetime); force_refresh issues a new
// one and the previous one stops working at once, at most once per 30 s
// (45011) and 20 times a day (45009). The two kinds are independent.
// Lifetime: Config.TokenLifetime (7200 s). [Server.TokenFetches] counts
// tokens handed out; [Server.ExpireTokens] makes every token answer 42001,
// [Server.InvalidateTokens] 40001. [Server.ForceRefreshByOtherSystem] is
// another system sharing the appid forcing a refresh;
// [Server.ForceRefreshRequests] counts the forced refreshes asked through
// the API.
//
// Faults: [Server.InjectErrors] queues errcodes, [Server.InjectFault]
// failures of the HTTP exchange (HTTP 429 before handling; an answer held
// or dropped after the request was carried out), and [NetFaults] breaks
// dials and TLS handshakes before anything reaches the server.
//
// # Queue model
//
// Agents have an online status (0 offline, 1 PC, 2 mobile, 3 both), an
// auto_accept limit and the sessions they serve (accepted_case). A customer
// joins the queue when the account answers one of their callbacks with a
// transfer_customer_service reply (TransInfo.KfAccount pins them to one
// agent), or through [Server.TransferToQueue]. The queue is FIFO; whenever
// an online agent has accepted_case < auto_accept, the earliest waiting
// customer it may take is assigned to it (kf_create_session): a pinned
// customer waits for their agent only and does not hold up the customers
// behind them; others go to the least busy agent, ties to the lowest kf_id
// (WeChat does not document its choice). kfsession/create ignores
// auto_accept, as documented, but needs an online agent; it takes the
// customer off the queue. A customer abandons the queue with
// [Server.AbandonWaiting] (WeChat sends no event). Agents switch
// ([Server.SwitchSession], kf_switch_session) and close
// ([Server.CloseSession], kf_close_session) sessions as they would in the
// 多客服 client. Going offline keeps an agent's sessions; deleting an agent
// closes them and un-pins the customers waiting for it.
//
// getwaitcase lists the 100 customers who joined the queue first, count
// being the total; each entry has kf_account, openid and either createtime
// (the 多客服 documentation; default) or latest_time (the current
// documentation: the customer's latest message), per
// Config.WaitCaseTimeField. getsession answers kf_account "" for a waiting
// customer (createtime: when they joined the queue) and createtime 0 for a
// known customer in neither state.
//
// custom/send works within Config.ReplyWindow (48 h) of the customer's last
// interaction — a message, or a subscribe, SCAN, CLICK or scancode event
// (documented) — and at most Config.MaxMessagesPerInteraction (20) times
// between two interactions. Every accepted message is recorded
// ([Server.Sent]).
//
// # Error codes
//
// From WeChat's documentation (global codes, 客服帐号管理, 会话控制):
//
//	-1     system busy                                 InjectErrors only
//	40001  invalid credential                          unknown or superseded token; wrong secret on cgi-bin/token
//	40002  invalid grant_type                          token endpoints
//	40003  invalid openid                              unknown customer (custom/send, create, getsession), empty openid
//	40005  unsupported file type                       uploadheadimg: not an image
//	40008  invalid message type                        custom/send
//	40009  invalid media size                          uploadheadimg: over Config.MaxHeadImgBytes
//	40013  invalid appid                               token endpoints
//	40125  invalid appsecret                           stable_token
//	40164  invalid ip …, not in whitelist              every method while SetIPWhitelist leaves the caller out
//	41001  access_token missing
//	41005  media data missing                          uploadheadimg without a "media" part
//	42001  access_token expired
//	43002  require POST method
//	44002  empty post data
//	44004  empty text content                          custom/send
//	45015  out of the reply window                     custom/send, also after unsubscribe
//	45047  customer-service message count limit        custom/send
//	47001  data format error                           unparsable JSON
//	65400  API unavailable (not upgraded)              every 多客服 method while SetUpgraded(false)
//	65401  invalid kf account                          the account does not exist
//	65403  invalid nickname                            empty or longer than 16 characters
//	65404  illegal kf account                          not prefix(≤10 of [A-Za-z0-9_])@wechatid(≤30), or not Config.WeChatID
//	65405  account count limit                         more than Config.MaxAccounts (100)
//	65406  kf account exists                           add
//	65413  no session for the customer                 close of a customer not being served (waiting ones included)
//	65414  customer served by another agent            create/close naming another agent
//	65415  kf offline                                  create for an offline agent
//	65416  invalid query parameters                    getmsglist: endtime < starttime, number outside 1..10000, msgid < 1
//	65417  query time range exceeds the limit          getmsglist: endtime − starttime over 24 h
//
// Our choices, where the documentation is silent: which code each
// situation in the right-hand column gets; 45047 after 20 messages; 40009
// above 5 MiB; create for a customer the same agent already serves succeeds
// without a second event (so a retried call is harmless); close of a
// customer still in the queue is 65413 — close needs the serving agent's
// kf_account, and a waiting case has none; a transfer reply naming an
// unknown agent queues the customer for anyone; custom/send with an
// unknown customservice.kf_account is 65401. The legacy 6145x kf-account
// codes of the old 多客服 API are not produced.
//
// # Callbacks
//
// Session events (kf_create_session, kf_switch_session, kf_close_session)
// and the customer messages and events sent with [Server.SendCustomerMessage],
// [Server.SendEvent] and [Server.CustomerMessage] are posted to the callback
// URL as WeChat's XML (ToUserName = Config.OriginalID, FromUserName =
// openid), signed and sealed with wechat.Codec.SignCallback in Config.Mode.
// The receiver must answer 200 with "success", an empty body or a passive
// reply; other statuses and transport errors, including no answer within
// Config.CallbackTimeout (5 s), are retried Config.CallbackRetries (3)
// times with the very same request, so CreateTime is unchanged and the
// receiver's deduplication is exercised. A 200 with an unacceptable reply
// is not retried (WeChat shows the customer an error instead) and is
// recorded in Delivery.ReplyError. Callbacks for one customer go out in
// order, one at a time; different customers do not wait for each other;
// the state lock is never held while posting. [Server.Deliveries] records
// every callback with its reply (decrypted), [Server.WaitCallbacks] waits
// until none is in flight, [Server.DropNextCallback] loses one on purpose.
//
// # Time and simulation
//
// Everything reads Config.Clock; tests pass a [FakeClock] and Advance it.
// [Server.StartSimulation] adds simulated agents that serve each session for
// a drawn time, then close it or switch it to another online agent, and
// optionally arriving and impatient customers; SimConfig.Speed compresses
// simulated time for the demo.
//
// # Faults
//
// [Server.InjectErrors] makes the next n calls of a method fail with an
// errcode, [Server.SetLatency] delays a method, [Server.CallCount] counts
// calls. Methods are named by path: "customservice/kfsession/create".
//
// # Control API
//
// The same controls over HTTP, JSON in and out, for the demo and for
// poking by hand (no authentication: bind the fake to localhost). WeChat
// refusals answer 409 with {"errcode","errmsg"}, bad requests 400.
//
//	GET  /_control/state                          agents, queue, sessions
//	GET  /_control/sent                           messages accepted by custom/send
//	GET  /_control/callbacks                      callback deliveries
//	GET  /_control/calls                          call count per method
//	GET  /_control/headimg/{account}              an uploaded avatar (kf_headimgurl)
//	POST /_control/agents                         {kf_account, nickname, status, auto_accept}
//	POST /_control/agents/{account}/online        {status (default 1), auto_accept}
//	POST /_control/agents/{account}/offline
//	POST /_control/invitations/{account}/accept | reject   the invited user's answer
//	POST /_control/customers                      {openid, text, transfer, kf_account}: message, then queue
//	POST /_control/customers/{openid}/messages    {msgtype, fields}
//	POST /_control/customers/{openid}/events      {event, fields}
//	POST /_control/customers/{openid}/transfer    {kf_account}
//	POST /_control/customers/{openid}/abandon
//	POST /_control/sessions/{openid}/switch       {to_kf_account}
//	POST /_control/sessions/{openid}/close
//	POST /_control/tokens/expire | invalidate
//	POST /_control/faults                         {method, errcode, n}
//	POST /_control/latency                        {method, latency: "250ms"}
//	POST /_control/callbacks/drop                 {event}
//	POST /_control/upgraded                       {upgraded}
//	GET  /_control/callbackip                     the getcallbackip list
//	POST /_control/callbackip                     {ip_list}: replace it
//	POST /_control/ipwhitelist                    {ip_list}: the account's IP白名单 (empty: any caller)
package wechattest
