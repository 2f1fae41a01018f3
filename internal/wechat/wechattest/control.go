package wechattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// AddAgent creates a kf account as kfaccount/add does, offline and with
// auto_accept 0.
func (s *Server) AddAgent(account, nickname string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, e := s.addAgentLocked(account, nickname, "")
	return asError(e)
}

// SetAgentStatus sets an agent's online status (StatusOffline … StatusBoth).
// An agent coming online with free auto-accept slots takes waiting
// customers at once. Going offline keeps the agent's sessions.
func (s *Server) SetAgentStatus(account string, status int) error {
	if status < StatusOffline || status > StatusBoth {
		return fmt.Errorf("set agent status: status %d is not 0..3", status)
	}
	return s.setAgent(account, func(a *agent) { a.status = status })
}

// SetAutoAccept sets how many sessions auto-assignment may give the agent.
func (s *Server) SetAutoAccept(account string, n int) error {
	if n < 0 {
		return fmt.Errorf("set auto accept: %d is negative", n)
	}
	return s.setAgent(account, func(a *agent) { a.autoAccept = n })
}

// setAgent changes the agent named account with set, then assigns waiting
// customers to whoever has a free slot now.
func (s *Server) setAgent(account string, set func(*agent)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.agentLocked(account)
	if e != nil {
		return e
	}
	set(a)
	s.assignLocked()
	return nil
}

// TransferToQueue puts the customer in the 多客服 queue, as a
// transfer_customer_service reply does: for that agent only when account is
// set, else for anyone. It counts as the customer's interaction (a transfer
// is the answer to one). A customer already waiting or served is left
// where they are.
func (s *Server) TransferToQueue(openid, account string) error {
	if openid == "" {
		return apiErr(CodeInvalidOpenID, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.agents[account]; account != "" && !ok {
		return apiErr(CodeInvalidKFAccount, "")
	}
	now := s.clock.Now()
	s.touchLocked(openid, now)
	s.transferLocked(openid, account, now)
	return nil
}

// AbandonWaiting takes a waiting customer out of the queue, as when they
// give up. WeChat sends no event for this.
func (s *Server) AbandonWaiting(openid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removeWaitingLocked(openid) == nil {
		return apiErr(CodeNoSession, "customer is not waiting")
	}
	return nil
}

// SwitchSession hands the customer's session to another online agent, as an
// agent does in the 多客服 client (there is no API for it), and sends
// kf_switch_session.
func (s *Server) SwitchSession(openid, toAccount string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[openid]
	if !ok {
		return apiErr(CodeNoSession, "")
	}
	to, e := s.agentLocked(toAccount)
	if e != nil {
		return e
	}
	if sess.account == toAccount {
		return nil
	}
	if !to.online() {
		return apiErr(CodeKFOffline, "")
	}
	s.switchLocked(sess, to)
	s.assignLocked()
	return nil
}

// CloseSession ends the customer's session as its agent does in the client,
// sending kf_close_session.
func (s *Server) CloseSession(openid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[openid]
	if !ok {
		return apiErr(CodeNoSession, "")
	}
	s.endSessionLocked(sess)
	s.assignLocked()
	return nil
}

// Sent returns the messages custom/send accepted, oldest first.
func (s *Server) Sent() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SentMessage(nil), s.sent...)
}

// AgentState is an agent as the fake sees it.
type AgentState struct {
	Account    string `json:"kf_account"`
	Nickname   string `json:"nickname"`
	ID         string `json:"kf_id"`
	Status     int    `json:"status"`
	AutoAccept int    `json:"auto_accept"`
	Accepted   int    `json:"accepted_case"`
	HasHeadImg bool   `json:"has_headimg"`
}

// WaitingCustomer is a customer in the queue.
type WaitingCustomer struct {
	OpenID string `json:"openid"`
	// KfAccount is the only agent the customer waits for; "" for anyone.
	KfAccount  string    `json:"kf_account"`
	CreateTime time.Time `json:"createtime"`
	LatestTime time.Time `json:"latest_time"`
}

// Session is a customer being served.
type Session struct {
	OpenID     string    `json:"openid"`
	KfAccount  string    `json:"kf_account"`
	CreateTime time.Time `json:"createtime"`
}

