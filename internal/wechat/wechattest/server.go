package wechattest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// API methods, named by their path without the leading slash. InjectErrors,
// SetLatency and CallCount take these names.
const (
	MethodToken           = "cgi-bin/token"
	MethodStableToken     = "cgi-bin/stable_token"
	MethodKFAdd           = "customservice/kfaccount/add"
	MethodKFUpdate        = "customservice/kfaccount/update"
	MethodKFUploadHeadImg = "customservice/kfaccount/uploadheadimg"
	MethodKFDel           = "customservice/kfaccount/del"
	MethodKFInviteWorker  = "customservice/kfaccount/inviteworker"
	MethodKFList          = "cgi-bin/customservice/getkflist"
	MethodKFOnlineList    = "cgi-bin/customservice/getonlinekflist"
	MethodSessionCreate   = "customservice/kfsession/create"
	MethodSessionClose    = "customservice/kfsession/close"
	MethodSessionGet      = "customservice/kfsession/getsession"
	MethodWaitCase        = "customservice/kfsession/getwaitcase"
	MethodSessionList     = "customservice/kfsession/getsessionlist"
	MethodCustomSend      = "cgi-bin/message/custom/send"
	MethodCallbackIP      = "cgi-bin/getcallbackip"
)

// Config configures a fake WeChat server. Zero values get the defaults
// named on each field.
type Config struct {
	// AppID and AppSecret are the credentials the token endpoints accept.
	// Required.
	AppID     string
	AppSecret string
	// Token is the callback token callbacks are signed with. Required.
	Token string
	// EncodingAESKey is the 43-character key; required for ModeCompat and
	// ModeSafe.
	EncodingAESKey string
	// Mode is the callback encryption mode (default wechat.ModePlain).
	Mode wechat.Mode
	// CallbackURL receives the callbacks; empty records them as skipped
	// (see SetCallbackURL).
	CallbackURL string
	// OriginalID is the account's original id (gh_…), the ToUserName of
	// every callback. Default: "gh_" + 12 hex digits derived from AppID.
	OriginalID string
	// WeChatID is the account's WeChat id, the part after "@" of every kf
	// account. Empty accepts any well-formed suffix.
	WeChatID string

	// TokenLifetime is the access token lifetime (default 7200 s).
	TokenLifetime time.Duration
	// WaitCaseTimeField is the time field of getwaitcase entries:
	// "createtime" (default, as in the 多客服 documentation) or
	// "latest_time" (as in the current documentation).
	WaitCaseTimeField string
	// ReplyWindow is how long after a customer's last interaction
	// custom/send is allowed (default 48 h; after it 45015).
	ReplyWindow time.Duration
	// MaxMessagesPerInteraction is how many custom/send messages a customer
	// may get between two of their own interactions (default 20; beyond it
	// 45047).
	MaxMessagesPerInteraction int
	// MaxAccounts is the number of kf accounts an account may have (default
	// 100; beyond it 65405).
	MaxAccounts int
	// MaxHeadImgBytes bounds an uploaded avatar (default 5 MiB; beyond it 40009).
	MaxHeadImgBytes int

	// CallbackTimeout is how long one callback attempt may take (default 5 s).
	CallbackTimeout time.Duration
	// CallbackRetries is how many times a failed callback is sent again
	// (default 3; negative means none).
	CallbackRetries int
	// CallbackRetryDelay is the pause before a retry (default 1 s).
	CallbackRetryDelay time.Duration
	// IgnoreTransferReplies, when set, makes the fake ignore
	// transfer_customer_service replies instead of queueing the customer
	// as WeChat does; tests then queue customers with TransferToQueue.
	IgnoreTransferReplies bool
	// GetSessionWaitingZero makes getsession answer createtime 0 (and no
	// kf_account) for a customer who waits in the queue, as WeChat may:
	// the documentation describes getsession for established sessions
	// only, and getwaitcase is the documented list of waiting customers.
	// Default: the time they joined the queue.
	GetSessionWaitingZero bool
	// HistoryLimit bounds the recorded callbacks and sent messages (default
	// 10000, oldest dropped first).
	HistoryLimit int

	// HTTPClient posts the callbacks (default: a new http.Client).
	HTTPClient *http.Client
	// Clock is the time source (default RealClock).
	Clock Clock
}

