package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/services/ingest"
)

// Events the generator sends.
const (
	eventCreate = "kf_create_session"
	eventClose  = "kf_close_session"
)

// WeChat's callback behaviour, which the generator copies.
const (
	callbackTimeout = 5 * time.Second
	callbackRetries = 3
	retryDelay      = time.Second
)

// callback is one callback as WeChat would send it, and what came back.
type callback struct {
	openid string
	event  string
	// id is the event's Nats-Msg-Id (and ce-id), computed by ingest's own
	// mapping so the check does not depend on a copy of the rule.
	id string

	attempts   int
	status503  int
	statusElse int
	transport  int // connection refused, reset, timeout
	success    bool
}

// generator sends session pairs — kf_create_session, a short pause,
// kf_close_session — for fresh customers at a steady rate.
type generator struct {
	url    string // ingest's callback URL
	codec  *wechat.Codec
	fake   *wechattest.Server
	appID  string
	toUser string
	agents []string
	prefix string // of every openid of this run
	hold   time.Duration
	client *http.Client

	mu        sync.Mutex
	callbacks []*callback
	sessions  int
}

// newGenerator sends the suite's official account's callbacks (appID,
// token, aesKey; the agents) to the ingest at addr.
func newGenerator(addr string, fake *wechattest.Server, prefix string) (*generator, error) {
	codec, err := wechat.NewCodec(token, appID, aesKey)
	if err != nil {
		return nil, err
	}
	return &generator{
		url: "http://" + addr + "/wechat/callback", codec: codec, fake: fake, appID: appID,
		toUser: fake.Config().OriginalID, agents: agents, prefix: prefix,
		hold: 300 * time.Millisecond,
		client: &http.Client{
			Timeout:   callbackTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second},
		},
	}, nil
}

// run sends rate callbacks per second (two per session) until ctx ends,
// then waits for the sessions in progress, retries included.
func (g *generator) run(ctx context.Context, rate float64) {
	interval := time.Duration(float64(time.Second) * 2 / rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		// Scheduled from the start, not from the previous tick, so a slow
		// moment does not lower the rate.
		next := start.Add(time.Duration(i) * interval)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-time.After(time.Until(next)):
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			g.session(i)
		}(i)
	}
}

func (g *generator) openID(i int) string { return fmt.Sprintf("%s%07d", g.prefix, i) }

// session plays one customer's session. The customer first writes to the
// account — the fake records the interaction that opens the 48-hour
// custom/send window; it has no callback URL, so nothing is posted — then
// an agent takes the session and closes it.
func (g *generator) session(i int) {
	g.mu.Lock()
	g.sessions++
	g.mu.Unlock()
	openid := g.openID(i)
	agent := g.agents[i%len(g.agents)]
	g.fake.CustomerMessage(context.Background(), openid, "你好")
	created := time.Now().Unix()
	g.send(openid, eventCreate, agent, created)
	time.Sleep(g.hold)
	// The close is at least a second later: the feedback store pairs a
	// close with the latest create strictly before it.
	closed := time.Now().Unix()
	if closed <= created {
		closed = created + 1
	}
	g.send(openid, eventClose, agent, closed)
}

func (g *generator) send(openid, event, agent string, createTime int64) {
	plain := []byte("<xml><ToUserName><![CDATA[" + g.toUser + "]]></ToUserName>" +
		"<FromUserName><![CDATA[" + openid + "]]></FromUserName>" +
		"<CreateTime>" + strconv.FormatInt(createTime, 10) + "</CreateTime>" +
		"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[" + event + "]]></Event>" +
		"<KfAccount><![CDATA[" + agent + "]]></KfAccount></xml>")
	cb := &callback{openid: openid, event: event}
	if parsed, err := wechat.ParseCallback(plain); err == nil {
		_, cb.id = ingest.Event(parsed, g.appID, time.Now())
	}
	g.mu.Lock()
	g.callbacks = append(g.callbacks, cb)
	g.mu.Unlock()

	// Signed once and posted unchanged on every retry, as WeChat does.
	q, body, err := g.codec.SignCallback(wechat.ModeSafe, plain, openid, strconv.FormatInt(time.Now().Unix(), 10), strconv.Itoa(int(createTime%1e9)))
	if err != nil {
		return
	}
	target := g.url + "?" + q.Encode()
	for attempt := 0; attempt <= callbackRetries; attempt++ {
		if attempt > 0 {
			time.Sleep(retryDelay)
		}
		status, reply, err := g.post(target, body)
		g.mu.Lock()
		cb.attempts++
		switch {
		case err != nil:
			cb.transport++
		case status == http.StatusServiceUnavailable:
			cb.status503++
		case status != http.StatusOK:
			cb.statusElse++
		case reply == wechat.SuccessReply:
			cb.success = true
		default:
			// 200 with another body: WeChat does not retry, and it is
			// not the answer ingest gives a session event.
			cb.statusElse++
		}
		done := cb.success || (err == nil && status == http.StatusOK)
		g.mu.Unlock()
		if done {
			return
		}
	}
}

func (g *generator) post(target string, body []byte) (int, string, error) {
	resp, err := g.client.Post(target, "text/xml", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, string(reply), nil
}

// results returns a copy of every callback record.
func (g *generator) results() (sessions int, cbs []callback) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cbs = make([]callback, len(g.callbacks))
	for i, cb := range g.callbacks {
		cbs[i] = *cb
	}
	return g.sessions, cbs
}
