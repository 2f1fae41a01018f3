package app

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Demo account settings: a made-up official account whose callbacks are
// signed and encrypted by the simulated WeChat exactly like real ones.
const (
	demoAppID  = "wxd3m0k3fu00000001"
	demoToken  = "kefu-demo-token"
	demoAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// demoEnv is what `kefu demo` adds around `all`.
type demoEnv struct {
	tmpDir string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sub    *nats.Subscription
}

// prepareDemo fills the settings a newcomer has not given, and avoids busy
// default ports (a NATS server often listens on 4222 already).
func prepareDemo(cfg *config.Config) (*demoEnv, error) {
	d := &demoEnv{}
	if cfg.WeChatAppID == "" {
		cfg.WeChatAppID, cfg.WeChatToken, cfg.WeChatAESKey = demoAppID, demoToken, demoAESKey
	}
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
	return d, nil
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Close removes the demo's temporary data.
func (d *demoEnv) Close() {
	if d.tmpDir != "" {
		os.RemoveAll(d.tmpDir)
	}
}

func (d *demoEnv) start(ctx context.Context, rt *runtime, httpURL string) error {
	out := rt.stdout
	fmt.Fprintf(out, "kefu demo is running.\n  HTTP      %s  (/readyz, /metrics, POST /wechat/callback)\n  NATS      %s\n  watch:    nats --server %s sub 'kefu.>'\n  data      %s (removed on exit)\nPress Ctrl-C to stop.\n\n",
		httpURL, rt.bus.ClientURL(), rt.bus.ClientURL(), rt.cfg.DataDir)
	sub, err := rt.bus.NC.Subscribe("kefu.>", func(m *nats.Msg) {
		printEvent(out, m)
	})
	if err != nil {
		return err
	}
	d.sub = sub
	codec, err := wechat.NewCodec(rt.cfg.WeChatToken.Value(), rt.cfg.WeChatAppID, rt.cfg.WeChatAESKey.Value())
	if err != nil {
		return err
	}
	ctx, d.cancel = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		simulateCallbacks(ctx, codec, httpURL+"/wechat/callback", rt)
	}()
	return nil
}

func (d *demoEnv) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	if d.sub != nil {
		d.sub.Unsubscribe()
	}
}

var printMu sync.Mutex

func printEvent(out interface{ Write([]byte) (int, error) }, m *nats.Msg) {
	ev, err := events.DecodeSubject(m.Subject, m.Data)
	summary := ""
	if err == nil {
		switch e := ev.(type) {
		case events.SessionCreated:
			summary = e.OpenID + " is served by " + e.KfAccount
		case events.SessionSwitched:
			summary = e.OpenID + " moved " + e.FromKfAccount + " → " + e.ToKfAccount
		case events.SessionClosed:
			summary = e.OpenID + " closed by " + e.KfAccount
		case events.MessageReceived:
			summary = e.OpenID + " sent " + e.MsgType + " " + e.Content
		case events.EventReceived:
			summary = e.OpenID + " " + e.Event + " " + e.EventKey
		case events.WaitEstimated:
			summary = fmt.Sprintf("%s position %d, wait ~%ds (p90 %ds)", e.OpenID, e.Position, e.WaitSeconds, e.WaitP90Seconds)
		case events.QueueSnapshot:
			summary = fmt.Sprintf("%d waiting, %d agents online", e.WaitingCount, len(e.Agents))
		case events.Notification:
			summary = fmt.Sprintf("%s %s %q errcode=%d", e.OpenID, e.Kind, e.Text, e.ErrCode)
		case events.FeedbackPost:
			summary = e.ID + " " + e.OpenID + " " + e.Content
		case events.SessionAbandoned:
			summary = fmt.Sprintf("%s left after %ds (%s)", e.OpenID, e.WaitedSeconds, e.Reason)
		}
	}
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Fprintf(out, "%s  %-34s %s\n", time.Now().Format("15:04:05.000"), m.Subject, summary)
}

// simulateCallbacks sends signed callbacks of every kind, in every
// encryption mode, to ingest.
func simulateCallbacks(ctx context.Context, codec *wechat.Codec, url string, rt *runtime) {
	kinds := []string{
		`<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好，我想咨询订单]]></Content><MsgId>%d</MsgId>`,
		`<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[https://mmbiz.qpic.cn/demo.jpg]]></PicUrl><MediaId><![CDATA[media_demo]]></MediaId><MsgId>%d</MsgId>`,
		`<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_42]]></EventKey>`,
		`<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_create_session]]></Event><KfAccount><![CDATA[xiaowang@demo]]></KfAccount>`,
		`<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_switch_session]]></Event><FromKfAccount><![CDATA[xiaowang@demo]]></FromKfAccount><ToKfAccount><![CDATA[xiaoli@demo]]></ToKfAccount>`,
		`<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_close_session]]></Event><KfAccount><![CDATA[xiaoli@demo]]></KfAccount>`,
		`<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[MENU_HELP]]></EventKey>`,
	}
	modes := []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe}
	tick := time.NewTicker(700 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		customer := fmt.Sprintf("o-demo-customer-%d", i/len(kinds))
		now := time.Now().Unix()
		kind := kinds[i%len(kinds)]
		if strings.Contains(kind, "%d") {
			kind = fmt.Sprintf(kind, now*1000+int64(i))
		}
		body := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_kefudemo]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName><CreateTime>%d</CreateTime>%s</xml>`,
			customer, now, kind)
		q, payload, err := codec.SignCallback(modes[i%len(modes)], []byte(body), customer, strconv.FormatInt(now, 10), strconv.Itoa(i))
		if err != nil {
			rt.log.Sugar().Errorf("demo: sign callback: %v", err)
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"?"+q.Encode(), bytes.NewReader(payload))
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				rt.log.Sugar().Warnf("demo: callback: %v", err)
			}
			continue
		}
		resp.Body.Close()
	}
}