func (c *Config) setDefaults() {
	if c.OriginalID == "" {
		sum := sha1.Sum([]byte(c.AppID))
		c.OriginalID = "gh_" + hex.EncodeToString(sum[:6])
	}
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = 7200 * time.Second
	}
	if c.WaitCaseTimeField == "" {
		c.WaitCaseTimeField = "createtime"
	}
	if c.ReplyWindow <= 0 {
		c.ReplyWindow = 48 * time.Hour
	}
	if c.MaxMessagesPerInteraction <= 0 {
		c.MaxMessagesPerInteraction = 20
	}
	if c.MaxAccounts <= 0 {
		c.MaxAccounts = 100
	}
	if c.MaxHeadImgBytes <= 0 {
		c.MaxHeadImgBytes = 5 << 20
	}
	if c.CallbackTimeout <= 0 {
		c.CallbackTimeout = 5 * time.Second
	}
	if c.CallbackRetries == 0 {
		c.CallbackRetries = 3
	} else if c.CallbackRetries < 0 {
		c.CallbackRetries = 0
	}
	if c.CallbackRetryDelay <= 0 {
		c.CallbackRetryDelay = time.Second
	}
	if c.HistoryLimit <= 0 {
		c.HistoryLimit = 10000
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
}

// Validate names the first missing or inconsistent setting.
func (c *Config) Validate() error {
	switch {
	case c.AppID == "":
		return errors.New("wechattest config: AppID is required")
	case c.AppSecret == "":
		return errors.New("wechattest config: AppSecret is required")
	case c.Token == "":
		return errors.New("wechattest config: Token is required")
	case c.Mode != wechat.ModePlain && c.EncodingAESKey == "":
		return fmt.Errorf("wechattest config: Mode %v needs EncodingAESKey", c.Mode)
	case c.WaitCaseTimeField != "createtime" && c.WaitCaseTimeField != "latest_time":
		return fmt.Errorf("wechattest config: WaitCaseTimeField %q is neither createtime nor latest_time", c.WaitCaseTimeField)
	}
	return nil
}

// Server is a fake WeChat API server with 多客服 state and a callback
// sender. It is an http.Handler: serve it with httptest.NewServer or an
// http.Server. Close it to stop callbacks and the simulation.
type Server struct {
	cfg   Config
	codec *wechat.Codec
	clock Clock
	mux   *http.ServeMux
	disp  *dispatcher

	faultMu sync.Mutex
	faults  map[string][]int
	// httpFaults are the queued failures of the HTTP exchange by method.
	httpFaults map[string][]Fault
	latency    map[string]time.Duration
	calls      map[string]int

	// mu guards the account state below. It is never held while a callback
	// is posted: state changes only queue callbacks.
	mu           sync.Mutex
	tokens       map[string]*accessToken
	latestToken  string // the newest cgi-bin/token token
	stableToken  string // the current stable_token token
	tokenFetches int
	// forces are the forced stable_token refreshes of the last 24 hours;
	// forceRequests counts those asked for through the API.
	forces        []time.Time
	forceRequests int
	notUpgraded   bool
	agents        map[string]*agent
	nextKFID      int
	customers     map[string]*customer
	waiting       []*waitCase // FIFO by arrival in the queue
	sessions      map[string]*session
	sent          []SentMessage
	msgRecords    msgRecordLog // getmsglist (msgrecord.go)
	nextMsgID     int64
	sim           *simulation
	callbackIPs   []string     // what getcallbackip answers
	ipWhitelist   []netip.Addr // empty: any caller (ipwhitelist.go)
}

