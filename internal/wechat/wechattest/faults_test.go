package wechattest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestStableTokenForcedRefreshLimits(t *testing.T) {
	t.Run("another system's forced refresh: the old token answers 40001, stable_token without force returns the new one", func(t *testing.T) {
		f := newFake(t, nil)
		old, _ := f.stableToken(false)
		other, err := f.srv.ForceRefreshByOtherSystem()
		if err != nil {
			t.Fatal(err)
		}
		if got := f.probe(old); got != CodeInvalidCredential {
			t.Fatalf("old token: errcode %d, want 40001", got)
		}
		cur, _ := f.stableToken(false)
		if cur != other || f.probe(cur) != 0 {
			t.Fatal("stable_token without force did not return the other system's token")
		}
		if n := f.srv.ForceRefreshRequests(); n != 0 {
			t.Fatalf("ForceRefreshRequests = %d, want 0 (the other system is not the API)", n)
		}
	})
	t.Run("a second force within 30 s is 45011 and keeps the token", func(t *testing.T) {
		f := newFake(t, nil)
		a, _ := f.stableToken(true)
		f.clock.Advance(29 * time.Second)
		resp := f.post(MethodStableToken, url.Values{}, map[string]any{
			"grant_type": "client_credential", "appid": testAppID, "secret": testSecret, "force_refresh": true,
		})
		if got := errcode(resp); got != CodeFrequencyLimit {
			t.Fatalf("errcode %d, want 45011", got)
		}
		if f.probe(a) != 0 {
			t.Fatal("a refused force revoked the token")
		}
		f.clock.Advance(time.Second)
		if b, _ := f.stableToken(true); b == a {
			t.Fatal("a force 30 s later returned the same token")
		}
		if n := f.srv.ForceRefreshRequests(); n != 3 {
			t.Fatalf("ForceRefreshRequests = %d, want 3", n)
		}
	})
	t.Run("the 21st force within a day is 45009", func(t *testing.T) {
		f := newFake(t, nil)
		for range 20 {
			f.stableToken(true)
			f.clock.Advance(time.Minute)
		}
		if _, err := f.srv.ForceRefreshByOtherSystem(); err == nil || !strings.Contains(err.Error(), "45009") {
			t.Fatalf("21st force: %v, want 45009", err)
		}
		f.clock.Advance(24 * time.Hour)
		if _, err := f.srv.ForceRefreshByOtherSystem(); err != nil {
			t.Fatalf("a day later: %v", err)
		}
	})
}

func TestInjectedHTTPFaults(t *testing.T) {
	send := func(f *fake, hc *http.Client) (*http.Response, error) {
		q := url.Values{"access_token": {f.token}}
		body := `{"touser":"o-1","msgtype":"text","text":{"content":"hi"}}`
		return hc.Post(f.http.URL+"/"+MethodCustomSend+"?"+q.Encode(), "application/json", strings.NewReader(body))
	}
	t.Run("429 is answered before the request is carried out", func(t *testing.T) {
		f := newFake(t, nil)
		if _, err := f.srv.CustomerMessage(t.Context(), "o-1", "hi"); err != nil {
			t.Fatal(err)
		}
		f.srv.InjectFault(MethodCustomSend, FaultTooManyRequests, 1)
		resp, err := send(f, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || len(f.srv.Sent()) != 0 {
			t.Fatalf("status %d, %d sent; want 429 and nothing sent", resp.StatusCode, len(f.srv.Sent()))
		}
	})
	t.Run("hang after handling: the message is sent, the client times out", func(t *testing.T) {
		f := newFake(t, nil)
		if _, err := f.srv.CustomerMessage(t.Context(), "o-1", "hi"); err != nil {
			t.Fatal(err)
		}
		f.srv.InjectFault(MethodCustomSend, FaultHangAfterHandling, 1)
		_, err := send(f, &http.Client{Timeout: 200 * time.Millisecond})
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if len(f.srv.Sent()) != 1 {
			t.Fatalf("%d sent, want 1", len(f.srv.Sent()))
		}
	})
	t.Run("reset after handling: the message is sent, the connection dropped", func(t *testing.T) {
		f := newFake(t, nil)
		if _, err := f.srv.CustomerMessage(t.Context(), "o-1", "hi"); err != nil {
			t.Fatal(err)
		}
		f.srv.InjectFault(MethodCustomSend, FaultResetAfterHandling, 1)
		if _, err := send(f, http.DefaultClient); err == nil {
			t.Fatal("no error")
		}
		if len(f.srv.Sent()) != 1 {
			t.Fatalf("%d sent, want 1", len(f.srv.Sent()))
		}
	})
}

func TestNetFaults(t *testing.T) {
	srv, err := New(Config{AppID: testAppID, AppSecret: testSecret, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewTLSServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	var nf NetFaults
	hc := &http.Client{Timeout: time.Second, Transport: nf.Transport(hs.Client().Transport.(*http.Transport))}
	get := func() error {
		resp, err := hc.Get(hs.URL + "/" + MethodCallbackIP)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	nf.FailDials(1)
	var opErr *net.OpError
	if err := get(); !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Fatalf("failed dial: %v", err)
	}
	nf.FailHandshakes(1)
	if err := get(); err == nil {
		t.Fatal("failed handshake: no error")
	}
	nf.StallDials(1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/"+MethodCallbackIP, nil)
	if _, err := hc.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled dial: %v", err)
	}
	if n := srv.CallCount(MethodCallbackIP); n != 0 {
		t.Fatalf("the server saw %d calls, want 0", n)
	}
	if err := get(); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
}