// State is a consistent snapshot of the fake's 多客服 state.
type State struct {
	Agents       []AgentState      `json:"agents"`
	Waiting      []WaitingCustomer `json:"waiting"` // queue order
	Sessions     []Session         `json:"sessions"`
	Customers    int               `json:"customers"`
	TokenFetches int               `json:"token_fetches"`
}

// Snapshot returns the current state.
func (s *Server) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{
		Agents: []AgentState{}, Waiting: []WaitingCustomer{}, Sessions: []Session{},
		Customers: len(s.customers), TokenFetches: s.tokenFetches,
	}
	for _, a := range s.sortedAgentsLocked() {
		st.Agents = append(st.Agents, AgentState{
			Account: a.account, Nickname: a.nickname, ID: a.id, Status: a.status,
			AutoAccept: a.autoAccept, Accepted: a.accepted, HasHeadImg: a.headImg != nil,
		})
	}
	for _, w := range s.waiting {
		st.Waiting = append(st.Waiting, WaitingCustomer{OpenID: w.openid, KfAccount: w.account, CreateTime: w.createdAt, LatestTime: w.latestAt})
	}
	for _, sess := range s.sortedSessionsLocked("") {
		st.Sessions = append(st.Sessions, Session{OpenID: sess.openid, KfAccount: sess.account, CreateTime: sess.createdAt})
	}
	return st
}

