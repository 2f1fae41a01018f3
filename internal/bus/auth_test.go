package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
)

// openEmbedded starts kefu's embedded server with cfg's credentials on a
// free loopback port.
func openEmbedded(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.DataDir = t.TempDir()
	b, err := bus.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// dial connects once, without retrying, so a refusal is the error.
func dial(url string, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// assertRefused says that url refuses a client presenting opts, with the
// server's authorization error.
func assertRefused(t *testing.T, what, url string, opts ...nats.Option) {
	t.Helper()
	err := dial(url, opts...)
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("%s: connect error %v, want %v", what, err, nats.ErrAuthorization)
	}
}

func TestEmbeddedServerRequiresTheConfiguredPassword(t *testing.T) {
	const password = "pw-0f3c9e1b7a"
	b := openEmbedded(t, bus.Config{User: "kefu", Password: password})
	ctx := context.Background()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("kefu's own connection: %v", err)
	}
	if err := b.EnsureStreams(ctx, "KEFU_WECHAT"); err != nil {
		t.Fatalf("kefu creates its streams with its credentials: %v", err)
	}
	url := b.ClientURL()
	if strings.Contains(url, password) {
		t.Errorf("ClientURL %q shows the password", url)
	}

	assertRefused(t, "no credentials", url)
	assertRefused(t, "wrong password", url, nats.UserInfo("kefu", password+"x"))
	assertRefused(t, "another user", url, nats.UserInfo("events", password))
	if err := dial(url, nats.UserInfo("kefu", password)); err != nil {
		t.Errorf("kefu's user and password refused: %v", err)
	}

	// Another kefu process (the kf commands, a second role) reaches the
	// same server with the same settings.
	other, err := bus.Open(ctx, bus.Config{URLs: []string{url}, User: "kefu", Password: password})
	if err != nil {
		t.Fatalf("second process with the credentials: %v", err)
	}
	defer other.Close()
	if _, err := bus.JetStream(other).Stream(ctx, "KEFU_WECHAT"); err != nil {
		t.Errorf("second process sees kefu's stream: %v", err)
	}
}

func TestEmbeddedServerRequiresTheConfiguredNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	b := openEmbedded(t, bus.Config{NKeySeed: string(seed) + "\n"}) // as read from a mounted file
	if err := b.Ready(context.Background()); err != nil {
		t.Fatalf("kefu's own connection: %v", err)
	}
	url := b.ClientURL()

	assertRefused(t, "no credentials", url)
	stranger, _ := nkeys.CreateUser()
	strangerPub, _ := stranger.PublicKey()
	assertRefused(t, "another nkey", url, nats.Nkey(strangerPub, stranger.Sign))
	// Claiming kefu's public key without its seed: the signature fails.
	assertRefused(t, "kefu's public key signed by another seed", url, nats.Nkey(pub, stranger.Sign))
	if err := dial(url, nats.Nkey(pub, kp.Sign)); err != nil {
		t.Errorf("kefu's nkey refused: %v", err)
	}
}

func TestCredentialMistakesAreNamedWithoutTheirValues(t *testing.T) {
	userSeed := func() string {
		kp, _ := nkeys.CreateUser()
		s, _ := kp.Seed()
		return string(s)
	}
	accountKP, _ := nkeys.CreateAccount()
	accountSeed, _ := accountKP.Seed()
	for _, tc := range []struct {
		name   string
		cfg    bus.Config
		want   string
		secret string
	}{
		{"not a seed", bus.Config{NKeySeed: "SUsecret-but-not-a-seed"}, "KEFU_NATS_NKEY_SEED", "secret-but-not-a-seed"},
		{"an account seed", bus.Config{NKeySeed: string(accountSeed)}, "KEFU_NATS_NKEY_SEED", string(accountSeed)},
		{"password without user", bus.Config{Password: "pw-lonely-123"}, "KEFU_NATS_USER", "pw-lonely-123"},
		{"user without password", bus.Config{User: "kefu"}, "KEFU_NATS_PASSWORD", ""},
		{"password and nkey", bus.Config{User: "kefu", Password: "pw-both-123", NKeySeed: userSeed()}, "KEFU_NATS_NKEY_SEED", "pw-both-123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Listen, tc.cfg.DataDir = "127.0.0.1:0", t.TempDir()
			b, err := bus.Open(context.Background(), tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			for _, secret := range []string{tc.secret, tc.cfg.Password, tc.cfg.NKeySeed} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
		})
	}
}

// A refused password is reported as such, and neither the error nor the
// log shows it, whether it came in the setting or in the URL.
func TestRefusedCredentialsAreReportedWithoutTheirValues(t *testing.T) {
	const right, wrong, inURL = "pw-right-5d1e", "pw-wrong-77a0", "pw-in-url-c4f2"
	srv := natstest.Options(t)
	srv.Username, srv.Password = "kefu", right
	s := natstest.Run(t, srv)
	host := strings.TrimPrefix(s.ClientURL(), "nats://")

	core, logs := observer.New(zapcore.DebugLevel)
	for _, cfg := range []bus.Config{
		{URLs: []string{s.ClientURL()}, User: "kefu", Password: wrong},
		{URLs: []string{fmt.Sprintf("nats://kefu:%s@%s", inURL, host)}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cfg.Logger = zap.New(core)
		b, err := bus.Open(ctx, cfg)
		cancel()
		if err == nil {
			b.Close()
			t.Fatal("connected with a wrong password")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("error %q does not say the credentials were refused", err)
		}
		for _, secret := range []string{wrong, inURL} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		}
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, wrong) || strings.Contains(line, inURL) {
			t.Errorf("log shows the password: %s", line)
		}
	}
}

func TestOpenEmbeddedServerWithoutCredentialsWarnsOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    bus.Config
		warned bool
	}{
		{"every interface, no credentials", bus.Config{Listen: "0.0.0.0:0"}, true},
		{"every interface, password", bus.Config{Listen: "0.0.0.0:0", User: "kefu", Password: "pw-9b2d"}, false},
		{"loopback, no credentials", bus.Config{Listen: "127.0.0.1:0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			tc.cfg.Logger = zap.New(core)
			openEmbedded(t, tc.cfg)
			warnings := logs.FilterMessageSnippet("without credentials").All()
			if tc.warned && len(warnings) != 1 {
				t.Fatalf("%d warnings about the open port, want 1 (all: %v)", len(warnings), logs.All())
			}
			if !tc.warned && len(warnings) != 0 {
				t.Errorf("unexpected warning: %v", warnings)
			}
			for _, w := range warnings {
				if w.ContextMap()["listen"] != tc.cfg.Listen {
					t.Errorf("warning does not name the address: %v", w.ContextMap())
				}
			}
		})
	}
}