// New builds a fake server from cfg after filling defaults and validating it.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codec, err := wechat.NewCodec(cfg.Token, cfg.AppID, cfg.EncodingAESKey)
	if err != nil {
		return nil, fmt.Errorf("wechattest: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		codec:       codec,
		clock:       cfg.Clock,
		faults:      map[string][]int{},
		httpFaults:  map[string][]Fault{},
		latency:     map[string]time.Duration{},
		calls:       map[string]int{},
		tokens:      map[string]*accessToken{},
		agents:      map[string]*agent{},
		nextKFID:    1001,
		customers:   map[string]*customer{},
		sessions:    map[string]*session{},
		nextMsgID:   6_000_000_000_000_000_000,
		callbackIPs: append([]string(nil), DefaultCallbackIPs...),
	}
	s.disp = newDispatcher(s)
	s.routes()
	return s, nil
}

// ServeHTTP serves the WeChat API and the /_control/ API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the simulation and the callback sender; callbacks not yet
// delivered are abandoned.
func (s *Server) Close() {
	s.StopSimulation()
	s.disp.close()
}

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// apiOpts says what an API method requires before its handler runs.
type apiOpts struct {
	post  bool // other methods get 43002
	token bool // needs a valid access_token
	kf    bool // part of 多客服: 65400 while SetUpgraded(false)
}

type apiHandler func(r *http.Request, body []byte) (any, *APIError)

// maxAPIBody bounds request bodies: above any avatar limit we would accept.
const maxAPIBody = 32 << 20

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.api(MethodToken, apiOpts{}, s.handleToken)
	s.api(MethodStableToken, apiOpts{post: true}, s.handleStableToken)
	s.api(MethodKFAdd, apiOpts{post: true, token: true, kf: true}, lockedJSON(s, s.handleKFAdd))
	s.api(MethodKFUpdate, apiOpts{post: true, token: true, kf: true}, lockedJSON(s, s.handleKFUpdate))
	s.api(MethodKFUploadHeadImg, apiOpts{post: true, token: true, kf: true}, s.handleKFUploadHeadImg)
	s.api(MethodKFDel, apiOpts{token: true, kf: true}, s.handleKFDel)
	s.api(MethodKFInviteWorker, apiOpts{post: true, token: true, kf: true}, lockedJSON(s, s.handleKFInviteWorker))
	s.api(MethodKFList, apiOpts{token: true, kf: true}, s.handleKFList)
	s.api(MethodKFOnlineList, apiOpts{token: true, kf: true}, s.handleKFOnlineList)
	s.api(MethodSessionCreate, apiOpts{post: true, token: true, kf: true}, lockedJSON(s, s.handleSessionCreate))
	s.api(MethodSessionClose, apiOpts{post: true, token: true, kf: true}, lockedJSON(s, s.handleSessionClose))
	s.api(MethodSessionGet, apiOpts{token: true, kf: true}, s.handleSessionGet)
	s.api(MethodWaitCase, apiOpts{token: true, kf: true}, s.handleWaitCase)
	s.api(MethodSessionList, apiOpts{token: true, kf: true}, s.handleSessionList)
	s.api(MethodCustomSend, apiOpts{post: true, token: true}, s.handleCustomSend)
	s.api(MethodMsgRecord, apiOpts{post: true, token: true, kf: true}, s.handleMsgList)
	s.api(MethodCallbackIP, apiOpts{token: true}, s.handleCallbackIP)
	s.controlRoutes()
}

