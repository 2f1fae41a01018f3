// Package demo is the environment `kefu demo` runs `kefu all` in: a
// simulated WeChat (official account, 多客服 agents, arriving customers,
// queue and sessions) and a simulated Tucao where posts appear, both on
// free local ports, plus the settings a newcomer has not given (a
// temporary data directory, made-up API tokens, a free NATS port).
//
// It exists so that `go run ./cmd/kefu demo`, as the README promises,
// shows the whole pipeline — embedded NATS, SQLite, every module — working
// on realistic traffic with no account, no AppSecret and no running
// services. The simulated services sign, encrypt and rate-limit like the
// real ones, so the demo exercises the same code paths as production.
//
// The demo does not know kefu's runtime: [Prepare] fills a
// [config.Config] before kefu starts, and [Env.Start] is given what it
// needs from the running process as a [Host] (addresses, where to print,
// how to listen to the bus). internal/app runs it; this package never
// imports internal/app.
package demo

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// Demo account: a made-up official account. The simulated WeChat signs and
// encrypts its callbacks (safe mode) exactly like the real one, and the
// simulated Tucao checks signatures and rate limits like the real one.
const (
	appID     = "wxd3m0k3fu00000001"
	appSecret = "kefu-demo-app-secret"
	token     = "kefu-demo-token"
	aesKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	// WeChatID is the simulated official account's WeChat ID; agents'
	// accounts are name@WeChatID.
	WeChatID = "kefudemo"
	// speed compresses the simulated day: a 3-minute chat takes 6 s.
	speed = 30
)

// Env is what `kefu demo` adds around `all`: a simulated WeChat with
// agents and arriving customers, and a simulated Tucao where posts appear.
type Env struct {
	tmpDir   string
	wechat   *wechattest.Server
	tucao    *tucaotest.Server
	wechatLn net.Listener
	wechatHS *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// unlisten stops printing the events.
	unlisten func()
	// adminToken and apiToken are the tokens the demo made up (empty when
	// the user set their own, which the demo does not print).
	adminToken, apiToken string
}

// Host is what the running kefu gives the demo when it starts.
type Host struct {
	// Out is where the demo prints its banner and the events.
	Out io.Writer
	// Config is the configuration kefu runs with (as Prepare filled it).
	Config config.Config
	// HTTPURL is where kefu serves HTTP; NATSURL where clients reach its
	// NATS.
	HTTPURL, NATSURL string
	// ConsoleLinks returns one-time console sign-in links (empty when that
	// token is unset), or an error when the console is off.
	ConsoleLinks func() (admin, readOnly string, err error)
	// Listen calls handle for every message on subjects until stop.
	Listen func(ctx context.Context, subjects []string, handle func(*nats.Msg)) (stop func(), err error)
	// Traffic starts the desk's traffic; nil is [Env.Simulate]. Tests
	// give their own to drive the desk step by step.
	Traffic func(*Env, context.Context) error
}

// Prepare starts the simulated services and fills the settings a
// newcomer has not given; it avoids busy default ports (a NATS server
// often listens on 4222 already). Close the Env when kefu has stopped.
func Prepare(cfg *config.Config) (*Env, error) {
	d := &Env{}
	if os.Getenv("KEFU_DATA_DIR") == "" {
		dir, err := os.MkdirTemp("", "kefu-demo-")
		if err != nil {
			return nil, err
		}
		d.tmpDir, cfg.DataDir = dir, dir
	}
	if os.Getenv("KEFU_LOG_FORMAT") == "" {
		cfg.LogFormat = "console"
	}
	if os.Getenv("KEFU_LOG_LEVEL") == "" {
		cfg.LogLevel = "warn"
	}
	if len(cfg.NATSURLs) == 0 && !portFree(cfg.NATSListen) {
		cfg.NATSListen = "127.0.0.1:0"
	}
	// /api/ is never served open: without tokens the demo makes up its own
	// and prints them, so the queue and feedback APIs can be tried at once.
	if cfg.AdminToken == "" {
		d.adminToken = randomToken()
		cfg.AdminToken = config.Secret(d.adminToken)
	}
	if cfg.APIToken == "" {
		d.apiToken = randomToken()
		cfg.APIToken = config.Secret(d.apiToken)
	}

	fake, err := wechattest.New(wechattest.Config{
		AppID: appID, AppSecret: appSecret, Token: token, EncodingAESKey: aesKey,
		Mode: wechat.ModeSafe, WeChatID: WeChatID, CallbackRetryDelay: 200 * time.Millisecond,
	})
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("demo: simulated WeChat: %w", err)
	}
	d.wechat = fake
	d.wechatLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.Close()
		return nil, err
	}
	d.wechatHS = httpedge.NewServer(fake)
	go d.wechatHS.Serve(d.wechatLn)

	d.tucao = tucaotest.New(tucaotest.Options{})
	cfg.WeChatAppID, cfg.WeChatSecret = appID, config.Secret(appSecret)
	cfg.WeChatToken, cfg.WeChatAESKey = config.Secret(token), config.Secret(aesKey)
	cfg.WeChatAPIBase = "http://" + d.wechatLn.Addr().String()
	cfg.TucaoProductID, cfg.TucaoSecret, cfg.TucaoAPIBase = d.tucao.ProductID(), config.Secret(d.tucao.Secret()), d.tucao.URL()
	cfg.TucaoPollInterval = 3 * time.Second
	cfg.QueuePollInterval = 2 * time.Second
	if os.Getenv("KEFU_QUEUE_STALE_AFTER") == "" {
		// Agents in the simulation sometimes forget a session; the
		// sweeper closes it after this (30 minutes in production).
		cfg.StaleAfter = time.Minute
	}
	return d, nil
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	crand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b)
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// WeChat is the simulated WeChat.
func (d *Env) WeChat() *wechattest.Server { return d.wechat }

