package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/wechat"
)

// A short run against both endpoints, in both modes, must be answered
// "success" every time and leave every request in its stream exactly once:
// otherwise the benchmark would be timing something other than what it
// claims.
func TestEveryGeneratedCallbackIsStoredOnceByBothEndpoints(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeSafe} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := context.Background()
			p, err := startInProcess(ctx, mode, mode == wechat.ModePlain)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			for i, tg := range []target{p.baseline, p.kefu} {
				if err := tg.freshStream(ctx); err != nil {
					t.Fatal(err)
				}
				cfg := loadConfig{URL: tg.url, Mode: mode, Conns: 4, Warmup: 50 * time.Millisecond,
					Duration: 250 * time.Millisecond, MsgIDBase: msgIDBase(i + 1), Pool: 50, Timeout: 5 * time.Second}
				var markers []string
				res, err := generateLoad(cfg, func(m string) { markers = append(markers, m) })
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(markers, ",") != "ready,start,stop" {
					t.Errorf("%s: markers %v", tg.name, markers)
				}
				if res.Successes == 0 || res.Successes != res.Sent || len(res.Errors) > 0 {
					t.Fatalf("%s: sent %d, success %d, errors %v", tg.name, res.Sent, res.Successes, res.Errors)
				}
				if res.OnTheFly != res.Sent-int64(cfg.Pool) {
					t.Errorf("%s: %d of %d requests signed on the fly with a pool of %d", tg.name, res.OnTheFly, res.Sent, cfg.Pool)
				}
				if int64(len(res.LatenciesNS)) != res.OK || res.OK == 0 {
					t.Errorf("%s: %d latencies for %d OK requests", tg.name, len(res.LatenciesNS), res.OK)
				}
				check, _, err := checkStream(ctx, tg.js, tg.stream, 1, res, cfg.MsgIDBase)
				if err != nil {
					t.Fatal(err)
				}
				if !check.OK() || check.Stored != uint64(res.Successes) {
					t.Errorf("%s: %s", tg.name, check)
				}
			}
		})
	}
}

func TestBaselineRefusesWhatItCannotAuthenticate(t *testing.T) {
	ctx := context.Background()
	p, err := startInProcess(ctx, wechat.ModeSafe, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.baseline.freshStream(ctx); err != nil {
		t.Fatal(err)
	}
	signer, err := newRequestSigner(wechat.ModeSafe, 42)
	if err != nil {
		t.Fatal(err)
	}
	good, err := signer.sign(0)
	if err != nil {
		t.Fatal(err)
	}
	plainSigner, err := newRequestSigner(wechat.ModePlain, 42)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := plainSigner.sign(1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		rawQuery string
		body     string
		want     int
	}{
		{"a correctly signed safe-mode callback is stored", good.rawQuery, string(good.body), http.StatusOK},
		{"a correctly signed plain callback is stored", plain.rawQuery, string(plain.body), http.StatusOK},
		{"a forged plain signature is refused", strings.Replace(plain.rawQuery, "signature=", "signature=0", 1), string(plain.body), http.StatusUnauthorized},
		{"a ciphertext not covered by msg_signature is refused", good.rawQuery, strings.Replace(string(good.body), "<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA", 1), http.StatusUnauthorized},
		{"a body that is not a message is refused", plain.rawQuery, "<xml><ToUserName>x</ToUserName></xml>", http.StatusBadRequest},
	}
	stored := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(p.baseline.url+"?"+tc.rawQuery, "text/xml", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusOK {
				stored++
				if string(body) != "success" {
					t.Fatalf("answer %q", body)
				}
			}
			state, err := streamState(ctx, p.baseline.js, baselineStream)
			if err != nil {
				t.Fatal(err)
			}
			if state.Msgs != uint64(stored) {
				t.Fatalf("stream holds %d messages, want %d", state.Msgs, stored)
			}
		})
	}
}

// checkStream must fail a run whose stream does not hold exactly the
// requests answered "success".
func TestStreamCheckCatchesLossAndDuplicates(t *testing.T) {
	ctx := context.Background()
	p, err := startInProcess(ctx, wechat.ModePlain, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	const base = 1000
	tests := []struct {
		name      string
		stored    []string // Nats-Msg-Id of the stored messages, in order
		result    loadResult
		wantOK    bool
		wantCheck streamCheck
	}{
		{"every success stored once passes",
			[]string{"wx-msg-1000", "wx-msg-1001"}, loadResult{Sent: 2, Successes: 2}, true,
			streamCheck{Stored: 2, Successes: 2}},
		{"a success missing from the stream fails",
			[]string{"wx-msg-1000"}, loadResult{Sent: 2, Successes: 2}, false,
			streamCheck{Stored: 1, Successes: 2, Missing: 1}},
		{"a message stored twice fails",
			[]string{"wx-msg-1000", "wx-msg-1001", "wx-msg-1001"}, loadResult{Sent: 2, Successes: 2}, false,
			streamCheck{Stored: 3, Successes: 2, Duplicates: 1}},
		{"a message from outside the run fails",
			[]string{"wx-msg-1000", "wx-msg-7"}, loadResult{Sent: 1, Successes: 1}, false,
			streamCheck{Stored: 2, Successes: 1, Foreign: 1}},
		{"a failed request that was stored anyway passes",
			[]string{"wx-msg-1000", "wx-msg-1001"}, loadResult{Sent: 2, Successes: 1, FailedIDs: []int64{1001}}, true,
			streamCheck{Stored: 2, Successes: 1, StoredFailed: 1}},
		{"a failed request that was not stored passes",
			[]string{"wx-msg-1000"}, loadResult{Sent: 2, Successes: 1, FailedIDs: []int64{1001}}, true,
			streamCheck{Stored: 1, Successes: 1}},
	}
	js := p.baseline.js
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A stream of its own with a de-duplication window short enough
			// that a repeated id can be stored again after a pause.
			js.DeleteStream(ctx, "CHECK")
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CHECK", Subjects: []string{"check.>"},
				Storage: jetstream.MemoryStorage, Duplicates: 100 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, id := range tc.stored {
				if seen[id] {
					time.Sleep(300 * time.Millisecond)
				}
				seen[id] = true
				msg := &nats.Msg{Subject: "check.x", Header: nats.Header{}, Data: []byte("x")}
				msg.Header.Set(jetstream.MsgIDHeader, id)
				if ack, err := js.PublishMsg(ctx, msg); err != nil || ack.Duplicate {
					t.Fatalf("publish %s: %v (duplicate %v)", id, err, ack != nil && ack.Duplicate)
				}
			}
			got, _, err := checkStream(ctx, js, "CHECK", 1, tc.result, base)
			if err != nil {
				t.Fatal(err)
			}
			got.Bytes = 0
			if got != tc.wantCheck || got.OK() != tc.wantOK {
				t.Errorf("got %+v (ok %v), want %+v (ok %v)", got, got.OK(), tc.wantCheck, tc.wantOK)
			}
		})
	}
}