// api registers one WeChat method. Every call is counted; then come the
// injected latency and errors, the method and token checks, and the handler.
// Errors are answered with HTTP 200 and an errcode, as WeChat does.
func (s *Server) api(method string, opts apiOpts, h apiHandler) {
	s.mux.HandleFunc("/"+method, func(w http.ResponseWriter, r *http.Request) {
		delay, injected := s.recordCall(method)
		switch f := s.takeFault(method); f {
		case FaultTooManyRequests:
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		case FaultHangAfterHandling, FaultResetAfterHandling:
			w = &faultWriter{ResponseWriter: w, r: r, fault: f}
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if injected == CodeIPNotWhitelisted {
			writeAPIError(w, ipNotWhitelisted(clientIP(r)))
			return
		}
		if injected != 0 {
			writeAPIError(w, apiErr(injected, "injected"))
			return
		}
		if e := s.checkIPWhitelist(r); e != nil {
			writeAPIError(w, e)
			return
		}
		if opts.post && r.Method != http.MethodPost {
			writeAPIError(w, apiErr(CodeRequirePOST, ""))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody))
		if err != nil {
			writeAPIError(w, apiErr(CodeSystemBusy, "read body"))
			return
		}
		if opts.token {
			if e := s.checkAccessToken(r.URL.Query().Get("access_token")); e != nil {
				writeAPIError(w, e)
				return
			}
		}
		if opts.kf && s.kfUnavailable() {
			writeAPIError(w, apiErr(CodeKFUnavailable, ""))
			return
		}
		resp, e := h(r, body)
		if e != nil {
			writeAPIError(w, e)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func (s *Server) kfUnavailable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notUpgraded
}

// recordCall counts a call and takes the latency and the next injected
// error for it.
func (s *Server) recordCall(method string) (time.Duration, int) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.calls[method]++
	code := 0
	if q := s.faults[method]; len(q) > 0 {
		code = q[0]
		s.faults[method] = q[1:]
	}
	return s.latency[method], code
}

func normalizeMethod(method string) string {
	method, _, _ = strings.Cut(method, "?")
	return strings.Trim(method, "/")
}

// InjectErrors makes the next n calls of method fail with errcode (for
// example -1, system busy) before any other check. Calls add up: two
// injections queue both.
func (s *Server) InjectErrors(method string, errcode, n int) {
	method = normalizeMethod(method)
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], errcode)
	}
}

// SetLatency delays every call of method by d of real time (0 removes it).
func (s *Server) SetLatency(method string, d time.Duration) {
	method = normalizeMethod(method)
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if d <= 0 {
		delete(s.latency, method)
		return
	}
	s.latency[method] = d
}

// CallCount returns how many calls method has received, failed ones included.
func (s *Server) CallCount(method string) int {
	method = normalizeMethod(method)
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.calls[method]
}

// CallCounts returns the call count of every method called so far.
func (s *Server) CallCounts() map[string]int {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// SetUpgraded switches the 多客服 feature on (the default) or off; while
// off every 多客服 method answers 65400, like an account that has not
// upgraded to the new customer service.
func (s *Server) SetUpgraded(upgraded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notUpgraded = !upgraded
}

// writeAPIError answers an error the way WeChat does: HTTP 200, errcode and
// errmsg, the errmsg ending with a request id so that clients learn not to
// match on it.
func writeAPIError(w http.ResponseWriter, e *APIError) {
	writeJSON(w, http.StatusOK, APIError{Code: e.Code, Msg: e.Msg + " rid: " + requestID()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:16] + "-" + h[16:]
}

// decodeJSONBody reads a POST body the way the API does: empty → 44002,
// unparsable → 47001.
func decodeJSONBody(body []byte, v any) *APIError {
	if len(strings.TrimSpace(string(body))) == 0 {
		return apiErr(CodeEmptyPostData, "")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apiErr(CodeDataFormatError, "")
	}
	return nil
}

// lockedJSON is an API handler that decodes the POST body into a T (see
// decodeJSONBody) and runs h with it under the server's lock.
func lockedJSON[T any](s *Server, h func(req T) (any, *APIError)) apiHandler {
	return func(_ *http.Request, body []byte) (any, *APIError) {
		var req T
		if e := decodeJSONBody(body, &req); e != nil {
			return nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return h(req)
	}
}

// agentLocked returns the agent named account, or 65400 (invalid kf
// account) when there is none. The caller holds s.mu.
func (s *Server) agentLocked(account string) (*agent, *APIError) {
	a, ok := s.agents[account]
	if !ok {
		return nil, apiErr(CodeInvalidKFAccount, "")
	}
	return a, nil
}

// okResponse is the body of a successful call that returns nothing else.
var okResponse = APIError{Code: 0, Msg: "ok"}
