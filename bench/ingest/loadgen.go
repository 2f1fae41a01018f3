package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// The load generator runs in a child process of the benchmark (the same
// binary started with the "loadgen" argument) so its CPU use is measured on
// its own and its garbage never costs the servers a GC cycle. It talks to
// the parent over stdout: "ready" once its requests are signed, "start" and
// "stop" at the edges of the measured window (the parent samples its own
// CPU there), then one line of JSON with the result.

// Identity of the benchmark's fake account; the values only need to agree
// between the generator and the servers.
const (
	benchAppID  = "wx2c2769f8efd9abc2"
	benchToken  = "kefu-bench-token"
	benchAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	benchToUser = "gh_3f1a2b3c4d5e"
)

// loadConfig is what one load phase does.
type loadConfig struct {
	URL       string
	Mode      wechat.Mode
	Conns     int
	Warmup    time.Duration
	Duration  time.Duration
	MsgIDBase int64
	// Pool is how many requests are signed before the clock starts; beyond
	// it requests are signed on the fly (and counted in OnTheFly).
	Pool    int
	Timeout time.Duration
}

func (c loadConfig) args() []string {
	return []string{"loadgen",
		"-url", c.URL, "-mode", c.Mode.String(), "-conns", strconv.Itoa(c.Conns),
		"-warmup", c.Warmup.String(), "-duration", c.Duration.String(),
		"-msgid-base", strconv.FormatInt(c.MsgIDBase, 10), "-pool", strconv.Itoa(c.Pool),
		"-timeout", c.Timeout.String()}
}

func parseLoadConfig(args []string) (loadConfig, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var c loadConfig
	var mode string
	fs.StringVar(&c.URL, "url", "", "callback URL")
	fs.StringVar(&mode, "mode", "plain", "plain or safe")
	fs.IntVar(&c.Conns, "conns", 64, "concurrent keep-alive connections")
	fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "warm-up before the measured window")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "measured window")
	fs.Int64Var(&c.MsgIDBase, "msgid-base", 0, "MsgId of the first request")
	fs.IntVar(&c.Pool, "pool", 100_000, "requests signed before the clock starts")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "per-request timeout (WeChat gives up after 5 s)")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("parse loadgen flags: %w", err)
	}
	var err error
	if c.Mode, err = parseMode(mode); err != nil {
		return c, err
	}
	if c.URL == "" || c.Conns < 1 || c.Duration <= 0 || c.Warmup < 0 || c.Pool < 0 {
		return c, fmt.Errorf("parse loadgen flags: url, conns ≥ 1, duration > 0 required")
	}
	return c, nil
}

func parseMode(s string) (wechat.Mode, error) {
	switch s {
	case "plain":
		return wechat.ModePlain, nil
	case "safe":
		return wechat.ModeSafe, nil
	}
	return 0, fmt.Errorf("mode %q: want plain or safe", s)
}

// loadResult is what the generator reports.
type loadResult struct {
	// Sent requests carried MsgIds MsgIDBase … MsgIDBase+Sent-1.
	Sent int64 `json:"sent"`
	// Successes answered 200 "success" over the whole phase (warm-up and
	// in-flight requests at the end included): each must be in the stream.
	Successes int64 `json:"successes"`
	// FailedIDs are the MsgIds that did not get "success" (first 10 000).
	FailedIDs []int64 `json:"failed_ids,omitempty"`
	// Measured window: requests completed inside it.
	WindowSeconds float64          `json:"window_seconds"`
	OK            int64            `json:"ok"`
	Errors        map[string]int64 `json:"errors,omitempty"`
	LatenciesNS   []int64          `json:"latencies_ns"` // of the OK requests
	// CPUSeconds is the generator's own CPU time inside the window.
	CPUSeconds float64 `json:"cpu_seconds"`
	Pool       int     `json:"pool"`
	OnTheFly   int64   `json:"on_the_fly"`
}

// signedRequest is one callback as WeChat would send it.
type signedRequest struct {
	rawQuery string
	body     []byte
	msgID    int64
}

// requestSigner produces unique, correctly signed text-message callbacks.
type requestSigner struct {
	codec     *wechat.Codec
	mode      wechat.Mode
	msgIDBase int64
	timestamp string
}

func newRequestSigner(mode wechat.Mode, msgIDBase int64) (*requestSigner, error) {
	aesKey := ""
	if mode != wechat.ModePlain {
		aesKey = benchAESKey
	}
	codec, err := wechat.NewCodec(benchToken, benchAppID, aesKey)
	if err != nil {
		return nil, fmt.Errorf("loadgen codec: %w", err)
	}
	return &requestSigner{codec: codec, mode: mode, msgIDBase: msgIDBase,
		timestamp: strconv.FormatInt(time.Now().Unix(), 10)}, nil
}

// sign builds request i: MsgId msgIDBase+i, one of 1000 customers, a
// typical short Chinese text, its own nonce.
func (s *requestSigner) sign(i int64) (signedRequest, error) {
	msgID := s.msgIDBase + i
	openid := fmt.Sprintf("oBench%022d", i%1000)
	plain := fmt.Appendf(nil, "<xml><ToUserName><![CDATA[%s]]></ToUserName>"+
		"<FromUserName><![CDATA[%s]]></FromUserName><CreateTime>%s</CreateTime>"+
		"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[您好，我的订单 %d 什么时候发货？]]></Content>"+
		"<MsgId>%d</MsgId></xml>", benchToUser, openid, s.timestamp, i, msgID)
	q, body, err := s.codec.SignCallback(s.mode, plain, openid, s.timestamp, strconv.FormatInt(1_000_000_000+i, 10))
	if err != nil {
		return signedRequest{}, fmt.Errorf("sign request %d: %w", i, err)
	}
	return signedRequest{rawQuery: q.Encode(), body: body, msgID: msgID}, nil
}

