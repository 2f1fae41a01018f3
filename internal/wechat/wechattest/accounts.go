package wechattest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// kfAccountRE is the documented form: a prefix of at most 10 letters, digits
// or underscores, "@", and the account's WeChat id (at most 30 characters).
var kfAccountRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,10}@([A-Za-z0-9_-]{1,30})$`)

// maxNicknameRunes is the documented nickname limit (最长16个字).
const maxNicknameRunes = 16

func (s *Server) validAccountForm(account string) *APIError {
	m := kfAccountRE.FindStringSubmatch(account)
	if m == nil {
		return apiErr(CodeIllegalKFAccount, "")
	}
	if s.cfg.WeChatID != "" && m[1] != s.cfg.WeChatID {
		return apiErr(CodeIllegalKFAccount, "suffix is not the account's WeChat id")
	}
	return nil
}

func validNickname(nick string) *APIError {
	if nick == "" || utf8.RuneCountInString(nick) > maxNicknameRunes {
		return apiErr(CodeInvalidNickname, "")
	}
	return nil
}

type kfAccountRequest struct {
	KfAccount string `json:"kf_account"`
	Nickname  string `json:"nickname"`
	Password  string `json:"password"`
}

// addAgentLocked creates an offline agent with auto_accept 0.
func (s *Server) addAgentLocked(account, nickname, password string) (*agent, *APIError) {
	if e := s.validAccountForm(account); e != nil {
		return nil, e
	}
	if e := validNickname(nickname); e != nil {
		return nil, e
	}
	if _, ok := s.agents[account]; ok {
		return nil, apiErr(CodeKFAccountExists, "")
	}
	if len(s.agents) >= s.cfg.MaxAccounts {
		return nil, apiErr(CodeKFAccountLimit, "")
	}
	a := &agent{account: account, nickname: nickname, password: password, id: strconv.Itoa(s.nextKFID)}
	s.nextKFID++
	s.agents[account] = a
	return a, nil
}

func (s *Server) handleKFAdd(req kfAccountRequest) (any, *APIError) {
	if _, e := s.addAgentLocked(req.KfAccount, req.Nickname, req.Password); e != nil {
		return nil, e
	}
	return okResponse, nil
}

func (s *Server) handleKFUpdate(req kfAccountRequest) (any, *APIError) {
	a, e := s.agentLocked(req.KfAccount)
	if e != nil {
		return nil, e
	}
	if e := validNickname(req.Nickname); e != nil {
		return nil, e
	}
	a.nickname = req.Nickname
	if req.Password != "" {
		a.password = req.Password
	}
	return okResponse, nil
}

// handleKFUploadHeadImg stores the multipart "media" file. WeChat asks for
// a JPEG; the fake also takes PNG and GIF and refuses anything that does
// not sniff as an image (40005).
func (s *Server) handleKFUploadHeadImg(r *http.Request, body []byte) (any, *APIError) {
	account := r.URL.Query().Get("kf_account")
	s.mu.Lock()
	_, ok := s.agents[account]
	s.mu.Unlock()
	if !ok {
		return nil, apiErr(CodeInvalidKFAccount, "")
	}
	img, e := readMedia(r.Header.Get("Content-Type"), body)
	if e != nil {
		return nil, e
	}
	if len(img) > s.cfg.MaxHeadImgBytes {
		return nil, apiErr(CodeInvalidMediaSize, "")
	}
	ctype := http.DetectContentType(img)
	switch ctype {
	case "image/jpeg", "image/png", "image/gif":
	default:
		return nil, apiErr(CodeInvalidFileType, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.agentLocked(account) // deleted meanwhile?
	if e != nil {
		return nil, e
	}
	a.headImg, a.headImgType = img, ctype
	return okResponse, nil
}

// readMedia returns the "media" part of a multipart body, or 41005.
func readMedia(contentType string, body []byte) ([]byte, *APIError) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, apiErr(CodeMissingMedia, "")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, apiErr(CodeMissingMedia, "")
		}
		if err != nil {
			return nil, apiErr(CodeMissingMedia, "bad multipart body")
		}
		if p.FormName() != "media" {
			continue
		}
		img, err := io.ReadAll(p)
		if err != nil {
			return nil, apiErr(CodeMissingMedia, "bad multipart body")
		}
		if len(img) == 0 {
			return nil, apiErr(CodeMissingMedia, "")
		}
		return img, nil
	}
}

// handleKFDel takes kf_account from the query (the documented form) or,
// failing that, from a JSON body.
func (s *Server) handleKFDel(r *http.Request, body []byte) (any, *APIError) {
	account := r.URL.Query().Get("kf_account")
	if account == "" && len(bytes.TrimSpace(body)) > 0 {
		var req kfAccountRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, apiErr(CodeDataFormatError, "")
		}
		account = req.KfAccount
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.agentLocked(account)
	if e != nil {
		return nil, e
	}
	s.deleteAgentLocked(a)
	return okResponse, nil
}

type kfListEntry struct {
	KfAccount    string `json:"kf_account"`
	KfNick       string `json:"kf_nick"`
	KfID         string `json:"kf_id"`
	KfHeadImgURL string `json:"kf_headimgurl"`
	// Bound WeChat user, or the last invitation (invite.go).
	KfWx             string `json:"kf_wx,omitempty"`
	InviteWx         string `json:"invite_wx,omitempty"`
	InviteExpireTime int64  `json:"invite_expire_time,omitempty"`
	InviteStatus     string `json:"invite_status,omitempty"`
}

type kfListResponse struct {
	KfList []kfListEntry `json:"kf_list"`
}

// handleKFList lists every account by kf_id. kf_headimgurl points at the
// fake's own /_control/headimg/ once an avatar was uploaded.
func (s *Server) handleKFList(r *http.Request, _ []byte) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := kfListResponse{KfList: []kfListEntry{}}
	for _, a := range s.sortedAgentsLocked() {
		e := kfListEntry{KfAccount: a.account, KfNick: a.nickname, KfID: a.id}
		s.fillInviteLocked(&e, a)
		if a.headImg != nil {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			e.KfHeadImgURL = scheme + "://" + r.Host + "/_control/headimg/" + url.PathEscape(a.account)
		}
		resp.KfList = append(resp.KfList, e)
	}
	return resp, nil
}

type kfOnlineEntry struct {
	KfAccount    string `json:"kf_account"`
	Status       int    `json:"status"`
	KfID         string `json:"kf_id"`
	AutoAccept   int    `json:"auto_accept"`
	AcceptedCase int    `json:"accepted_case"`
}

type kfOnlineResponse struct {
	KfOnlineList []kfOnlineEntry `json:"kf_online_list"`
}

func (s *Server) handleKFOnlineList(*http.Request, []byte) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := kfOnlineResponse{KfOnlineList: []kfOnlineEntry{}}
	for _, a := range s.sortedAgentsLocked() {
		if !a.online() {
			continue
		}
		resp.KfOnlineList = append(resp.KfOnlineList, kfOnlineEntry{
			KfAccount: a.account, Status: a.status, KfID: a.id,
			AutoAccept: a.autoAccept, AcceptedCase: a.accepted,
		})
	}
	return resp, nil
}
