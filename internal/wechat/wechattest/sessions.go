package wechattest

import (
	"encoding/json"
	"net/http"
	"time"
)

// maxWaitCases is how many cases getwaitcase lists; count still says how
// many wait in all.
const maxWaitCases = 100

type sessionRequest struct {
	KfAccount string `json:"kf_account"`
	OpenID    string `json:"openid"`
	Text      string `json:"text"`
}

func (s *Server) handleSessionCreate(req sessionRequest) (any, *APIError) {
	if e := s.createSessionLocked(req.KfAccount, req.OpenID); e != nil {
		return nil, e
	}
	return okResponse, nil
}

func (s *Server) handleSessionClose(req sessionRequest) (any, *APIError) {
	if e := s.closeSessionLocked(req.KfAccount, req.OpenID); e != nil {
		return nil, e
	}
	return okResponse, nil
}

type getSessionResponse struct {
	CreateTime int64  `json:"createtime"`
	ErrCode    int    `json:"errcode"`
	ErrMsg     string `json:"errmsg"`
	KfAccount  string `json:"kf_account"`
}

// handleSessionGet reports who serves a customer. A waiting customer has
// kf_account "" and the time they joined the queue; a customer with neither
// a session nor a place in the queue has createtime 0.
func (s *Server) handleSessionGet(r *http.Request, _ []byte) (any, *APIError) {
	openid := r.URL.Query().Get("openid")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.customers[openid]; !ok {
		return nil, apiErr(CodeInvalidOpenID, "")
	}
	resp := getSessionResponse{ErrMsg: "ok"}
	if sess, ok := s.sessions[openid]; ok {
		resp.CreateTime, resp.KfAccount = sess.createdAt.Unix(), sess.account
	} else if w := s.waitCaseLocked(openid); w != nil && !s.cfg.GetSessionWaitingZero {
		resp.CreateTime = w.createdAt.Unix()
	}
	return resp, nil
}

type waitCaseResponse struct {
	Count        int               `json:"count"`
	WaitCaseList []json.RawMessage `json:"waitcaselist"`
}

type waitCaseCreateTime struct {
	CreateTime int64  `json:"createtime"`
	KfAccount  string `json:"kf_account"`
	OpenID     string `json:"openid"`
}

type waitCaseLatestTime struct {
	LatestTime int64  `json:"latest_time"`
	KfAccount  string `json:"kf_account"`
	OpenID     string `json:"openid"`
}

// handleWaitCase lists the 100 customers who joined the queue first, with
// count the total, in the configured time-field form.
func (s *Server) handleWaitCase(*http.Request, []byte) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := waitCaseResponse{Count: len(s.waiting), WaitCaseList: []json.RawMessage{}}
	for i, w := range s.waiting {
		if i == maxWaitCases {
			break
		}
		var v any = waitCaseCreateTime{CreateTime: w.createdAt.Unix(), KfAccount: w.account, OpenID: w.openid}
		if s.cfg.WaitCaseTimeField == "latest_time" {
			v = waitCaseLatestTime{LatestTime: w.latestAt.Unix(), KfAccount: w.account, OpenID: w.openid}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, apiErr(CodeSystemBusy, "encode wait case")
		}
		resp.WaitCaseList = append(resp.WaitCaseList, b)
	}
	return resp, nil
}

type sessionListEntry struct {
	CreateTime int64  `json:"createtime"`
	OpenID     string `json:"openid"`
}

type sessionListResponse struct {
	SessionList []sessionListEntry `json:"sessionlist"`
}

func (s *Server) handleSessionList(r *http.Request, _ []byte) (any, *APIError) {
	account := r.URL.Query().Get("kf_account")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.agents[account]; !ok {
		return nil, apiErr(CodeInvalidKFAccount, "")
	}
	resp := sessionListResponse{SessionList: []sessionListEntry{}}
	for _, sess := range s.sortedSessionsLocked(account) {
		resp.SessionList = append(resp.SessionList, sessionListEntry{CreateTime: sess.createdAt.Unix(), OpenID: sess.openid})
	}
	return resp, nil
}

// SentMessage is a message accepted by custom/send.
type SentMessage struct {
	OpenID  string `json:"openid"`
	MsgType string `json:"msgtype"`
	// Content is the text of a text message ("" for other types).
	Content string `json:"content"`
	// KfAccount is customservice.kf_account, the agent the message is sent as.
	KfAccount string    `json:"kf_account,omitempty"`
	Time      time.Time `json:"time"`
	// Raw is the request body as received.
	Raw json.RawMessage `json:"raw"`
}

type customSendRequest struct {
	ToUser  string `json:"touser"`
	MsgType string `json:"msgtype"`
	Text    *struct {
		Content string `json:"content"`
	} `json:"text"`
	CustomService *struct {
		KfAccount string `json:"kf_account"`
	} `json:"customservice"`
}

// customSendTypes are the msgtypes custom/send documents.
var customSendTypes = map[string]bool{
	"text": true, "image": true, "voice": true, "video": true, "music": true,
	"news": true, "mpnews": true, "mpnewsarticle": true, "msgmenu": true,
	"wxcard": true, "miniprogrampage": true,
}

// handleCustomSend checks, in order: the customer (40003), the msgtype
// (40008), the text (44004), the agent (65401), the 48-hour window (45015)
// and the per-interaction message count (45047), then records the message.
func (s *Server) handleCustomSend(_ *http.Request, body []byte) (any, *APIError) {
	var req customSendRequest
	if e := decodeJSONBody(body, &req); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.customers[req.ToUser]
	if !ok {
		return nil, apiErr(CodeInvalidOpenID, "")
	}
	if !customSendTypes[req.MsgType] {
		return nil, apiErr(CodeInvalidMessageType, "")
	}
	msg := SentMessage{OpenID: req.ToUser, MsgType: req.MsgType, Raw: json.RawMessage(append([]byte(nil), body...))}
	if req.MsgType == "text" {
		if req.Text == nil || req.Text.Content == "" {
			return nil, apiErr(CodeEmptyContent, "")
		}
		msg.Content = req.Text.Content
	}
	if req.CustomService != nil && req.CustomService.KfAccount != "" {
		if _, ok := s.agents[req.CustomService.KfAccount]; !ok {
			return nil, apiErr(CodeInvalidKFAccount, "")
		}
		msg.KfAccount = req.CustomService.KfAccount
	}
	now := s.clock.Now()
	if c.unsubscribed || c.lastInteraction.IsZero() || now.Sub(c.lastInteraction) > s.cfg.ReplyWindow {
		return nil, apiErr(CodeReplyTimeLimit, "")
	}
	if c.sentSince >= s.cfg.MaxMessagesPerInteraction {
		return nil, apiErr(CodeResponseCountLimit, "")
	}
	c.sentSince++
	msg.Time = now
	s.sent = appendBounded(s.sent, msg, s.cfg.HistoryLimit)
	if msg.KfAccount != "" {
		s.recordAgentSentLocked(msg.OpenID, msg.Content, msg.KfAccount, now)
	}
	return okResponse, nil
}

// appendBounded appends v and drops the oldest entries beyond limit.
// Reslicing keeps it amortised O(1): append copies only the live entries
// when it grows the array.
func appendBounded[T any](list []T, v T, limit int) []T {
	list = append(list, v)
	if len(list) > limit {
		list = list[len(list)-limit:]
	}
	return list
}
