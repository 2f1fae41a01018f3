package app

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
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
	"github.com/kefu-io/kefu/pkg/events"
)

// Demo account: a made-up official account. The simulated WeChat signs and
// encrypts its callbacks (safe mode) exactly like the real one, and the
// simulated Tucao checks signatures and rate limits like the real one.
const (
	demoAppID     = "wxd3m0k3fu00000001"
	demoAppSecret = "kefu-demo-app-secret"
	demoToken     = "kefu-demo-token"
	demoAESKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	demoWeChatID  = "kefudemo"
	// demoSpeed compresses the simulated day: a 3-minute chat takes 6 s.
	demoSpeed = 30
)

// demoEnv is what `kefu demo` adds around `all`: a simulated WeChat with
// agents and arriving customers, and a simulated Tucao where posts appear.
type demoEnv struct {
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

// prepareDemo starts the simulated services and fills the settings a
// newcomer has not given; it avoids busy default ports (a NATS server
// often listens on 4222 already).
func prepareDemo(cfg *config.Config) (*demoEnv, error) {
	d := &demoEnv{}
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
		AppID: demoAppID, AppSecret: demoAppSecret, Token: demoToken, EncodingAESKey: demoAESKey,
		Mode: wechat.ModeSafe, WeChatID: demoWeChatID, CallbackRetryDelay: 200 * time.Millisecond,
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
	cfg.WeChatAppID, cfg.WeChatSecret = demoAppID, config.Secret(demoAppSecret)
	cfg.WeChatToken, cfg.WeChatAESKey = config.Secret(demoToken), config.Secret(demoAESKey)
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

// Close stops the simulated services and removes the demo's data.
func (d *demoEnv) Close() {
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

func (d *demoEnv) start(ctx context.Context, rt *runtime, httpURL string) error {
	out := rt.stdout
	adminToken, apiToken, curlToken := d.adminToken, d.apiToken, d.apiToken
	if adminToken == "" {
		adminToken = "(your KEFU_ADMIN_TOKEN)"
	}
	if apiToken == "" {
		apiToken, curlToken = "(your KEFU_API_TOKEN)", "$KEFU_API_TOKEN"
	}
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

`, httpURL, d.consoleLines(rt), apiToken, adminToken, curlToken, httpURL, d.remoteKf(httpURL), rt.bus.ClientURL(), rt.bus.ClientURL(),
		directKfSettings(rt), rt.cfg.WeChatAPIBase, d.tucao.URL(), rt.cfg.DataDir, rt.cfg.StaleAfter)
	stop, err := rt.bus.Listen(ctx, []string{"kefu.>"}, func(m *nats.Msg) { printEvent(out, m) })
	if err != nil {
		return err
	}
	d.unlisten = stop

	d.wechat.SetCallbackURL(httpURL + "/wechat/callback")
	return demoTraffic(d, ctx)
}

// remoteKf is how people point `kefu kf` at the demo: through its admin
// API, with the admin token and no NATS or WeChat settings.
func (d *demoEnv) remoteKf(httpURL string) string {
	if d.adminToken == "" {
		return "kefu kf --server " + httpURL + " online   (with your KEFU_ADMIN_TOKEN)"
	}
	return "KEFU_ADMIN_TOKEN=" + d.adminToken + " kefu kf --server " + httpURL + " online"
}

// directKfSettings point `kefu kf` at the demo's NATS and simulated WeChat
// directly, as on a server host.
func directKfSettings(rt *runtime) string {
	return "KEFU_NATS_URL=" + rt.bus.ClientURL() + " KEFU_WECHAT_APPID=" + demoAppID + " KEFU_WECHAT_SECRET=" + demoAppSecret +
		" KEFU_WECHAT_API_BASE=" + rt.cfg.WeChatAPIBase
}

// demoTraffic starts the simulated desk; tests replace it to drive the desk
// step by step.
var demoTraffic = (*demoEnv).simulate

// consoleLines are the console's address and one-time sign-in links. The
// links carry a code, not a token, after '#' (never sent to a server, so
// in no access log); each works once, within consoleLinkTTL.
func (d *demoEnv) consoleLines(rt *runtime) string {
	admin, readOnly, err := rt.consoleLinks()
	if err != nil {
		return ""
	}
	s := "  console          " + rt.httpURL + "/console/  (sign in with a token below, or open a one-time link)\n"
	if admin != "" {
		s += "    admin:         " + admin + "\n"
	}
	if readOnly != "" {
		s += "    read-only:     " + readOnly + "\n"
	}
	return s
}

// simulate starts agents, arriving customers and other traffic.
func (d *demoEnv) simulate(ctx context.Context) error {
	for _, a := range []struct{ account, nick string }{{"xiaowang", "小王"}, {"xiaoli", "小李"}, {"xiaozhang", "小张"}} {
		account := a.account + "@" + demoWeChatID
		if err := d.wechat.AddAgent(account, a.nick); err != nil {
			return err
		}
		d.wechat.SetAutoAccept(account, 2)
		d.wechat.SetAgentStatus(account, wechattest.StatusPC)
	}
	exp := func(mean time.Duration) func(r *rand.Rand) time.Duration {
		return func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * float64(mean)) }
	}
	if err := d.wechat.StartSimulation(wechattest.SimConfig{
		Seed: uint64(time.Now().UnixNano()), Speed: demoSpeed, SwitchProb: 0.15, ForgetProb: 0.04,
		Arrival: exp(28 * time.Second),
		Patience: func(r *rand.Rand) time.Duration {
			return time.Duration(8 * 60 * math.Exp(0.8*r.NormFloat64()) * float64(time.Second))
		},
	}); err != nil {
		return err
	}

	ctx, d.cancel = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.otherTraffic(ctx)
	}()
	return nil
}

// otherTraffic sends the messages and events the queue simulation does
// not (menu clicks, subscriptions, images, locations) and posts feedback on
// the simulated Tucao.
func (d *demoEnv) otherTraffic(ctx context.Context) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	posts := []string{"客服小王态度很好，问题解决了", "排队时间有点长", "退款流程能不能简化一下", "App 登录偶尔失败", "希望增加夜间人工客服"}
	var lastPost string
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		openid := fmt.Sprintf("o-demo-visitor-%03d", r.IntN(50))
		switch i % 5 {
		case 0:
			d.wechat.SendEvent(ctx, openid, "subscribe", map[string]string{"EventKey": "qrscene_demo"})
		case 1:
			d.wechat.SendEvent(ctx, openid, "CLICK", map[string]string{"EventKey": "MENU_HELP"})
		case 2:
			p := d.tucao.AddPost(tucaotest.PostInput{Content: posts[r.IntN(len(posts))], OpenID: openid, NickName: "访客"})
			lastPost = p.ID
		case 3:
			if lastPost != "" {
				d.tucao.AddReply(lastPost, "感谢反馈，我们会尽快改进")
			}
		case 4:
			d.wechat.SendEvent(ctx, openid, "LOCATION", map[string]string{"Latitude": "23.137466", "Longitude": "113.352425", "Precision": "119.385040"})
		}
		// Now and then the last customer in the queue gives up and says so.
		if i%4 == 3 {
			if st := d.wechat.Snapshot(); len(st.Waiting) > 1 {
				d.wechat.CustomerMessage(ctx, st.Waiting[len(st.Waiting)-1].OpenID, "不等了")
			}
		}
	}
}

func (d *demoEnv) stop() {
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

var printMu sync.Mutex

func printEvent(out io.Writer, m *nats.Msg) {
	ev, err := events.DecodeSubject(m.Subject, m.Data)
	summary := ""
	if err == nil {
		switch e := ev.(type) {
		case events.SessionCreated:
			summary = e.OpenID + " is served by " + e.KfAccount
		case events.SessionSwitched:
			summary = e.OpenID + " transferred " + e.FromKfAccount + " → " + e.ToKfAccount
		case events.SessionClosed:
			summary = e.OpenID + " session closed by " + e.KfAccount
		case events.MessageReceived:
			summary = e.OpenID + " sent " + e.MsgType + " " + e.Content
		case events.EventReceived:
			summary = e.OpenID + " " + e.Event + " " + e.EventKey
		case events.WaitEstimated:
			summary = fmt.Sprintf("%s position %d, wait ~%ds (p90 %ds)", e.OpenID, e.Position, e.WaitSeconds, e.WaitP90Seconds)
		case events.QueueSnapshot:
			summary = fmt.Sprintf("%d waiting, %d agents online", e.WaitingCount, len(e.Agents))
		case events.Notification:
			summary = fmt.Sprintf("%s %s %s %q", e.OpenID, e.Kind, e.Outcome, e.Text)
		case events.FeedbackPost:
			summary = fmt.Sprintf("post %s by %s: %s (%d replies)", e.ID, e.OpenID, e.Content, e.ReplyCount)
		case events.SessionAbandoned:
			summary = fmt.Sprintf("%s left the queue after %ds (%s)", e.OpenID, e.WaitedSeconds, e.Reason)
		case events.QueueJoined:
			summary = e.OpenID + " joined the queue"
			if e.KfAccount != "" {
				summary += " for " + e.KfAccount
			}
		case events.AgentChosen:
			summary = fmt.Sprintf("%s chose %d (%s %s%s): %s", e.OpenID, e.Choice, e.Kind, e.Group, e.KfAccount, e.Outcome)
		}
	} else if len(m.Subject) > len(events.SubjectDLQPrefix) && m.Subject[:len(events.SubjectDLQPrefix)] == events.SubjectDLQPrefix {
		summary = "dead letter: " + m.Header.Get("Kefu-Dlq-Reason")
	}
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Fprintf(out, "%s  %-34s %s\n", time.Now().Format("15:04:05.000"), m.Subject, summary)
}