// Tucao is the simulated Tucao.
func (d *Env) Tucao() *tucaotest.Server { return d.tucao }

// TucaoURL is the simulated Tucao's base URL ("" before Prepare made it).
func (d *Env) TucaoURL() string {
	if d == nil || d.tucao == nil {
		return ""
	}
	return d.tucao.URL()
}

// Close stops the simulated services and removes the demo's data.
func (d *Env) Close() {
	if d.wechat != nil {
		d.wechat.StopSimulation()
		d.wechat.Close()
	}
	if d.wechatHS != nil {
		d.wechatHS.Close()
	}
	if d.tucao != nil {
		d.tucao.Close()
	}
	if d.tmpDir != "" {
		os.RemoveAll(d.tmpDir)
	}
}

// Start prints how to use the running demo, prints every kefu event from
// then on, points the simulated WeChat's callbacks at kefu and starts the
// traffic. Stop undoes it.
func (d *Env) Start(ctx context.Context, h Host) error {
	out := h.Out
	adminToken, apiToken, curlToken := d.adminToken, d.apiToken, d.apiToken
	if adminToken == "" {
		adminToken = "(your KEFU_ADMIN_TOKEN)"
	}
	if apiToken == "" {
		apiToken, curlToken = "(your KEFU_API_TOKEN)", "$KEFU_API_TOKEN"
	}
	httpURL := h.HTTPURL
	fmt.Fprintf(out, `kefu demo is running.
  kefu HTTP        %s  (/readyz, /metrics, /wechat/callback, /api/…)
%s  API tokens       read-only (GET)     %s
                   admin (any method)  %s
    try:           curl -H "Authorization: Bearer %s" %s/api/kf/queue
    kefu kf:       %s
  NATS             %s
    watch it:      nats --server %s sub 'kefu.>'
    server host:   %s kefu kf online
  simulated WeChat %s  (state: /_control/state)
  simulated Tucao  %s
  data             %s (removed on exit)
Customers arrive, wait in the 多客服 queue (some give up, some say 不等了), are served, transferred and
closed; sessions an agent forgot are swept after %s; posts appear on Tucao.
Press Ctrl-C to stop.

`, httpURL, consoleLines(h), apiToken, adminToken, curlToken, httpURL, d.remoteKf(httpURL), h.NATSURL, h.NATSURL,
		directKfSettings(h), h.Config.WeChatAPIBase, d.tucao.URL(), h.Config.DataDir, h.Config.StaleAfter)
	stop, err := h.Listen(ctx, []string{"kefu.>"}, func(m *nats.Msg) { printEvent(out, m) })
	if err != nil {
		return err
	}
	d.unlisten = stop

	d.wechat.SetCallbackURL(httpURL + "/wechat/callback")
	traffic := h.Traffic
	if traffic == nil {
		traffic = (*Env).Simulate
	}
	return traffic(d, ctx)
}

// remoteKf is how people point `kefu kf` at the demo: through its admin
// API, with the admin token and no NATS or WeChat settings.
func (d *Env) remoteKf(httpURL string) string {
	if d.adminToken == "" {
		return "kefu kf --server " + httpURL + " online   (with your KEFU_ADMIN_TOKEN)"
	}
	return "KEFU_ADMIN_TOKEN=" + d.adminToken + " kefu kf --server " + httpURL + " online"
}

// directKfSettings point `kefu kf` at the demo's NATS and simulated WeChat
// directly, as on a server host.
func directKfSettings(h Host) string {
	return "KEFU_NATS_URL=" + h.NATSURL + " KEFU_WECHAT_APPID=" + appID + " KEFU_WECHAT_SECRET=" + appSecret +
		" KEFU_WECHAT_API_BASE=" + h.Config.WeChatAPIBase
}

// consoleLines are the console's address and one-time sign-in links. The
// links carry a code, not a token, after '#' (never sent to a server, so
// in no access log); each works once, for a short while.
func consoleLines(h Host) string {
	if h.ConsoleLinks == nil {
		return ""
	}
	admin, readOnly, err := h.ConsoleLinks()
	if err != nil {
		return ""
	}
	s := "  console          " + h.HTTPURL + "/console/  (sign in with a token below, or open a one-time link)\n"
	if admin != "" {
		s += "    admin:         " + admin + "\n"
	}
	if readOnly != "" {
		s += "    read-only:     " + readOnly + "\n"
	}
	return s
}

// Stop stops the traffic and the printing of events; the simulated
// services keep running until Close.
func (d *Env) Stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	if d.wechat != nil {
		d.wechat.StopSimulation()
	}
	if d.unlisten != nil {
		d.unlisten()
	}
}
