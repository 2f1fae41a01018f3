package wechattest

import (
	"net/http"
	"regexp"
	"time"
)

// Invitations (customservice/kfaccount/inviteworker). An account added with
// kfaccount/add cannot be used until a WeChat user accepts an invitation to
// bind it. The fake keeps one invitation per account: waiting until the
// user answers (AcceptInvitation, RejectInvitation, or the control API) or
// until it expires, InviteValidity after it was sent, on the fake's clock.
// getkflist shows kf_wx once bound, else the last invitation's invite_wx,
// invite_expire_time and invite_status (waiting, rejected or expired).

// Errcodes of kfaccount/inviteworker, as WeChat documents them.
const (
	CodeInviteAlreadyWorker = 65407 // the user is already one of this account's agents
	CodeInviteAlreadySent   = 65408 // this account already invited the user
	CodeInviteInvalidWx     = 65409 // not a WeChat id
	CodeInviteTooMany       = 65410 // the user is bound to too many kf accounts (not answered, see handleKFInviteWorker)
	CodeInvitePending       = 65411 // the kf account has a waiting invitation
	CodeInviteBound         = 65412 // the kf account is already bound
)

// InviteValidity is how long an invitation waits for an answer.
const InviteValidity = 7 * 24 * time.Hour

// Invitation states (getkflist's invite_status).
const (
	InviteWaiting  = "waiting"
	InviteRejected = "rejected"
	InviteExpired  = "expired"
	inviteAccepted = "accepted" // shown as kf_wx, never as a status
)

var inviteMessages = map[int]string{
	CodeInviteAlreadyWorker: "the wechat user have been one of your workers",
	CodeInviteAlreadySent:   "you have already invited the wechat user",
	CodeInviteInvalidWx:     "wechat account invalid",
	CodeInviteTooMany:       "too many custom service accounts bound by the worker",
	CodeInvitePending:       "a effective invitation to bind the custom service account exists",
	CodeInviteBound:         "the custom service account have been bound by a wechat user",
}

// wechatIDRE is the form of a WeChat id: 6–20 letters, digits, '_' or
// '-', starting with a letter.
var wechatIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{5,19}$`)

type invitation struct {
	wx      string
	expires time.Time
	status  string // waiting, rejected, accepted; expired is computed
}

// statusAt is the invitation's state at now.
func (inv *invitation) statusAt(now time.Time) string {
	if inv.status == InviteWaiting && !now.Before(inv.expires) {
		return InviteExpired
	}
	return inv.status
}

func inviteErr(code int) *APIError { return apiErr(code, inviteMessages[code]) }

type inviteRequest struct {
	KfAccount string `json:"kf_account"`
	InviteWx  string `json:"invite_wx"`
}

func (s *Server) handleKFInviteWorker(req inviteRequest) (any, *APIError) {
	a, e := s.agentLocked(req.KfAccount)
	if e != nil {
		return nil, e
	}
	if !wechatIDRE.MatchString(req.InviteWx) {
		return nil, inviteErr(CodeInviteInvalidWx)
	}
	now := s.clock.Now()
	if a.kfWx != "" {
		return nil, inviteErr(CodeInviteBound)
	}
	if a.invite != nil && a.invite.statusAt(now) == InviteWaiting {
		return nil, inviteErr(CodeInvitePending)
	}
	for _, other := range s.agents {
		if other.kfWx == req.InviteWx {
			return nil, inviteErr(CodeInviteAlreadyWorker)
		}
		if other.invite != nil && other.invite.wx == req.InviteWx && other.invite.statusAt(now) == InviteWaiting {
			return nil, inviteErr(CodeInviteAlreadySent)
		}
	}
	// 65410 (the user is bound to too many kf accounts) is not answered:
	// it counts bindings in other official accounts, which the fake does
	// not have.
	a.invite = &invitation{wx: req.InviteWx, expires: now.Add(InviteValidity), status: InviteWaiting}
	return okResponse, nil
}

// fillInviteLocked adds the binding or invitation to a getkflist entry.
func (s *Server) fillInviteLocked(e *kfListEntry, a *agent) {
	if a.kfWx != "" {
		e.KfWx = a.kfWx
		return
	}
	if a.invite == nil {
		return
	}
	e.InviteWx = a.invite.wx
	e.InviteExpireTime = a.invite.expires.Unix()
	e.InviteStatus = a.invite.statusAt(s.clock.Now())
}

// AcceptInvitation is the invited WeChat user accepting: the account is
// bound to them. It fails with 65401 for an unknown account, and with an
// error naming the state when no invitation is waiting.
func (s *Server) AcceptInvitation(account string) error {
	return s.answerInvitation(account, inviteAccepted)
}

// RejectInvitation is the invited WeChat user declining.
func (s *Server) RejectInvitation(account string) error {
	return s.answerInvitation(account, InviteRejected)
}

func (s *Server) answerInvitation(account, answer string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.agentLocked(account)
	if e != nil {
		return e
	}
	if a.invite == nil {
		return apiErr(CodeInvalidKFAccount, "no invitation for "+account)
	}
	if st := a.invite.statusAt(s.clock.Now()); st != InviteWaiting {
		return apiErr(CodeInvalidKFAccount, "the invitation for "+account+" is "+st)
	}
	a.invite.status = answer
	if answer == inviteAccepted {
		a.kfWx = a.invite.wx
	}
	return nil
}

// BoundWx returns the WeChat user bound to account ("" when none).
func (s *Server) BoundWx(account string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.agents[account]; ok {
		return a.kfWx
	}
	return ""
}

func (s *Server) inviteControlRoutes() {
	s.mux.HandleFunc("POST /_control/invitations/{account}/accept", control(func(r *http.Request, _ struct{}) (any, error) {
		return nil, s.AcceptInvitation(r.PathValue("account"))
	}))
	s.mux.HandleFunc("POST /_control/invitations/{account}/reject", control(func(r *http.Request, _ struct{}) (any, error) {
		return nil, s.RejectInvitation(r.PathValue("account"))
	}))
}