// runLoadgen is the child process's main.
func runLoadgen(args []string, out io.Writer) error {
	cfg, err := parseLoadConfig(args)
	if err != nil {
		return err
	}
	res, err := generateLoad(cfg, func(marker string) { fmt.Fprintln(out, marker) })
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(out, "result %s\n", b)
	return err
}

// generateLoad signs cfg.Pool requests, then keeps cfg.Conns requests in
// flight for the warm-up and the measured window, calling marker with
// "ready", "start" and "stop".
func generateLoad(cfg loadConfig, marker func(string)) (loadResult, error) {
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return loadResult{}, fmt.Errorf("loadgen url: %w", err)
	}
	signer, err := newRequestSigner(cfg.Mode, cfg.MsgIDBase)
	if err != nil {
		return loadResult{}, err
	}
	pool := make([]signedRequest, cfg.Pool)
	for i := range pool {
		if pool[i], err = signer.sign(int64(i)); err != nil {
			return loadResult{}, err
		}
	}
	tr := &http.Transport{
		MaxIdleConns:        cfg.Conns,
		MaxIdleConnsPerHost: cfg.Conns,
		MaxConnsPerHost:     cfg.Conns,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}
	marker("ready")

	begin := time.Now()
	windowStart := begin.Add(cfg.Warmup)
	windowEnd := windowStart.Add(cfg.Duration)
	var cpuStart, cpuEnd float64
	markersDone := make(chan struct{})
	go func() {
		defer close(markersDone)
		time.Sleep(time.Until(windowStart))
		cpuStart = selfCPU()
		marker("start")
		time.Sleep(time.Until(windowEnd))
		cpuEnd = selfCPU()
		marker("stop")
	}()

	var next, onTheFly atomic.Int64
	workers := make([]workerResult, cfg.Conns)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[w] = runWorker(client, base, cfg, pool, signer, &next, &onTheFly, windowStart, windowEnd)
		}()
	}
	wg.Wait()
	<-markersDone

	res := loadResult{Sent: next.Load(), WindowSeconds: cfg.Duration.Seconds(), Errors: map[string]int64{},
		CPUSeconds: cpuEnd - cpuStart, Pool: cfg.Pool, OnTheFly: onTheFly.Load()}
	for _, w := range workers {
		if w.err != nil {
			return loadResult{}, w.err
		}
		res.Successes += w.successes
		res.OK += int64(len(w.latencies))
		res.LatenciesNS = append(res.LatenciesNS, w.latencies...)
		for k, v := range w.errors {
			res.Errors[k] += v
		}
		for _, id := range w.failed {
			if len(res.FailedIDs) < 10_000 {
				res.FailedIDs = append(res.FailedIDs, id)
			}
		}
	}
	return res, nil
}

type workerResult struct {
	successes int64
	latencies []int64
	errors    map[string]int64
	failed    []int64
	err       error
}

func runWorker(client *http.Client, base *url.URL, cfg loadConfig, pool []signedRequest, signer *requestSigner,
	next, onTheFly *atomic.Int64, windowStart, windowEnd time.Time) workerResult {
	res := workerResult{errors: map[string]int64{},
		latencies: make([]int64, 0, int(cfg.Duration.Seconds()*40_000)/cfg.Conns+16)}
	var buf [64]byte
	for time.Now().Before(windowEnd) {
		i := next.Add(1) - 1
		var sr signedRequest
		if i < int64(len(pool)) {
			sr = pool[i]
		} else {
			var err error
			if sr, err = signer.sign(i); err != nil {
				res.err = err
				return res
			}
			onTheFly.Add(1)
		}
		u := *base
		u.RawQuery = sr.rawQuery
		req := &http.Request{Method: http.MethodPost, URL: &u, Host: u.Host,
			Header:        http.Header{"Content-Type": {"text/xml"}},
			Body:          io.NopCloser(bytes.NewReader(sr.body)),
			ContentLength: int64(len(sr.body))}
		sent := time.Now()
		outcome := ""
		resp, err := client.Do(req)
		if err != nil {
			outcome = "transport"
		} else {
			n, _ := io.ReadFull(resp.Body, buf[:])
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				outcome = "http " + strconv.Itoa(resp.StatusCode)
			case string(buf[:n]) != wechat.SuccessReply:
				outcome = "answer not success"
			}
		}
		done := time.Now()
		if outcome == "" {
			res.successes++
		} else {
			res.failed = append(res.failed, sr.msgID)
		}
		if done.Before(windowStart) || done.After(windowEnd) {
			continue
		}
		if outcome == "" {
			res.latencies = append(res.latencies, int64(done.Sub(sent)))
		} else {
			res.errors[outcome]++
		}
	}
	return res
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// exitLoadgen is the "loadgen" entry point.
func exitLoadgen(args []string) {
	if err := runLoadgen(args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