func TestProcParsers(t *testing.T) {
	status := []byte("Name:\tkefu\nVmPeak:\t  900000 kB\nVmHWM:\t   61234 kB\nVmRSS:\t   51200 kB\n")
	tests := []struct {
		name string
		got  func() (float64, error)
		want float64
	}{
		{"VmRSS is read in kB", func() (float64, error) { v, err := parseStatusKB(status, "VmRSS"); return float64(v), err }, 51200},
		{"VmHWM is not confused with VmPeak", func() (float64, error) { v, err := parseStatusKB(status, "VmHWM"); return float64(v), err }, 61234},
		{"CPU is utime+stime in 1/100 s, after a command name with spaces",
			func() (float64, error) {
				return parseStatCPU([]byte("123 (kefu all) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0"))
			}, 3.0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.got()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Error("a missing field must be an error, not 0")
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	sorted := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	tests := []struct {
		name string
		p    float64
		want int64
	}{
		{"p50 of ten is the fifth", 0.50, 50},
		{"p99 of ten is the largest", 0.99, 100},
		{"p0 is the smallest", 0, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %d, want %d", tc.p, got, tc.want)
			}
		})
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %d", got)
	}
}

// The generator's parent reads markers and one result line; anything else
// is a broken child and must not be mistaken for a result.
func TestReadGeneratorRunsHooksAtTheWindowEdges(t *testing.T) {
	var calls []string
	hooks := phaseHooks{
		start: func() error { calls = append(calls, "start"); return nil },
		stop:  func() error { calls = append(calls, "stop"); return nil },
	}
	res, err := readGenerator(bufioReader("ready\nstart\nstop\nresult {\"sent\":3,\"successes\":3}\n"), hooks)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 3 || strings.Join(calls, ",") != "start,stop" {
		t.Errorf("result %+v, hooks %v", res, calls)
	}
	if _, err := readGenerator(bufioReader("ready\nstart\n"), phaseHooks{}); err == nil {
		t.Error("a generator that exits without a result must be an error")
	}
	if _, err := readGenerator(bufioReader("panic: boom\n"), phaseHooks{}); err == nil {
		t.Error("unexpected output must be an error")
	}
}

// kefu's ingest and the baseline are served by the same kind of server;
// a GET to the baseline is not a callback.
func TestBaselineAnswersOnlyPost(t *testing.T) {
	b, err := newBaseline(nil, benchToken, benchAppID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/wechat/callback", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET answered %d", rec.Code)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func TestMedianOfRoundRatios(t *testing.T) {
	tests := []struct {
		name   string
		sorted []float64
		want   float64
	}{
		{"odd count takes the middle", []float64{0.8, 0.9, 1.2}, 0.9},
		{"even count averages the middle two", []float64{0.8, 0.9, 1.1, 1.2}, 1.0},
		{"no rounds is zero", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.sorted); got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Errorf("median = %v, want %v", got, tc.want)
			}
		})
	}
}

// With -baseline-guard the baseline must really refuse a used signature
// with another body, or the comparison would flatter it.
func TestBaselineGuardRefusesASecondBody(t *testing.T) {
	ctx := context.Background()
	p, err := startInProcess(ctx, wechat.ModePlain, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.baseline.freshStream(ctx); err != nil {
		t.Fatal(err)
	}
	codec, err := wechat.NewCodec(benchToken, benchAppID, "")
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	post := func(msgID int) int {
		plain := fmt.Sprintf("<xml><ToUserName>%s</ToUserName><FromUserName>o1</FromUserName><CreateTime>%s</CreateTime>"+
			"<MsgType>text</MsgType><Content>hi</Content><MsgId>%d</MsgId></xml>", benchToUser, ts, msgID)
		q, body, err := codec.SignCallback(wechat.ModePlain, []byte(plain), "o1", ts, "nonce-1")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(p.baseline.url+"?"+q.Encode(), "text/xml", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(1); got != http.StatusOK {
		t.Fatalf("first body: %d", got)
	}
	if got := post(1); got != http.StatusOK {
		t.Fatalf("identical retry: %d", got)
	}
	if got := post(2); got != http.StatusUnauthorized {
		t.Fatalf("second body on the same signature: %d, want 401", got)
	}
	st, err := streamState(ctx, p.baseline.js, baselineStream)
	if err != nil {
		t.Fatal(err)
	}
	if st.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", st.Msgs)
	}
}
