package kfadmin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

const (
	testAppID  = "wx2c2769f8efd9abc2"
	testSecret = "s3cr3t"
	testToken  = "spamtest"
)

var testStart = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// env is a fake WeChat with a client pointed at it and, optionally, a
// groups store on a real embedded NATS server.
type env struct {
	t      *testing.T
	fake   *wechattest.Server
	clock  *wechattest.FakeClock
	url    string
	client *wechat.Client
	groups *kfadmin.Groups
	kv     jetstream.KeyValue

	mu     sync.Mutex
	bodies map[string][]byte // last request body per API path
}

func newEnv(t *testing.T, withNATS bool) *env {
	t.Helper()
	clock := wechattest.NewFakeClock(testStart)
	fake, err := wechattest.New(wechattest.Config{AppID: testAppID, AppSecret: testSecret, Token: testToken, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fake: fake, clock: clock, bodies: map[string][]byte{}}
	// Record request bodies on their way to the fake, to see what the
	// client really sends.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.bodies[strings.TrimPrefix(r.URL.Path, "/")] = b
		e.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		fake.Close()
		hs.Close()
	})
	e.url = hs.URL
	e.client, err = wechat.NewClient(wechat.ClientConfig{BaseURL: hs.URL, AppID: testAppID, Secret: testSecret, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if withNATS {
		e.groups, e.kv = newGroups(t)
	}
	return e
}

func (e *env) body(path string) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bodies[path]
}

func (e *env) deps() kfadmin.Deps {
	return kfadmin.Deps{Client: e.client, Groups: e.groups, Now: e.clock.Now}
}

// agent creates an online agent with the given auto-accept limit.
func (e *env) agent(account string, status, autoAccept int) {
	e.t.Helper()
	if err := e.fake.AddAgent(account, strings.Split(account, "@")[0]); err != nil {
		e.t.Fatal(err)
	}
	if err := e.fake.SetAutoAccept(account, autoAccept); err != nil {
		e.t.Fatal(err)
	}
	if err := e.fake.SetAgentStatus(account, status); err != nil {
		e.t.Fatal(err)
	}
}

// serve makes the customers write and be served by account.
func (e *env) serve(account string, openids ...string) {
	e.t.Helper()
	for _, o := range openids {
		e.customer(o)
		if err := e.client.CreateSession(context.Background(), account, o, ""); err != nil {
			e.t.Fatal(err)
		}
	}
}

// customer makes openid known to the fake (a message, no callback URL).
func (e *env) customer(openid string) {
	e.t.Helper()
	if _, err := e.fake.CustomerMessage(context.Background(), openid, "你好"); err != nil {
		e.t.Fatal(err)
	}
}

// newGroups starts NATS and returns a store on the kefu_groups bucket.
func newGroups(t testing.TB) (*kfadmin.Groups, jetstream.KeyValue) {
	t.Helper()
	kv := newBucket(t, natstest.Run(t, nil))
	return kfadmin.NewGroups(kv), kv
}

// newBucket creates the bucket on its own connection to srv, as a
// separate kefu process would.
func newBucket(t testing.TB, srv *server.Server) jetstream.KeyValue {
	t.Helper()
	_, js := natstest.Connect(t, srv)
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bus.BucketGroups, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// kf runs `kefu kf args…`.
func kf(t *testing.T, deps kfadmin.Deps, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	err = kfadmin.Run(context.Background(), args, &out, &errw, deps)
	return out.String(), errw.String(), err
}

// mustKf runs a command that must succeed.
func mustKf(t *testing.T, deps kfadmin.Deps, args ...string) string {
	t.Helper()
	out, _, err := kf(t, deps, args...)
	if err != nil {
		t.Fatalf("kf %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// decodeOne decodes stdout as exactly one JSON document into v.
func decodeOne(t *testing.T, stdout string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		t.Fatalf("stdout holds more than one JSON document: %q", stdout)
	}
}
