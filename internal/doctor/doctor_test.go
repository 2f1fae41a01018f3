package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/services/feedback/store"
)

const (
	appID  = "wx2c2769f8efd9abc2"
	secret = "s3cr3t-app-secret"
	token  = "doctorToken123"
)

// loadConfig is config.Load over env.
func loadConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// only returns the single result named name, failing the test unless
// there is exactly one.
func only(t *testing.T, rs []Result, name string) Result {
	t.Helper()
	var got []Result
	for _, r := range rs {
		if r.Name == name {
			got = append(got, r)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d results named %q in %+v", len(got), name, rs)
	}
	return got[0]
}

func wantResult(t *testing.T, r Result, status Status, foundHas, fixHas string) {
	t.Helper()
	if r.Status != status || !strings.Contains(r.Found, foundHas) || !strings.Contains(r.Fix, fixHas) {
		t.Fatalf("%s: got %s %q (fix %q); want %s, found containing %q, fix containing %q", r.Name, r.Status, r.Found, r.Fix, status, foundHas, fixHas)
	}
}

func TestRunBoundsEachCheckAndTheWhole(t *testing.T) {
	hang := Check{Name: "hangs", Run: func(ctx context.Context) []Result {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // returns late, as a careless check would
		return []Result{{Status: OK}}
	}}
	fine := Check{Name: "fine", Run: func(context.Context) []Result { return []Result{{Status: OK, Found: "yes"}} }}
	start := time.Now()
	rs := Run(context.Background(), []Check{hang, fine}, 100*time.Millisecond)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Run took %s with a 100ms timeout per check", took)
	}
	wantResult(t, only(t, rs, "hangs"), Fail, "no answer within 100ms", "--timeout")
	wantResult(t, only(t, rs, "fine"), OK, "yes", "")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rs = Run(ctx, []Check{fine}, time.Second)
	wantResult(t, only(t, rs, "fine"), Skip, "time is up", "")
}

