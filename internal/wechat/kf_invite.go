package wechat

import (
	"context"
	"fmt"
	"strings"
)

// MethodKfAccountInvite is kfaccount/inviteworker's name in metrics and errors.
const MethodKfAccountInvite = "kfaccount_inviteworker"

// Invitation states of getkflist's invite_status.
const (
	InviteWaiting  = "waiting"
	InviteRejected = "rejected"
	InviteExpired  = "expired"
)

// Errcodes of kfaccount/inviteworker (WeChat's documented list).
const (
	ErrCodeInviteAlreadyWorker = 65407 // the WeChat user is already one of the account's agents
	ErrCodeInviteAlreadySent   = 65408 // this WeChat user already has an invitation from the account
	ErrCodeInviteInvalidWx     = 65409 // no such WeChat id
	ErrCodeInviteTooMany       = 65410 // the user is bound to too many kf accounts
	ErrCodeInvitePending       = 65411 // the kf account has an invitation waiting for an answer
	ErrCodeInviteBound         = 65412 // the kf account is already bound to a WeChat user
)

// maxInviteWx bounds the WeChat id sent; WeChat ids are 6–20 characters.
const maxInviteWx = 64

// InviteWorker invites a WeChat user to bind a kf account
// (customservice/kfaccount/inviteworker). Until the user accepts, the
// account cannot be used: getkflist shows invite_wx, invite_expire_time and
// invite_status ("waiting", then "rejected" or "expired"); once accepted,
// kf_wx. It is not retried after an ambiguous failure: a repeated
// invitation fails with 65411.
func (c *Client) InviteWorker(ctx context.Context, kfAccount, inviteWx string) error {
	if err := kfCheckAccount(MethodKfAccountInvite, kfAccount); err != nil {
		return err
	}
	if w := strings.TrimSpace(inviteWx); w == "" || len(w) > maxInviteWx || w != inviteWx {
		return fmt.Errorf("wechat %s: invite_wx must be a WeChat id (1–%d characters, no spaces): %w", MethodKfAccountInvite, maxInviteWx, ErrInvalidRequest)
	}
	body, err := apiJSON(struct {
		KfAccount string `json:"kf_account"`
		InviteWx  string `json:"invite_wx"`
	}{kfAccount, inviteWx})
	if err != nil {
		return err
	}
	return c.postJSON(ctx, MethodKfAccountInvite, "customservice/kfaccount/inviteworker", body, nil)
}
