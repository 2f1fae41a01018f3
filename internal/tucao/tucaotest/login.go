package tucaotest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// The feedback page and its third-party login.
//
// Tucao's page for customers is {base}/product/{product_id}. A site logs its
// user in by a form POST (application/x-www-form-urlencoded) to that URL of
// openid (the site's own id for the user, which Tucao takes as the user's
// identity), nickname (at most 8 characters) and avatar (an https png or jpg
// URL). All three valid: the user is logged in. Anything missing or invalid:
// the page opens anonymous, as on Tucao. The login lasts for the browser's
// session (a cookie here). An optional customInfo (the site's own data, at
// most 4 KiB here) comes back as the "extra" of every post the user writes
// in that session: as the JSON value itself when it is a JSON object or
// array, else as a JSON string; without it extra is [] as in Tucao's API documentation.
//
// Writing a post is the customer typing on that page; Tucao's in-page API
// for it is not documented, so the fake has its own:
// POST {base}/product/{product_id}/post with the form field content and the
// session cookie creates a post by the logged-in user, or by a new anonymous
// user ("tucao_<n>") without a login, and answers 201 with the post's id.

const (
	sessionCookie = "txc_fake_session"
	// maxFormBytes bounds what a test or the demo posts to the page.
	maxFormBytes     = 64 << 10
	maxNicknameRunes = 8
	maxCustomInfo    = 4 << 10
)

// Login is a third-party login the page accepted.
type Login struct {
	OpenID, NickName, AvatarURL string
	// CustomInfo is the login's customInfo as posted ("" without one).
	CustomInfo string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>兔小巢（模拟）</title></head>
<body>
{{- with .User}}<p>{{.NickName}}，欢迎反馈</p>{{else}}<p>匿名反馈</p>{{end}}
<form method="post" action="/product/{{.Product}}/post"><textarea name="content"></textarea><button type="submit">发表</button></form>
</body></html>
`))

// handleLogin answers the feedback page: a POST with a valid login logs
// the user in, anything else shows the page anonymous.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("product") != s.productID {
		http.NotFound(w, r)
		return
	}
	var user *Login
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if in, ok := validLogin(r.PostForm); ok {
			user = &in
			token := newSessionToken()
			s.mu.Lock()
			s.sessions[token] = in
			s.logins = append(s.logins, in)
			s.mu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/product/" + s.productID, HttpOnly: true})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplate.Execute(w, struct {
		User    *Login
		Product string
	}{user, s.productID})
}

// validLogin applies the rules of the third-party login.
func validLogin(form url.Values) (Login, bool) {
	in := Login{OpenID: form.Get("openid"), NickName: form.Get("nickname"), AvatarURL: form.Get("avatar"), CustomInfo: form.Get("customInfo")}
	if len(in.CustomInfo) > maxCustomInfo {
		in.CustomInfo = ""
	}
	if in.OpenID == "" || in.NickName == "" || utf8.RuneCountInString(in.NickName) > maxNicknameRunes {
		return Login{}, false
	}
	u, err := url.Parse(in.AvatarURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return Login{}, false
	}
	switch p := strings.ToLower(u.Path); {
	case strings.HasSuffix(p, ".png"), strings.HasSuffix(p, ".jpg"), strings.HasSuffix(p, ".jpeg"):
		return in, true
	}
	return Login{}, false
}

// handleWrite creates a post by the page's user.
func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("product") != s.productID {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	content := r.PostForm.Get("content")
	if strings.TrimSpace(content) == "" {
		http.Error(w, "content is required", http.StatusBadRequest)
		return
	}
	in := PostInput{Content: content}
	s.mu.Lock()
	if c, err := r.Cookie(sessionCookie); err == nil {
		if user, ok := s.sessions[c.Value]; ok {
			in.OpenID, in.NickName, in.AvatarURL = user.OpenID, user.NickName, user.AvatarURL
			in.Extra = extraOf(user.CustomInfo)
		}
	}
	id := s.addPostLocked(in).post.ID
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(id))
}

// Logins returns the third-party logins the page accepted, oldest first.
func (s *Server) Logins() []Login {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Login(nil), s.logins...)
}

func newSessionToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// extraOf is the extra of a post written under a login with customInfo.
func extraOf(customInfo string) json.RawMessage {
	if customInfo == "" {
		return nil // the default, []
	}
	trimmed := strings.TrimSpace(customInfo)
	if json.Valid([]byte(trimmed)) && (strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[")) {
		return json.RawMessage(trimmed)
	}
	quoted, _ := json.Marshal(customInfo)
	return quoted
}