func TestWriteIsPlainWhenPipedColouredOnATerminalAndJSONForMachines(t *testing.T) {
	rs := []Result{
		{Name: "a", Status: OK, Found: "fine"},
		{Name: "bee", Status: Fail, Found: "broken\nacross lines", Fix: "set KEFU_X"},
		{Name: "c", Status: Warn, Found: "meh", Fix: "consider KEFU_Y"},
		{Name: "d", Status: Skip, Found: "not configured", Fix: "ignored for a skip"},
	}
	var plain bytes.Buffer
	if err := Write(&plain, rs, false); err != nil {
		t.Fatal(err)
	}
	want := "ok    a    fine\n" +
		"FAIL  bee  broken across lines\n" +
		"           fix: set KEFU_X\n" +
		"warn  c    meh\n" +
		"           fix: consider KEFU_Y\n" +
		"skip  d    not configured\n" +
		"\n1 ok, 1 failed, 1 warnings, 1 skipped\n"
	if plain.String() != want {
		t.Fatalf("plain report:\n%s\nwant:\n%s", plain.String(), want)
	}
	var coloured bytes.Buffer
	Write(&coloured, rs, true)
	for _, c := range []string{"\x1b[32mok  \x1b[0m", "\x1b[31mFAIL\x1b[0m", "\x1b[33mwarn\x1b[0m"} {
		if !strings.Contains(coloured.String(), c) {
			t.Errorf("coloured report lacks %q:\n%q", c, coloured.String())
		}
	}
	if strings.Contains(plain.String(), "\x1b") {
		t.Error("plain report has escape sequences")
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rs); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OK     bool     `json:"ok"`
		Checks []Result `json:"checks"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OK || len(doc.Checks) != 4 || doc.Checks[1].Fix != "set KEFU_X" || doc.Checks[1].Status != Fail {
		t.Fatalf("JSON report %s", js.String())
	}
	var wide bytes.Buffer
	Write(&wide, []Result{{Name: "多客服", Status: OK, Found: "x"}, {Name: "NATS123", Status: OK, Found: "y"}}, false)
	if want := "ok    多客服   x\nok    NATS123  y\n"; !strings.HasPrefix(wide.String(), want) {
		t.Fatalf("wide names are not aligned by columns:\n%q\nwant\n%q", wide.String(), want)
	}
	if !Failed(rs) || Failed(rs[2:]) {
		t.Fatal("Failed does not follow the FAIL results")
	}
}

func TestConfigCheck(t *testing.T) {
	strict := []Need{{Role: "ingest", Need: config.NeedCallback}}
	lenient := []Need{{Role: "all", Need: config.NeedTucao, Lenient: true}}
	tests := []struct {
		name     string
		env      map[string]string
		loadErr  error
		needs    []Need
		result   string
		status   Status
		found    string
		fix      string
		absentOf string // a value that must appear nowhere
	}{
		{name: "a setting that does not load", loadErr: errors.New(`KEFU_LOG_LEVEL: want debug, info, warn or error, got "loud"`),
			result: "configuration", status: Fail, found: "does not load", fix: "KEFU_LOG_LEVEL"},
		{name: "a strict role's missing setting fails", env: map[string]string{"KEFU_WECHAT_APPID": "wx1"}, needs: strict,
			result: "settings: WeChat callbacks", status: Fail, found: "KEFU_WECHAT_TOKEN is required by ingest", fix: "set KEFU_WECHAT_TOKEN"},
		{name: "all runs without an integration: a warning", needs: lenient,
			result: "settings: the Tucao poller", status: Warn, found: "runs without the Tucao poller", fix: "set KEFU_TUCAO_PRODUCT_ID and KEFU_TUCAO_SECRET"},
		{name: "everything set", env: map[string]string{"KEFU_WECHAT_APPID": "wx1", "KEFU_WECHAT_TOKEN": "abc123"}, needs: strict,
			result: "settings", status: OK, found: "everything ingest needs is set"},
		{name: "a public URL that is not absolute", env: map[string]string{"KEFU_PUBLIC_URL": "kefu.example.com"},
			result: "KEFU_PUBLIC_URL", status: Fail, found: "not an absolute", fix: "set KEFU_PUBLIC_URL"},
		{name: "a public URL with the callback path", env: map[string]string{"KEFU_PUBLIC_URL": "https://kefu.example.com/wechat/callback"},
			result: "KEFU_PUBLIC_URL", status: Fail, found: "ends in /wechat/callback", fix: "KEFU_PUBLIC_URL"},
		{name: "a public URL with a password", env: map[string]string{"KEFU_PUBLIC_URL": "https://u:hunter2@kefu.example.com"},
			result: "KEFU_PUBLIC_URL", status: Fail, found: "has a query, fragment or user", fix: "KEFU_PUBLIC_URL", absentOf: "hunter2"},
		{name: "a public URL on a port WeChat does not call", env: map[string]string{"KEFU_PUBLIC_URL": "https://kefu.example.com:8443"},
			result: "KEFU_PUBLIC_URL", status: Warn, found: "port 8443", fix: "443"},
		{name: "a plain-http public URL", env: map[string]string{"KEFU_PUBLIC_URL": "http://kefu.example.com"},
			result: "KEFU_PUBLIC_URL", status: Warn, found: "plain http", fix: "https"},
		{name: "a good public URL", env: map[string]string{"KEFU_PUBLIC_URL": "https://kefu.example.com"},
			result: "KEFU_PUBLIC_URL", status: OK, found: "https://kefu.example.com"},
		{name: "a callback token WeChat does not accept", env: map[string]string{"KEFU_WECHAT_TOKEN": "has-dashes_and_more"},
			result: "KEFU_WECHAT_TOKEN", status: Fail, found: "3 to 32 letters and digits", fix: "set KEFU_WECHAT_TOKEN", absentOf: "has-dashes_and_more"},
		{name: "a short admin token", env: map[string]string{"KEFU_ADMIN_TOKEN": "letmein"},
			result: "KEFU_ADMIN_TOKEN", status: Warn, found: "7 characters", fix: "at least 16", absentOf: "letmein"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg config.Config
			if tt.loadErr == nil {
				cfg = loadConfig(t, tt.env)
			}
			rs := Run(context.Background(), []Check{ConfigCheck(cfg, tt.loadErr, tt.needs)}, time.Second)
			wantResult(t, only(t, rs, tt.result), tt.status, tt.found, tt.fix)
			if tt.absentOf != "" {
				var b bytes.Buffer
				WriteJSON(&b, rs)
				if strings.Contains(b.String(), tt.absentOf) {
					t.Fatalf("the report shows %q: %s", tt.absentOf, b.String())
				}
			}
		})
	}
}

// fakeWeChat starts the fake WeChat API for appID/secret.
func fakeWeChat(t *testing.T) (*wechattest.Server, string) {
	t.Helper()
	fake, err := wechattest.New(wechattest.Config{AppID: appID, AppSecret: secret, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(fake)
	t.Cleanup(func() { api.Close(); fake.Close() })
	return fake, api.URL
}

func runWeChat(t *testing.T, base string, env map[string]string) []Result {
	t.Helper()
	full := map[string]string{"KEFU_WECHAT_APPID": appID, "KEFU_WECHAT_SECRET": secret, "KEFU_WECHAT_API_BASE": base}
	for k, v := range env {
		full[k] = v
	}
	return Run(context.Background(), WeChatChecks(loadConfig(t, full), nil), 5*time.Second)
}

func TestWeChatChecksAgainstTheFake(t *testing.T) {
	t.Run("healthy with agents", func(t *testing.T) {
		fake, base := fakeWeChat(t)
		if err := fake.AddAgent("kf1@gh_test", "小王"); err != nil {
			t.Fatal(err)
		}
		if err := fake.SetAgentStatus("kf1@gh_test", wechattest.StatusPC); err != nil {
			t.Fatal(err)
		}
		rs := runWeChat(t, base, nil)
		wantResult(t, only(t, rs, "WeChat credentials"), OK, "access token issued", "")
		wantResult(t, only(t, rs, "多客服"), OK, "1 kf accounts, 1 online", "")
		if fake.CallCount(wechattest.MethodStableToken) != 1 {
			t.Fatalf("%d stable_token calls, want 1", fake.CallCount(wechattest.MethodStableToken))
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		_, base := fakeWeChat(t)
		rs := runWeChat(t, base, map[string]string{"KEFU_WECHAT_SECRET": "not-the-secret"})
		wantResult(t, only(t, rs, "WeChat credentials"), Fail, "40125", "KEFU_WECHAT_SECRET is not the account's AppSecret")
		wantResult(t, only(t, rs, "多客服"), Skip, "no access token", "")
	})
	t.Run("wrong AppID", func(t *testing.T) {
		_, base := fakeWeChat(t)
		rs := runWeChat(t, base, map[string]string{"KEFU_WECHAT_APPID": "wx0000000000000000"})
		wantResult(t, only(t, rs, "WeChat credentials"), Fail, "40013", "KEFU_WECHAT_APPID")
	})
	t.Run("IP not whitelisted", func(t *testing.T) {
		fake, base := fakeWeChat(t)
		if err := fake.SetIPWhitelist([]string{"203.0.113.7"}); err != nil {
			t.Fatal(err)
		}
		rs := runWeChat(t, base, nil)
		wantResult(t, only(t, rs, "WeChat credentials"), Fail, "IP 127.0.0.1 is not on the account's IP whitelist",
			"IP 127.0.0.1 is not on the account's IP whitelist: add it in 公众号后台 → 基本配置 → IP白名单")
	})
	t.Run("多客服 not enabled", func(t *testing.T) {
		fake, base := fakeWeChat(t)
		fake.SetUpgraded(false)
		rs := runWeChat(t, base, nil)
		wantResult(t, only(t, rs, "WeChat credentials"), OK, "", "")
		wantResult(t, only(t, rs, "多客服"), Fail, "errcode 65400", "enable 多客服 in 公众号后台")
	})
	t.Run("多客服 answers -1", func(t *testing.T) {
		fake, base := fakeWeChat(t)
		fake.InjectErrors(wechattest.MethodKFList, wechattest.CodeSystemBusy, 1)
		rs := runWeChat(t, base, nil)
		wantResult(t, only(t, rs, "多客服"), Fail, "errcode -1", "enable 多客服 in 公众号后台")
	})
	t.Run("no kf accounts", func(t *testing.T) {
		_, base := fakeWeChat(t)
		rs := runWeChat(t, base, nil)
		wantResult(t, only(t, rs, "多客服"), Warn, "no kf accounts", "kefu kf account add")
	})
	t.Run("token quota used up", func(t *testing.T) {
		fake, base := fakeWeChat(t)
		fake.InjectErrors(wechattest.MethodStableToken, wechattest.CodeDailyQuota, 1)
		rs := runWeChat(t, base, nil)
		wantResult(t, only(t, rs, "WeChat credentials"), Warn, "45009", "quota")
	})
	t.Run("WeChat unreachable", func(t *testing.T) {
		rs := runWeChat(t, "http://127.0.0.1:1", nil)
		wantResult(t, only(t, rs, "WeChat credentials"), Fail, "cannot reach WeChat", "KEFU_WECHAT_API_BASE")
	})
	t.Run("not configured", func(t *testing.T) {
		rs := Run(context.Background(), WeChatChecks(loadConfig(t, nil), nil), time.Second)
		wantResult(t, only(t, rs, "WeChat credentials"), Skip, "KEFU_WECHAT_SECRET", "")
	})
}

func runTucao(t *testing.T, srv *tucaotest.Server, secret string) []Result {
	t.Helper()
	cfg := loadConfig(t, map[string]string{"KEFU_TUCAO_PRODUCT_ID": srv.ProductID(), "KEFU_TUCAO_SECRET": secret, "KEFU_TUCAO_API_BASE": srv.URL()})
	return Run(context.Background(), []Check{TucaoCheck(cfg, nil)}, 5*time.Second)
}

func TestTucaoCheckAgainstTheFake(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		srv := tucaotest.New(tucaotest.Options{})
		t.Cleanup(srv.Close)
		srv.Generate(3, 1)
		rs := runTucao(t, srv, srv.Secret())
		wantResult(t, only(t, rs, "Tucao"), OK, "answers (1 posts", "")
		wantResult(t, only(t, rs, "clock vs Tucao"), OK, "local clock is", "")
	})
	t.Run("wrong secret", func(t *testing.T) {
		srv := tucaotest.New(tucaotest.Options{})
		t.Cleanup(srv.Close)
		rs := runTucao(t, srv, "not-the-key")
		wantResult(t, only(t, rs, "Tucao"), Fail, "40103", "KEFU_TUCAO_SECRET")
		if srv.RequestCount() != 1 {
			t.Fatalf("%d requests, want 1 (no retries of a permanent error)", srv.RequestCount())
		}
	})
	t.Run("wrong product", func(t *testing.T) {
		srv := tucaotest.New(tucaotest.Options{})
		t.Cleanup(srv.Close)
		cfg := loadConfig(t, map[string]string{"KEFU_TUCAO_PRODUCT_ID": "999", "KEFU_TUCAO_SECRET": srv.Secret(), "KEFU_TUCAO_API_BASE": srv.URL()})
		rs := Run(context.Background(), []Check{TucaoCheck(cfg, nil)}, 5*time.Second)
		wantResult(t, only(t, rs, "Tucao"), Fail, "40401", "KEFU_TUCAO_PRODUCT_ID")
	})
	for _, tt := range []struct {
		name   string
		ahead  time.Duration
		status Status
	}{
		{"a skew over 30 s warns", 45 * time.Second, Warn},
		{"a skew beyond Tucao's window fails", 10 * time.Minute, Fail},
		{"a local clock ahead beyond the window fails", -10 * time.Minute, Fail},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := tucaotest.New(tucaotest.Options{})
			t.Cleanup(srv.Close)
			// Tucao's clock runs tt.ahead ahead of this host's.
			srv.SetClock(tucao.NewFakeClock(time.Now().Add(tt.ahead)))
			rs := runTucao(t, srv, srv.Secret())
			wantResult(t, only(t, rs, "Tucao"), OK, "", "")
			dir := "behind"
			if tt.ahead < 0 {
				dir = "ahead of"
			}
			wantResult(t, only(t, rs, "clock vs Tucao"), tt.status, dir+" Tucao", "synchronise the host's clock")
		})
	}
}

// natsTarget opens url the way a test needs; what app's resolution does is
// tested in internal/app.
func natsTarget(url string) NATSTarget {
	return NATSTarget{URLs: url, Source: "KEFU_NATS_URL", Open: func(ctx context.Context) (*NATS, error) {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err != nil {
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, err
		}
		return &NATS{JS: js, Close: nc.Close}, nil
	}}
}

func runNATS(t *testing.T, target NATSTarget) []Result {
	t.Helper()
	checks, closeNATS := NATSChecks(target)
	defer closeNATS()
	return Run(context.Background(), checks, 5*time.Second)
}

func TestNATSChecks(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		rs := runNATS(t, natsTarget("nats://127.0.0.1:1"))
		wantResult(t, only(t, rs, "NATS"), Fail, "", "set KEFU_NATS_URL")
		wantResult(t, only(t, rs, "JetStream"), Skip, "", "")
	})
	t.Run("a connection that comes after the check gave up is not used", func(t *testing.T) {
		srv := natstest.Run(t, nil)
		good := natsTarget(srv.ClientURL())
		closed := make(chan struct{})
		late := NATSTarget{URLs: srv.ClientURL(), Source: "KEFU_NATS_URL", Open: func(ctx context.Context) (*NATS, error) {
			<-ctx.Done()
			conn, err := good.Open(context.Background())
			if err != nil {
				return nil, err
			}
			inner := conn.Close
			conn.Close = func() { inner(); close(closed) }
			return conn, nil
		}}
		checks, closeNATS := NATSChecks(late)
		rs := Run(context.Background(), checks, 200*time.Millisecond)
		closeNATS()
		wantResult(t, only(t, rs, "NATS"), Fail, "no answer within 200ms", "")
		wantResult(t, only(t, rs, "JetStream"), Skip, "NATS does not answer", "")
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the late connection was never closed")
		}
	})
	t.Run("JetStream off", func(t *testing.T) {
		opts := natstest.Options(t)
		opts.JetStream = false
		srv := natstest.Run(t, opts)
		rs := runNATS(t, natsTarget(srv.ClientURL()))
		wantResult(t, only(t, rs, "NATS"), OK, srv.ClientURL(), "")
		wantResult(t, only(t, rs, "JetStream"), Fail, "without JetStream", "enable JetStream")
		wantResult(t, only(t, rs, "streams and buckets"), Skip, "", "")
	})
	t.Run("streams and buckets missing", func(t *testing.T) {
		srv := natstest.Run(t, nil)
		_, js := natstest.Connect(t, srv)
		if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: Buckets[0]}); err != nil {
			t.Fatal(err)
		}
		rs := runNATS(t, natsTarget(srv.ClientURL()))
		wantResult(t, only(t, rs, "JetStream"), OK, "enabled", "")
		r := only(t, rs, "streams and buckets")
		wantResult(t, r, Warn, "KEFU_WECHAT", "start any kefu role once, it creates them")
		for _, r := range rs {
			if r.Name == "clock vs NATS" {
				t.Fatalf("a clock line without a stream to read the time from: %+v", r)
			}
		}
		if strings.Contains(r.Found, Buckets[0]+",") || strings.HasSuffix(r.Found, Buckets[0]) {
			t.Fatalf("%q names %s, which exists", r.Found, Buckets[0])
		}
	})
	t.Run("all present", func(t *testing.T) {
		srv := natstest.Run(t, nil)
		_, js := natstest.Connect(t, srv)
		ctx := context.Background()
		for _, name := range Streams() {
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range Buckets {
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b}); err != nil {
				t.Fatal(err)
			}
		}
		rs := runNATS(t, natsTarget(srv.ClientURL()))
		wantResult(t, only(t, rs, "streams and buckets"), OK, "all", "")
		// The server runs on this host's clock.
		wantResult(t, only(t, rs, "clock vs NATS"), OK, "the NATS server", "")
	})
}

func TestPostgresCheck(t *testing.T) {
	t.Run("SQLite when unset", func(t *testing.T) {
		rs := Run(context.Background(), []Check{PostgresCheck(loadConfig(t, nil))}, time.Second)
		wantResult(t, only(t, rs, "PostgreSQL"), Skip, "SQLite", "")
	})
	t.Run("a DSN that is not PostgreSQL", func(t *testing.T) {
		rs := Run(context.Background(), []Check{PostgresCheck(loadConfig(t, map[string]string{"KEFU_FEEDBACK_DSN": "mysql://x"}))}, time.Second)
		wantResult(t, only(t, rs, "PostgreSQL"), Fail, "not a postgres://", "KEFU_FEEDBACK_DSN")
	})
	t.Run("nothing listens", func(t *testing.T) {
		dsn := "postgres://kefu:hunter2secret@127.0.0.1:1/kefu?sslmode=disable&connect_timeout=2"
		rs := Run(context.Background(), []Check{PostgresCheck(loadConfig(t, map[string]string{"KEFU_FEEDBACK_DSN": dsn}))}, 5*time.Second)
		r := only(t, rs, "PostgreSQL")
		wantResult(t, r, Fail, "KEFU_FEEDBACK_DSN", "correct KEFU_FEEDBACK_DSN")
		if strings.Contains(r.Found+r.Fix, "hunter2secret") {
			t.Fatalf("the report shows the password: %+v", r)
		}
	})
	t.Run("a running PostgreSQL, before and after the feedback role migrated it", func(t *testing.T) {
		dsn := freshDatabase(t)
		check := func() Result {
			rs := Run(context.Background(), []Check{PostgresCheck(loadConfig(t, map[string]string{"KEFU_FEEDBACK_DSN": dsn}))}, 10*time.Second)
			return only(t, rs, "PostgreSQL")
		}
		wantResult(t, check(), Warn, "connected; no schema yet", "start the feedback role once")
		st, err := store.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		wantResult(t, check(), OK, "(current)", "")

		u, _ := url.Parse(dsn)
		u.Path = "/kefu_doctor_no_such_database"
		rs := Run(context.Background(), []Check{PostgresCheck(loadConfig(t, map[string]string{"KEFU_FEEDBACK_DSN": u.String()}))}, 10*time.Second)
		wantResult(t, only(t, rs, "PostgreSQL"), Fail, "kefu_doctor_no_such_database", "correct KEFU_FEEDBACK_DSN")
	})
}

// freshDatabase creates an empty database on the server of
// KEFU_TEST_PG_DSN (skipping without it), dropped when the test ends, and
// returns its DSN.
func freshDatabase(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("KEFU_TEST_PG_DSN")
	if dsn == "" {
		t.Skip("KEFU_TEST_PG_DSN is not set")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	name := fmt.Sprintf("kefu_doctor_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
