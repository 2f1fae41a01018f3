package kfadmin_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// remoteTo returns Deps whose commands go to server with token.
func remoteTo(t *testing.T, server, token string, timeout time.Duration) kfadmin.Deps {
	t.Helper()
	r, err := kfadmin.NewRemote(kfadmin.RemoteConfig{Server: server, Token: token, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return kfadmin.Deps{Remote: r}
}

// A token the server does not know is one line saying what to set, and
// nothing reaches WeChat; the read-only token may read but not change.
func TestRemoteWithAWrongToken(t *testing.T) {
	e := newEnv(t, true)
	api := newAPI(t, e.deps())
	for _, token := range []string{"wrong", adminToken + "x"} {
		_, _, err := kf(t, remoteTo(t, api.base, token, 0), "online")
		if err == nil || err.Error() != "the server refused the admin token: set KEFU_ADMIN_TOKEN to the server's admin token" {
			t.Errorf("token %q: %v", token, err)
		}
	}
	if n := e.fake.CallCount(wechattest.MethodKFOnlineList); n != 0 {
		t.Errorf("getonlinekflist called %d times with a wrong token", n)
	}

	readOnly := remoteTo(t, api.base, readOnlyToken, 0)
	if out, _, err := kf(t, readOnly, "group", "list"); err != nil || out != "no groups\n" {
		t.Errorf("the read-only token lists groups: %q %v", out, err)
	}
	_, _, err := kf(t, readOnly, "group", "create", "sales")
	if err == nil || !strings.Contains(err.Error(), "set KEFU_ADMIN_TOKEN to the server's admin token, not the read-only one") || strings.Contains(err.Error(), "\n") {
		t.Errorf("a change with the read-only token: %v", err)
	}
}

// The client reads RFC 9457 problem details — detail, else the deprecated
// error — and shows WeChat's errcode and errmsg when the detail does not;
// an answer that is no error document still says what to check.
func TestRemoteReadsErrorAnswers(t *testing.T) {
	code := 65400
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"problem with WeChat's errcode in the detail", func(w http.ResponseWriter) {
			httpapi.WriteProblem(w, 502, "list online agents: wechat getonlinekflist: errcode 65400: not upgraded", httpapi.WeChat(code, "not upgraded"))
		}, "list online agents: wechat getonlinekflist: errcode 65400: not upgraded"},
		{"problem whose detail lacks the errcode", func(w http.ResponseWriter) {
			httpapi.WriteProblem(w, 502, "WeChat refused", httpapi.WeChat(code, "api unauthorized"))
		}, "WeChat refused (WeChat errcode 65400: api unauthorized)"},
		{"problem preferring detail over error", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(409)
			fmt.Fprint(w, `{"title":"Conflict","status":409,"detail":"the detail","error":"the alias"}`)
		}, "the detail"},
		{"a setting the server lacks is the server's", func(w http.ResponseWriter) {
			httpapi.WriteProblem(w, 503, "not configured: the WeChat API needs KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET", httpapi.RetryAfter(5*time.Minute))
		}, " cannot do this: not configured: the WeChat API needs KEFU_WECHAT_APPID"},
		{"older server: error only", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(404)
			fmt.Fprint(w, `{"error":"get group: group not found: g"}`)
		}, "get group: group not found: g"},
		{"control characters from the server are not printed", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(500)
			fmt.Fprint(w, `{"detail":"bad\u001b[31m\nthing"}`)
		}, "bad [31m thing"},
		{"a 404 that is not kefu's", func(w http.ResponseWriter) {
			http.NotFound(w, nil)
		}, "does not serve /api/kf/online (404): check the URL, and that the server runs the all or estimator role with KEFU_ADMIN_TOKEN set"},
		{"a proxy's error page", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}, "answered GET /api/kf/online with 502 Bad Gateway and no error document"},
		{"a redirect", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://kefu.example.com/api/kf/online")
			w.WriteHeader(301)
		}, "redirects /api/kf/online to https://kefu.example.com/api/kf/online: give that URL to --server"},
		{"a success that is not JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>welcome</html>")
		}, "with what is not kefu's JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var auth string
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				auth = r.Header.Get("Authorization")
				tt.answer(w)
			}))
			defer hs.Close()
			out, _, err := kf(t, remoteTo(t, hs.URL, "tok", 0), "online")
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.ContainsAny(err.Error(), "\n\x1b") || errors.Is(err, kfadmin.ErrUsage) {
				t.Errorf("got %q; want one line with %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("a failure printed %q", out)
			}
			if auth != "Bearer tok" {
				t.Errorf("Authorization %q", auth)
			}
		})
	}
}

// A server that cannot be reached is one line naming the URL and what to
// check, within the timeout.
func TestRemoteUnreachable(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return "http://" + ln.Addr().String()
	}()
	// silent accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tlsServer := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsServer.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	tlsServer.StartTLS()
	defer tlsServer.Close()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()

	// Only the silent server needs the short timeout; the others answer at
	// once, and a TLS handshake under the race detector on a loaded
	// machine can take longer than 300 ms.
	const short, long = 300 * time.Millisecond, 20 * time.Second
	tests := []struct {
		name, url string
		timeout   time.Duration
		want      string
	}{
		{"connection refused", closed, long, "nothing answers at " + closed + " (connection refused): check the host and port"},
		{"no answer", "http://" + silent.Addr().String(), short, "no answer from kefu at http://" + silent.Addr().String() + " within 300ms"},
		{"a certificate nobody signed", tlsServer.URL, long, "TLS with " + tlsServer.URL + " failed"},
		{"https to a plain http port", strings.Replace(plain.URL, "http:", "https:", 1), long, "does not speak TLS there"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := kf(t, remoteTo(t, tt.url, "tok", tt.timeout), "waiting")
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v; want one line with %q", err, tt.want)
			}
			if d := time.Since(start); d > tt.timeout+5*time.Second {
				t.Errorf("took %s with a timeout of %s", d, tt.timeout)
			}
		})
	}
}