// controlRoutes registers the JSON control API under /_control/.
func (s *Server) controlRoutes() {
	m := s.mux
	m.HandleFunc("GET /_control/state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Snapshot())
	})
	m.HandleFunc("GET /_control/sent", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Sent()))
	})
	m.HandleFunc("GET /_control/callbacks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Deliveries()))
	})
	m.HandleFunc("GET /_control/calls", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.CallCounts())
	})
	m.HandleFunc("GET /_control/headimg/{account}", s.controlHeadImg)
	s.inviteControlRoutes()
	s.ipWhitelistControlRoutes()

	m.HandleFunc("POST /_control/agents", control(func(r *http.Request, req struct {
		KfAccount  string `json:"kf_account"`
		Nickname   string `json:"nickname"`
		Status     int    `json:"status"`
		AutoAccept int    `json:"auto_accept"`
	}) (any, error) {
		if err := s.AddAgent(req.KfAccount, req.Nickname); err != nil {
			return nil, err
		}
		if err := s.SetAutoAccept(req.KfAccount, req.AutoAccept); err != nil {
			return nil, err
		}
		return nil, s.SetAgentStatus(req.KfAccount, req.Status)
	}))
	m.HandleFunc("POST /_control/agents/{account}/online", control(func(r *http.Request, req struct {
		Status     *int `json:"status"`
		AutoAccept *int `json:"auto_accept"`
	}) (any, error) {
		account := r.PathValue("account")
		if req.AutoAccept != nil {
			if err := s.SetAutoAccept(account, *req.AutoAccept); err != nil {
				return nil, err
			}
		}
		status := StatusPC
		if req.Status != nil {
			status = *req.Status
		}
		return nil, s.SetAgentStatus(account, status)
	}))
	m.HandleFunc("POST /_control/agents/{account}/offline", control(func(r *http.Request, _ struct{}) (any, error) {
		return nil, s.SetAgentStatus(r.PathValue("account"), StatusOffline)
	}))

	m.HandleFunc("POST /_control/customers", control(func(r *http.Request, req struct {
		OpenID    string `json:"openid"`
		Text      string `json:"text"`
		Transfer  bool   `json:"transfer"`
		KfAccount string `json:"kf_account"`
	}) (any, error) {
		var d *Delivery
		if req.Text != "" {
			got, err := s.CustomerMessage(r.Context(), req.OpenID, req.Text)
			if err != nil {
				return nil, err
			}
			d = &got
		}
		if req.Transfer {
			if err := s.TransferToQueue(req.OpenID, req.KfAccount); err != nil {
				return nil, err
			}
		}
		return map[string]any{"delivery": d}, nil
	}))
	m.HandleFunc("POST /_control/customers/{openid}/messages", control(func(r *http.Request, req struct {
		MsgType string            `json:"msgtype"`
		Fields  map[string]string `json:"fields"`
	}) (any, error) {
		return s.SendCustomerMessage(r.Context(), r.PathValue("openid"), req.MsgType, req.Fields)
	}))
	m.HandleFunc("POST /_control/customers/{openid}/events", control(func(r *http.Request, req struct {
		Event  string            `json:"event"`
		Fields map[string]string `json:"fields"`
	}) (any, error) {
		return s.SendEvent(r.Context(), r.PathValue("openid"), req.Event, req.Fields)
	}))
	m.HandleFunc("POST /_control/customers/{openid}/transfer", control(func(r *http.Request, req struct {
		KfAccount string `json:"kf_account"`
	}) (any, error) {
		return nil, s.TransferToQueue(r.PathValue("openid"), req.KfAccount)
	}))
	m.HandleFunc("POST /_control/customers/{openid}/abandon", control(func(r *http.Request, _ struct{}) (any, error) {
		return nil, s.AbandonWaiting(r.PathValue("openid"))
	}))
	m.HandleFunc("POST /_control/sessions/{openid}/switch", control(func(r *http.Request, req struct {
		ToKfAccount string `json:"to_kf_account"`
	}) (any, error) {
		return nil, s.SwitchSession(r.PathValue("openid"), req.ToKfAccount)
	}))
	m.HandleFunc("POST /_control/sessions/{openid}/close", control(func(r *http.Request, _ struct{}) (any, error) {
		return nil, s.CloseSession(r.PathValue("openid"))
	}))

	m.HandleFunc("POST /_control/tokens/expire", control(func(*http.Request, struct{}) (any, error) {
		s.ExpireTokens()
		return nil, nil
	}))
	m.HandleFunc("POST /_control/tokens/invalidate", control(func(*http.Request, struct{}) (any, error) {
		s.InvalidateTokens()
		return nil, nil
	}))
	m.HandleFunc("POST /_control/faults", control(func(_ *http.Request, req struct {
		Method  string `json:"method"`
		ErrCode int    `json:"errcode"`
		N       int    `json:"n"`
	}) (any, error) {
		if req.Method == "" || req.N <= 0 {
			return nil, errBadControlRequest("method and a positive n are required")
		}
		s.InjectErrors(req.Method, req.ErrCode, req.N)
		return nil, nil
	}))
	m.HandleFunc("POST /_control/latency", control(func(_ *http.Request, req struct {
		Method  string `json:"method"`
		Latency string `json:"latency"`
	}) (any, error) {
		d, err := time.ParseDuration(req.Latency)
		if req.Method == "" || err != nil {
			return nil, errBadControlRequest(`method and a latency such as "250ms" are required`)
		}
		s.SetLatency(req.Method, d)
		return nil, nil
	}))
	m.HandleFunc("POST /_control/callbacks/drop", control(func(_ *http.Request, req struct {
		Event string `json:"event"`
	}) (any, error) {
		s.DropNextCallback(req.Event)
		return nil, nil
	}))
	m.HandleFunc("GET /_control/callbackip", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]string{"ip_list": nonNil(s.CallbackIPs())})
	})
	m.HandleFunc("POST /_control/callbackip", control(func(_ *http.Request, req struct {
		IPList []string `json:"ip_list"`
	}) (any, error) {
		return nil, s.SetCallbackIPs(req.IPList)
	}))
	m.HandleFunc("POST /_control/upgraded", control(func(_ *http.Request, req struct {
		Upgraded bool `json:"upgraded"`
	}) (any, error) {
		s.SetUpgraded(req.Upgraded)
		return nil, nil
	}))
}

func (s *Server) controlHeadImg(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a, ok := s.agents[r.PathValue("account")]
	var img []byte
	var ctype string
	if ok {
		img, ctype = a.headImg, a.headImgType
	}
	s.mu.Unlock()
	if img == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(img)
}

type errBadControlRequest string

func (e errBadControlRequest) Error() string { return string(e) }

// control adapts a typed control handler: the body (empty allowed) decodes
// into Req; a nil result answers {"ok":true}. Errors answer 400 for bad
// requests, 409 with errcode for WeChat-style refusals (unknown agent,
// no session…), 500 otherwise.
func control[Req any](h func(*http.Request, Req) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read body: " + err.Error()})
			return
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "decode body: " + err.Error()})
				return
			}
		}
		resp, err := h(r, req)
		var apiE *APIError
		var badE errBadControlRequest
		switch {
		case errors.As(err, &apiE):
			writeJSON(w, http.StatusConflict, apiE)
		case errors.As(err, &badE):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": badE.Error()})
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case resp == nil:
			writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
		default:
			writeJSON(w, http.StatusOK, resp)
		}
	}
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
