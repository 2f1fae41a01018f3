package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/doctor"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// doctorToken is a callback token 公众号后台 accepts (letters and digits).
const doctorToken = "edgeCallbackToken7"

// doctorReport runs `kefu doctor --json` with the environment plus env
// and returns the exit code and the results by name.
func doctorReport(t *testing.T, env map[string]string, args ...string) (int, map[string]doctor.Result, string) {
	t.Helper()
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	var stdout bytes.Buffer
	err := doctorMain(context.Background(), append([]string{"--json"}, args...), getenv, &stdout, nil)
	var doc struct {
		OK     bool            `json:"ok"`
		Checks []doctor.Result `json:"checks"`
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &doc); jerr != nil {
		t.Fatalf("doctor --json printed %q: %v", stdout.String(), jerr)
	}
	code := 0
	if err != nil {
		code = 1
		if !strings.Contains(err.Error(), "failed") {
			t.Fatalf("doctor: %v", err)
		}
	}
	if doc.OK != (code == 0) {
		t.Fatalf("ok %v but exit %d", doc.OK, code)
	}
	byName := map[string]doctor.Result{}
	for _, r := range doc.Checks {
		if _, dup := byName[r.Name]; dup {
			t.Fatalf("two results named %q", r.Name)
		}
		byName[r.Name] = r
	}
	return code, byName, stdout.String()
}

func wantCheck(t *testing.T, rs map[string]doctor.Result, name string, status doctor.Status, foundHas, fixHas string) {
	t.Helper()
	r, ok := rs[name]
	if !ok {
		t.Fatalf("no result %q in %v", name, rs)
	}
	if r.Status != status || !strings.Contains(r.Found, foundHas) || !strings.Contains(r.Fix, fixHas) {
		t.Fatalf("%s: %s %q (fix %q); want %s with %q, fix with %q", name, r.Status, r.Found, r.Fix, status, foundHas, fixHas)
	}
}

// healthyKefu runs `kefu all` against the fake WeChat (with an agent) and
// a fake Tucao, as a demo-like installation, and returns it with the
// environment doctor needs to see it.
func healthyKefu(t *testing.T) (*runningRole, map[string]string) {
	t.Helper()
	isolateFromNATS(t)
	tc := tucaotest.New(tucaotest.Options{})
	t.Cleanup(tc.Close)
	tc.Generate(2, 7)
	env := map[string]string{
		"KEFU_WECHAT_TOKEN": doctorToken, "KEFU_TUCAO_PRODUCT_ID": tc.ProductID(), "KEFU_TUCAO_SECRET": tc.Secret(),
		"KEFU_TUCAO_API_BASE": tc.URL(), "KEFU_NATS_URL": "",
	}
	r := startAll(t, env)
	if err := r.fake.AddAgent("kf1@gh_edge", "小王"); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.SetAgentStatus("kf1@gh_edge", wechattest.StatusPC); err != nil {
		t.Fatal(err)
	}
	env["KEFU_NATS_URL"] = r.natsURL
	env["KEFU_PUBLIC_URL"] = r.base
	return r, env
}

