package wechat

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"strings"
)

// API names used in metrics and APIError.Method.
const (
	MethodKfAccountAdd     = "kfaccount_add"
	MethodKfAccountUpdate  = "kfaccount_update"
	MethodKfAccountDel     = "kfaccount_del"
	MethodKfAccountHeadImg = "kfaccount_uploadheadimg"
	MethodGetKfList        = "getkflist"
	MethodGetOnlineKfList  = "getonlinekflist"
	MethodKfSessionCreate  = "kfsession_create"
	MethodKfSessionClose   = "kfsession_close"
	MethodGetSession       = "getsession"
	MethodGetWaitCase      = "getwaitcase"
	MethodGetSessionList   = "getsessionlist"
	MethodCustomSend       = "custom_send"
	MethodStableToken      = tokenMethod
)

const (
	maxKfAvatarBytes         = 5 << 20
	kfAvatarDefaultMediaType = "application/octet-stream"
)

// KfAccountInput is the body of kfaccount/add and kfaccount/update.
//
// Password is the clear-text password: the API wants its MD5 hex, and the
// client hashes it (PasswordMD5) so that callers cannot send the clear text
// by mistake. A value that already looks like an MD5 hex is hashed too — there
// is no way to tell it from a clear password of 32 hex digits. Empty means no
// password field: the current 多客服 binds agents to a WeChat user by
// invitation and no longer needs one.
type KfAccountInput struct {
	// KfAccount is the full account, "prefix@official-account-wechat-id".
	KfAccount string
	Nickname  string
	Password  string
}

// PasswordMD5 returns the lower-case MD5 hex of clear, the form kfaccount/add
// and kfaccount/update expect.
func PasswordMD5(clear string) string {
	sum := md5.Sum([]byte(clear))
	return hex.EncodeToString(sum[:])
}

func (in KfAccountInput) body(method string) ([]byte, error) {
	if err := kfCheckAccount(method, in.KfAccount); err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Nickname) == "" {
		return nil, fmt.Errorf("wechat %s: nickname is required: %w", method, ErrInvalidRequest)
	}
	wire := struct {
		KfAccount string `json:"kf_account"`
		Nickname  string `json:"nickname"`
		Password  string `json:"password,omitempty"`
	}{KfAccount: in.KfAccount, Nickname: in.Nickname}
	if in.Password != "" {
		wire.Password = PasswordMD5(in.Password)
	}
	return apiJSON(wire)
}

func kfCheckAccount(method, account string) error {
	if account == "" || !strings.Contains(account, "@") {
		return fmt.Errorf("wechat %s: kf_account must be prefix@wechat-id: %w", method, ErrInvalidRequest)
	}
	return nil
}

func kfCheckOpenID(method, openid string) error {
	if strings.TrimSpace(openid) == "" {
		return fmt.Errorf("wechat %s: openid is required: %w", method, ErrInvalidRequest)
	}
	return nil
}

func (c *Client) postJSON(ctx context.Context, method, apiPath string, body []byte, out any) error {
	return c.do(ctx, apiCall{
		method:      method,
		httpMethod:  http.MethodPost,
		path:        apiPath,
		body:        body,
		contentType: apiJSONContentType,
	}, out)
}

func (c *Client) get(ctx context.Context, method, apiPath string, query url.Values, out any) error {
	return c.do(ctx, apiCall{
		method:     method,
		httpMethod: http.MethodGet,
		path:       apiPath,
		query:      query,
		idempotent: true,
	}, out)
}

// AddKfAccount creates an agent account (customservice/kfaccount/add).
func (c *Client) AddKfAccount(ctx context.Context, in KfAccountInput) error {
	body, err := in.body(MethodKfAccountAdd)
	if err != nil {
		return err
	}
	return c.postJSON(ctx, MethodKfAccountAdd, "customservice/kfaccount/add", body, nil)
}

// UpdateKfAccount changes an agent's nickname (and password)
// (customservice/kfaccount/update).
func (c *Client) UpdateKfAccount(ctx context.Context, in KfAccountInput) error {
	body, err := in.body(MethodKfAccountUpdate)
	if err != nil {
		return err
	}
	return c.postJSON(ctx, MethodKfAccountUpdate, "customservice/kfaccount/update", body, nil)
}

