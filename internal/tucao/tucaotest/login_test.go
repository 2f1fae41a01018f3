package tucaotest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// browser is a customer's browser: it keeps the page's cookie.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestThirdPartyLoginPostsAsTheUser(t *testing.T) {
	const avatar = "https://kefu.example.com/feedback/avatar.png"
	login := func(openid, nickname, avatar string) url.Values {
		v := url.Values{}
		for k, x := range map[string]string{"openid": openid, "nickname": nickname, "avatar": avatar} {
			if x != "-" {
				v.Set(k, x)
			}
		}
		return v
	}
	tests := []struct {
		name     string
		form     url.Values
		loggedIn bool
	}{
		{"openid, nickname and avatar log the user in", login("site-user-1", "微信用户", avatar), true},
		{"a jpg avatar is fine", login("site-user-1", "微信用户", "https://cdn.example.com/a.JPG"), true},
		{"a nickname of 8 characters is fine", login("site-user-1", "一二三四五六七八", avatar), true},
		{"without openid the page is anonymous", login("-", "微信用户", avatar), false},
		{"without nickname the page is anonymous", login("site-user-1", "-", avatar), false},
		{"without avatar the page is anonymous", login("site-user-1", "微信用户", "-"), false},
		{"a nickname over 8 characters is refused", login("site-user-1", "一二三四五六七八九", avatar), false},
		{"an http avatar is refused", login("site-user-1", "微信用户", "http://kefu.example.com/a.png"), false},
		{"an avatar that is no png or jpg is refused", login("site-user-1", "微信用户", "https://kefu.example.com/a.gif"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			defer s.Close()
			c := browser(t)
			page := s.URL() + "/product/" + s.ProductID()
			status, body := postForm(t, c, page, tt.form)
			if status != http.StatusOK || !strings.Contains(body, `action="/product/`+s.ProductID()+`/post"`) {
				t.Fatalf("login: %d %s", status, body)
			}
			status, id := postForm(t, c, page+"/post", url.Values{"content": {"客服很耐心"}})
			if status != http.StatusCreated {
				t.Fatalf("write: %d %s", status, id)
			}
			p, ok := s.Post(id)
			if !ok {
				t.Fatalf("post %s not stored", id)
			}
			if tt.loggedIn {
				if p.OpenID != tt.form.Get("openid") || p.NickName != tt.form.Get("nickname") || p.AvatarURL != tt.form.Get("avatar") || len(s.Logins()) != 1 {
					t.Errorf("post by %q/%q/%q, logins %v; want the login's user", p.OpenID, p.NickName, p.AvatarURL, s.Logins())
				}
			} else if !strings.HasPrefix(p.OpenID, "tucao_") || len(s.Logins()) != 0 {
				t.Errorf("post by %q, logins %v; want anonymous", p.OpenID, s.Logins())
			}
			if p.Content != "客服很耐心" {
				t.Errorf("content %q", p.Content)
			}
		})
	}
}

func TestFeedbackPageRefusals(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := browser(t)
	page := s.URL() + "/product/" + s.ProductID()
	if status, _ := postForm(t, c, s.URL()+"/product/999", url.Values{"openid": {"x"}}); status != http.StatusNotFound {
		t.Errorf("another product: %d, want 404", status)
	}
	if status, _ := postForm(t, c, page+"/post", url.Values{"content": {"  "}}); status != http.StatusBadRequest {
		t.Errorf("empty content: %d, want 400", status)
	}
	if status, _ := postForm(t, c, page+"/post", url.Values{"content": {strings.Repeat("x", maxFormBytes)}}); status != http.StatusBadRequest {
		t.Errorf("oversized form: %d, want 400", status)
	}
	// Only the accepted writes made posts.
	if n := len(s.Posts()); n != 0 {
		t.Errorf("%d posts after refused requests, want 0", n)
	}
	resp, err := c.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET page: %d", resp.StatusCode)
	}
}

// A browser that logged in once keeps posting as that user; another
// browser stays anonymous.
func TestLoginLastsForTheBrowser(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	page := s.URL() + "/product/" + s.ProductID()
	a, b := browser(t), browser(t)
	postForm(t, a, page, url.Values{"openid": {"user-a"}, "nickname": {"甲"}, "avatar": {"https://x.example/a.png"}})
	_, first := postForm(t, a, page+"/post", url.Values{"content": {"one"}})
	_, second := postForm(t, a, page+"/post", url.Values{"content": {"two"}})
	_, other := postForm(t, b, page+"/post", url.Values{"content": {"three"}})
	for id, want := range map[string]string{first: "user-a", second: "user-a"} {
		if p, _ := s.Post(id); p.OpenID != want {
			t.Errorf("post %s by %q, want %q", id, p.OpenID, want)
		}
	}
	if p, _ := s.Post(other); p.OpenID == "user-a" {
		t.Errorf("another browser posted as user-a")
	}
}

// customInfo given at login comes back as the extra of the user's posts,
// and through the API.
func TestCustomInfoComesBackAsExtra(t *testing.T) {
	tests := []struct {
		name, customInfo, want string
	}{
		{"a JSON object is returned as is", `{"kefu_session_id":"ks1_x","kf_account":"kf2001@shop"}`, `{"kefu_session_id":"ks1_x","kf_account":"kf2001@shop"}`},
		{"plain text is returned as a string", `vip`, `"vip"`},
		{"without customInfo extra is the documented []", ``, `[]`},
		{"customInfo over 4 KiB is dropped", `{"x":"` + strings.Repeat("a", maxCustomInfo) + `"}`, `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			defer s.Close()
			c := browser(t)
			page := s.URL() + "/product/" + s.ProductID()
			form := url.Values{"openid": {"user-a"}, "nickname": {"甲"}, "avatar": {"https://x.example/a.png"}}
			if tt.customInfo != "" {
				form.Set("customInfo", tt.customInfo)
			}
			postForm(t, c, page, form)
			_, id := postForm(t, c, page+"/post", url.Values{"content": {"很好"}})
			p, ok := s.Post(id)
			if !ok || p.OpenID != "user-a" {
				t.Fatalf("post %s: %+v", id, p)
			}
			if string(p.Extra) != tt.want {
				t.Errorf("extra %s, want %s", p.Extra, tt.want)
			}
		})
	}
}