func TestDoctorOnAHealthyInstallationIsAllGreen(t *testing.T) {
	r, env := healthyKefu(t)
	waitHTTP(t, r.base+"/readyz", 200)
	published := wechatStreamMessages(t, r.natsURL)
	code, rs, out := doctorReport(t, env)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for name, res := range rs {
		if res.Status != doctor.OK && res.Status != doctor.Skip {
			t.Errorf("%s: %s %q (fix %q)", name, res.Status, res.Found, res.Fix)
		}
	}
	wantCheck(t, rs, "NATS", doctor.OK, r.natsURL+" (chosen by KEFU_NATS_URL)", "")
	wantCheck(t, rs, "JetStream", doctor.OK, "enabled", "")
	wantCheck(t, rs, "streams and buckets", doctor.OK, "present", "")
	wantCheck(t, rs, "clock vs NATS", doctor.OK, "the NATS server", "")
	wantCheck(t, rs, "WeChat credentials", doctor.OK, "access token issued", "")
	wantCheck(t, rs, "多客服", doctor.OK, "1 kf accounts, 1 online", "")
	wantCheck(t, rs, "callback URL", doctor.OK, "echoes echostr", "")
	wantCheck(t, rs, "callback URL (AES)", doctor.OK, "decrypts with the same KEFU_WECHAT_AES_KEY", "")
	wantCheck(t, rs, "Tucao", doctor.OK, "answers", "")
	wantCheck(t, rs, "clock vs Tucao", doctor.OK, "", "")
	wantCheck(t, rs, "PostgreSQL", doctor.Skip, "SQLite", "")

	// Wrong callback token: the running ingest has another.
	t.Run("wrong callback token", func(t *testing.T) {
		env := cloneEnv(env, "KEFU_WECHAT_TOKEN", "anotherToken99")
		code, rs, _ := doctorReport(t, env)
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		wantCheck(t, rs, "callback URL", doctor.Fail, "refused the signature", "set KEFU_WECHAT_TOKEN")
	})
	t.Run("another AES key, and no event from the probes", func(t *testing.T) {
		env := cloneEnv(env, "KEFU_WECHAT_AES_KEY", "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut")
		code, rs, _ := doctorReport(t, env)
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		wantCheck(t, rs, "callback URL", doctor.OK, "echoes echostr", "")
		wantCheck(t, rs, "callback URL (AES)", doctor.Fail, "holds another key", "set KEFU_WECHAT_AES_KEY")
		if after := wechatStreamMessages(t, r.natsURL); after != published {
			t.Fatalf("KEFU_WECHAT went from %d to %d messages: a probe was published", published, after)
		}
	})
	t.Run("callback path not served", func(t *testing.T) {
		code, rs, _ := doctorReport(t, cloneEnv(env, "KEFU_PUBLIC_URL", r.base+"/kefu"))
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		wantCheck(t, rs, "callback URL", doctor.Fail, "404", "KEFU_PUBLIC_URL")
	})
	t.Run("callback URL unreachable", func(t *testing.T) {
		code, rs, _ := doctorReport(t, cloneEnv(env, "KEFU_PUBLIC_URL", "http://"+closedAddr(t)))
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		wantCheck(t, rs, "callback URL", doctor.Fail, "unreachable", "KEFU_PUBLIC_URL")
		if strings.Contains(rs["callback URL"].Found, "signature=") {
			t.Fatalf("the report shows the signed query: %q", rs["callback URL"].Found)
		}
	})
	t.Run("callback URL without TLS", func(t *testing.T) {
		code, rs, _ := doctorReport(t, cloneEnv(env, "KEFU_PUBLIC_URL", strings.Replace(r.base, "http://", "https://", 1)))
		if code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		wantCheck(t, rs, "callback URL", doctor.Fail, "TLS", "https")
	})
	t.Run("only what the asked role needs", func(t *testing.T) {
		env := cloneEnv(env, "KEFU_TUCAO_SECRET", "")
		_, rs, _ := doctorReport(t, env, "--role", "estimator")
		wantCheck(t, rs, "settings", doctor.OK, "everything estimator needs", "")
		code, rs, _ := doctorReport(t, env, "--role", "ingest")
		if code != 1 {
			t.Fatalf("ingest without KEFU_TUCAO_SECRET: exit %d, want 1", code)
		}
		wantCheck(t, rs, "settings: the Tucao poller", doctor.Fail, "KEFU_TUCAO_SECRET is required by ingest", "set KEFU_TUCAO_SECRET")
	})
}

func cloneEnv(env map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range env {
		out[a] = b
	}
	out[k] = v
	return out
}

func TestDoctorSaysWhichSettingChoseTheNATSThatDoesNotAnswer(t *testing.T) {
	isolateFromNATS(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		name   string
		env    map[string]string
		source string
	}{
		{"KEFU_NATS_URL", map[string]string{"KEFU_NATS_URL": "nats://" + closedAddr(t)}, "KEFU_NATS_URL"},
		{"NATS_URL", map[string]string{"KEFU_NATS_URL": "", "NATS_URL": "nats://" + closedAddr(t)}, "NATS_URL"},
		{"the default", map[string]string{"KEFU_NATS_URL": "", "KEFU_NATS_LISTEN": closedAddr(t)}, "KEFU_NATS_LISTEN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := cloneEnv(tt.env, "KEFU_DATA_DIR", dir+"/never")
			code, rs, _ := doctorReport(t, env)
			if code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			wantCheck(t, rs, "NATS", doctor.Fail, tt.source, "KEFU_NATS_URL")
			wantCheck(t, rs, "JetStream", doctor.Skip, "", "")
			if _, err := os.Stat(dir + "/never"); err == nil {
				t.Fatal("doctor created KEFU_DATA_DIR")
			}
		})
	}
}