// DeleteKfAccount removes an agent account: GET
// customservice/kfaccount/del?kf_account=. It is not retried after an
// ambiguous failure: a repeated delete fails with "no such account".
func (c *Client) DeleteKfAccount(ctx context.Context, kfAccount string) error {
	if err := kfCheckAccount(MethodKfAccountDel, kfAccount); err != nil {
		return err
	}
	return c.do(ctx, apiCall{
		method:     MethodKfAccountDel,
		httpMethod: http.MethodGet,
		path:       "customservice/kfaccount/del",
		query:      url.Values{"kf_account": {kfAccount}},
	}, nil)
}

// UploadKfAvatar sets an agent's avatar: multipart/form-data with the image
// in the field "media" (customservice/kfaccount/uploadheadimg?kf_account=).
// WeChat recommends a 640×640 JPEG. The image is read into memory (at most
// 5 MiB) so that the request can be repeated after a token refresh.
func (c *Client) UploadKfAvatar(ctx context.Context, kfAccount, filename string, r io.Reader) error {
	if err := kfCheckAccount(MethodKfAccountHeadImg, kfAccount); err != nil {
		return err
	}
	img, err := io.ReadAll(io.LimitReader(r, maxKfAvatarBytes+1))
	if err != nil {
		return fmt.Errorf("wechat %s: read image: %w", MethodKfAccountHeadImg, err)
	}
	if len(img) == 0 || len(img) > maxKfAvatarBytes {
		return fmt.Errorf("wechat %s: image must be 1 byte to %d bytes: %w", MethodKfAccountHeadImg, maxKfAvatarBytes, ErrInvalidRequest)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	name := path.Base(strings.ReplaceAll(filename, "\\", "/"))
	if name == "." || name == "/" || name == "" {
		name = "avatar.jpg"
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="media"; filename=%q`, name))
	h.Set("Content-Type", kfImageType(img))
	part, err := mw.CreatePart(h)
	if err == nil {
		_, err = part.Write(img)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return fmt.Errorf("wechat %s: build multipart body: %w", MethodKfAccountHeadImg, err)
	}
	return c.do(ctx, apiCall{
		method:      MethodKfAccountHeadImg,
		httpMethod:  http.MethodPost,
		path:        "customservice/kfaccount/uploadheadimg",
		query:       url.Values{"kf_account": {kfAccount}},
		body:        buf.Bytes(),
		contentType: mw.FormDataContentType(),
		idempotent:  true, // uploading the same image twice leaves the same avatar
	}, nil)
}

// kfImageType sniffs the image type from its bytes rather than trusting
// the file name.
func kfImageType(img []byte) string {
	t := http.DetectContentType(img)
	if strings.HasPrefix(t, "image/") {
		return t
	}
	return kfAvatarDefaultMediaType
}

// KfInfo is one agent from getkflist.
type KfInfo struct {
	KfAccount    string
	KfNick       string
	KfID         string
	KfHeadImgURL string
	// KfWx is the WeChat id bound to the account ("" if none yet).
	KfWx string
	// InviteWx, InviteExpireTime (Unix seconds) and InviteStatus describe a
	// pending binding invitation ("waiting", "rejected", "expired").
	InviteWx         string
	InviteExpireTime int64
	InviteStatus     string
}

// kfID accepts kf_id as a JSON string (the documented form) or a number
// (what the API has been seen to send).
type kfID string

func (k *kfID) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*k = kfID(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*k = kfID(n.String())
	return nil
}

// GetKfList lists every agent (cgi-bin/customservice/getkflist).
func (c *Client) GetKfList(ctx context.Context) ([]KfInfo, error) {
	var out struct {
		KfList []struct {
			KfAccount        string `json:"kf_account"`
			KfNick           string `json:"kf_nick"`
			KfID             kfID   `json:"kf_id"`
			KfHeadImgURL     string `json:"kf_headimgurl"`
			KfWx             string `json:"kf_wx"`
			InviteWx         string `json:"invite_wx"`
			InviteExpireTime int64  `json:"invite_expire_time"`
			InviteStatus     string `json:"invite_status"`
		} `json:"kf_list"`
	}
	if err := c.get(ctx, MethodGetKfList, "cgi-bin/customservice/getkflist", nil, &out); err != nil {
		return nil, err
	}
	list := make([]KfInfo, 0, len(out.KfList))
	for _, k := range out.KfList {
		list = append(list, KfInfo{
			KfAccount:        k.KfAccount,
			KfNick:           k.KfNick,
			KfID:             string(k.KfID),
			KfHeadImgURL:     k.KfHeadImgURL,
			KfWx:             k.KfWx,
			InviteWx:         k.InviteWx,
			InviteExpireTime: k.InviteExpireTime,
			InviteStatus:     k.InviteStatus,
		})
	}
	return list, nil
}

// OnlineKf is one agent from getonlinekflist.
type OnlineKf struct {
	KfAccount string
	// Status: 1 PC online, 2 mobile online, 3 both.
	Status int
	KfID   string
	// AutoAccept is the agent's maximum number of automatically accepted sessions.
	AutoAccept int
	// AcceptedCase is the number of sessions the agent serves now.
	AcceptedCase int
}

// GetOnlineKfList lists the agents online now
// (cgi-bin/customservice/getonlinekflist).
func (c *Client) GetOnlineKfList(ctx context.Context) ([]OnlineKf, error) {
	var out struct {
		KfOnlineList []struct {
			KfAccount    string `json:"kf_account"`
			Status       int    `json:"status"`
			KfID         kfID   `json:"kf_id"`
			AutoAccept   int    `json:"auto_accept"`
			AcceptedCase int    `json:"accepted_case"`
		} `json:"kf_online_list"`
	}
	if err := c.get(ctx, MethodGetOnlineKfList, "cgi-bin/customservice/getonlinekflist", nil, &out); err != nil {
		return nil, err
	}
	list := make([]OnlineKf, 0, len(out.KfOnlineList))
	for _, k := range out.KfOnlineList {
		list = append(list, OnlineKf{
			KfAccount:    k.KfAccount,
			Status:       k.Status,
			KfID:         string(k.KfID),
			AutoAccept:   k.AutoAccept,
			AcceptedCase: k.AcceptedCase,
		})
	}
	return list, nil
}

func kfSessionBody(method, kfAccount, openid, text string) ([]byte, error) {
	if err := kfCheckAccount(method, kfAccount); err != nil {
		return nil, err
	}
	if err := kfCheckOpenID(method, openid); err != nil {
		return nil, err
	}
	return apiJSON(struct {
		KfAccount string `json:"kf_account"`
		OpenID    string `json:"openid"`
		Text      string `json:"text,omitempty"`
	}{kfAccount, openid, text})
}

// CreateSession assigns the customer openid to the agent kfAccount
// (customservice/kfsession/create); text is shown to the agent. Only an
// online agent can be given a session; the kf_create_session event follows.
func (c *Client) CreateSession(ctx context.Context, kfAccount, openid, text string) error {
	body, err := kfSessionBody(MethodKfSessionCreate, kfAccount, openid, text)
	if err != nil {
		return err
	}
	return c.postJSON(ctx, MethodKfSessionCreate, "customservice/kfsession/create", body, nil)
}

// CloseSession ends the session between kfAccount and openid
// (customservice/kfsession/close); the kf_close_session event follows.
func (c *Client) CloseSession(ctx context.Context, kfAccount, openid, text string) error {
	body, err := kfSessionBody(MethodKfSessionClose, kfAccount, openid, text)
	if err != nil {
		return err
	}
	return c.postJSON(ctx, MethodKfSessionClose, "customservice/kfsession/close", body, nil)
}

// SessionInfo is a customer's session state from getsession.
type SessionInfo struct {
	// KfAccount serves the customer; "" means nobody does yet.
	KfAccount string
	// CreateTime is when the session was accepted, Unix seconds.
	CreateTime int64
}

// GetSession returns the session state of a customer
// (customservice/kfsession/getsession?openid=).
func (c *Client) GetSession(ctx context.Context, openid string) (SessionInfo, error) {
	if err := kfCheckOpenID(MethodGetSession, openid); err != nil {
		return SessionInfo{}, err
	}
	var out struct {
		KfAccount  string `json:"kf_account"`
		CreateTime int64  `json:"createtime"`
	}
	if err := c.get(ctx, MethodGetSession, "customservice/kfsession/getsession", url.Values{"openid": {openid}}, &out); err != nil {
		return SessionInfo{}, err
	}
	return SessionInfo{KfAccount: out.KfAccount, CreateTime: out.CreateTime}, nil
}

// WaitCases is the waiting queue from getwaitcase.
type WaitCases struct {
	// Count is the number of waiting customers; it can exceed len(Cases),
	// since WeChat lists at most the 100 that have waited longest. It is
	// never less than len(Cases), even if WeChat left count out.
	Count int
	Cases []WaitCase
}

// WaitCase is one waiting customer.
type WaitCase struct {
	OpenID string
	// KfAccount is the agent the customer asked for; "" for any agent.
	KfAccount string
	// CreateTime is Unix seconds: createtime (the name in the older version
	// of WeChat's 多客服 API documentation: when the customer arrived) or,
	// when absent, latest_time (the current version's name: the customer's
	// latest message).
	CreateTime int64
}

// GetWaitCase returns the waiting queue (customservice/kfsession/getwaitcase).
func (c *Client) GetWaitCase(ctx context.Context) (WaitCases, error) {
	var out struct {
		Count        int `json:"count"`
		WaitCaseList []struct {
			OpenID     string `json:"openid"`
			KfAccount  string `json:"kf_account"`
			CreateTime int64  `json:"createtime"`
			LatestTime int64  `json:"latest_time"`
		} `json:"waitcaselist"`
	}
	if err := c.get(ctx, MethodGetWaitCase, "customservice/kfsession/getwaitcase", nil, &out); err != nil {
		return WaitCases{}, err
	}
	res := WaitCases{Count: max(out.Count, len(out.WaitCaseList)), Cases: make([]WaitCase, 0, len(out.WaitCaseList))}
	for _, w := range out.WaitCaseList {
		t := w.CreateTime
		if t == 0 {
			t = w.LatestTime
		}
		res.Cases = append(res.Cases, WaitCase{OpenID: w.OpenID, KfAccount: w.KfAccount, CreateTime: t})
	}
	return res, nil
}

// SessionItem is one session an agent serves, from getsessionlist.
type SessionItem struct {
	OpenID string
	// CreateTime is when the session was created, Unix seconds.
	CreateTime int64
}

// GetSessionList returns the sessions kfAccount serves now
// (customservice/kfsession/getsessionlist?kf_account=).
func (c *Client) GetSessionList(ctx context.Context, kfAccount string) ([]SessionItem, error) {
	if err := kfCheckAccount(MethodGetSessionList, kfAccount); err != nil {
		return nil, err
	}
	var out struct {
		SessionList []struct {
			OpenID     string `json:"openid"`
			CreateTime int64  `json:"createtime"`
		} `json:"sessionlist"`
	}
	if err := c.get(ctx, MethodGetSessionList, "customservice/kfsession/getsessionlist", url.Values{"kf_account": {kfAccount}}, &out); err != nil {
		return nil, err
	}
	list := make([]SessionItem, 0, len(out.SessionList))
	for _, s := range out.SessionList {
		list = append(list, SessionItem{OpenID: s.OpenID, CreateTime: s.CreateTime})
	}
	return list, nil
}

// SendText sends a text customer-service message (cgi-bin/message/custom/send).
// With asKfAccount set, the message is sent in that agent's name
// ("customservice": {"kf_account": …}). It only works within 48 hours of
// the customer's last message (45015, permanent). It is not retried after an
// ambiguous failure (5xx, timeout), which could deliver it twice.
func (c *Client) SendText(ctx context.Context, openid, content, asKfAccount string) error {
	if err := kfCheckOpenID(MethodCustomSend, openid); err != nil {
		return err
	}
	if content == "" {
		return fmt.Errorf("wechat %s: content is required: %w", MethodCustomSend, ErrInvalidRequest)
	}
	type text struct {
		Content string `json:"content"`
	}
	type customService struct {
		KfAccount string `json:"kf_account"`
	}
	msg := struct {
		ToUser        string         `json:"touser"`
		MsgType       string         `json:"msgtype"`
		Text          text           `json:"text"`
		CustomService *customService `json:"customservice,omitempty"`
	}{ToUser: openid, MsgType: "text", Text: text{content}}
	if asKfAccount != "" {
		if err := kfCheckAccount(MethodCustomSend, asKfAccount); err != nil {
			return err
		}
		msg.CustomService = &customService{asKfAccount}
	}
	body, err := apiJSON(msg)
	if err != nil {
		return fmt.Errorf("wechat %s: encode: %w", MethodCustomSend, err)
	}
	return c.postJSON(ctx, MethodCustomSend, "cgi-bin/message/custom/send", body, nil)
}