func TestDoctorReportsAConfigurationThatDoesNotLoadAndStops(t *testing.T) {
	isolateFromNATS(t)
	code, rs, _ := doctorReport(t, map[string]string{"KEFU_LOG_LEVEL": "loud"})
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	wantCheck(t, rs, "configuration", doctor.Fail, "KEFU_LOG_LEVEL", "correct KEFU_LOG_LEVEL")
	if len(rs) != 1 {
		t.Fatalf("%d results, want the configuration's alone: %v", len(rs), rs)
	}
}

func TestDoctorPlainOutputAndExitCode(t *testing.T) {
	isolateFromNATS(t)
	t.Setenv("KEFU_WECHAT_APPID", "")
	var stdout, stderr bytes.Buffer
	code := mainContext(context.Background(), []string{"doctor", "--role", "feedback", "--timeout", "3s"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d (stderr %q), want 1: NATS does not answer", code, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "FAIL  NATS") || !strings.Contains(out, "fix: set KEFU_NATS_URL") || strings.Contains(out, "\x1b[") {
		t.Fatalf("plain report:\n%s", out)
	}
	if stderr.String() != "kefu: doctor: 1 check failed\n" {
		t.Fatalf("stderr %q", stderr.String())
	}
}

// Help and command-line mistakes are answered before anything is dialled;
// the same settings do reach the port once the checks run.
func TestDoctorHelpAndMistakesNeverDial(t *testing.T) {
	isolateFromNATS(t)
	port := countAccepts(t)
	addr := port.ln.Addr().String()
	for k, v := range map[string]string{
		"KEFU_NATS_URL": "nats://" + addr, "KEFU_WECHAT_APPID": "wx1", "KEFU_WECHAT_SECRET": "s",
		"KEFU_WECHAT_API_BASE": "http://" + addr, "KEFU_WECHAT_TOKEN": "abc123", "KEFU_PUBLIC_URL": "http://" + addr,
	} {
		t.Setenv(k, v)
	}
	for _, args := range [][]string{{"doctor", "--help"}, {"doctor", "help"}, {"help", "doctor"}, {"doctor", "--bogus"},
		{"doctor", "--role", "launch"}, {"doctor", "--timeout", "0s"}, {"doctor", "extra"}} {
		var stdout, stderr bytes.Buffer
		code := mainContext(context.Background(), args, &stdout, &stderr)
		if want := map[bool]int{true: 0, false: 2}[strings.Contains(strings.Join(args, " "), "help")]; code != want {
			t.Errorf("kefu %q: exit %d, want %d (stderr %q)", args, code, want, stderr.String())
		}
	}
	if n := port.n.Load(); n != 0 {
		t.Fatalf("help and mistakes made %d connections", n)
	}
	var stdout bytes.Buffer
	mainContext(context.Background(), []string{"doctor", "--timeout", "1s"}, &stdout, &bytes.Buffer{})
	if port.n.Load() == 0 {
		t.Fatalf("the checks never reached the port either: the test proves nothing\n%s", stdout.String())
	}
}

// wechatStreamMessages counts the messages of KEFU_WECHAT.
func wechatStreamMessages(t *testing.T, natsURL string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// An ingest in plain mode refuses the encrypted probe of a doctor that has
// an EncodingAESKey: the two are configured differently.
func TestDoctorFindsAnIngestWithoutTheAESKey(t *testing.T) {
	isolateFromNATS(t)
	r := startAll(t, map[string]string{"KEFU_WECHAT_TOKEN": doctorToken, "KEFU_WECHAT_AES_KEY": "", "KEFU_NATS_URL": ""})
	waitHTTP(t, r.base+"/readyz", 200)
	env := map[string]string{"KEFU_WECHAT_TOKEN": doctorToken, "KEFU_WECHAT_AES_KEY": edgeAESKey,
		"KEFU_NATS_URL": r.natsURL, "KEFU_PUBLIC_URL": r.base}
	code, rs, _ := doctorReport(t, env, "--role", "ingest")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	wantCheck(t, rs, "callback URL", doctor.OK, "echoes echostr", "")
	wantCheck(t, rs, "callback URL (AES)", doctor.Fail, "ingest has no KEFU_WECHAT_AES_KEY", "set KEFU_WECHAT_AES_KEY in the ingest role")
}
