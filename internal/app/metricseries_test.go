package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat"
)

// publicFamilies are the metric families a request to a public path can
// touch directly. Their series must all exist before the first request,
// and no request may add one.
var publicFamilies = []string{
	"kefu_ingest_callbacks_total",
	"kefu_ingest_rejected_total",
	"kefu_ingest_url_verifications_total",
	"kefu_tucao_webhooks_total",
	"kefu_tucao_webhook_kicks_total",
	"kefu_http_rate_limited_total",
	"kefu_notify_feedback_pages_total",
}

// scrapeSeries returns the series (name and labels) of /metrics and the
// text itself.
func scrapeSeries(t *testing.T, base string) (map[string]float64, string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	series := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		series[line[:i]] = v
	}
	return series, string(text)
}

func inFamilies(series string, families []string) bool {
	name, _, _ := strings.Cut(series, "{")
	for _, f := range families {
		if name == f {
			return true
		}
	}
	return false
}

// randomWord is a name a stranger might send: ASCII, Chinese, control
// characters and NATS subject syntax, of any length up to max.
func randomWord(rng *rand.Rand, max int, controls bool) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-*> \t\"{}=,"
	n := 6 + rng.IntN(max)
	var b strings.Builder
	b.WriteString("zq") // every random word is findable in a scrape
	for b.Len() < n {
		switch rng.IntN(8) {
		case 0:
			b.WriteString("客服")
		case 1:
			if controls {
				b.WriteByte(byte(rng.IntN(32)))
			}
		default:
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
	}
	return b.String()
}

// Property: whatever a stranger sends to the public paths — signed
// callbacks with any MsgType or Event, unsigned and malformed ones, Tucao
// webhooks of any type and size, feedback pages with any token, unknown
// paths, any method — the set of metric series those paths feed is the
// one that existed before the first request, and no value a request
// carried shows up anywhere in /metrics.
func TestNoPublicRequestCreatesAMetricSeries(t *testing.T) {
	tucao := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(tucao.Close)
	r := startAll(t, map[string]string{
		"KEFU_TUCAO_PRODUCT_ID": tucao.ProductID(), "KEFU_TUCAO_SECRET": tucao.Secret(), "KEFU_TUCAO_API_BASE": tucao.URL(),
		"KEFU_TUCAO_POLL_INTERVAL": "1h", "KEFU_TRUSTED_PROXIES": "127.0.0.1/32",
		// One request in five seconds (a burst of two) per client: the one
		// client that sends a tenth of the campaign is stopped however slowly a
		// loaded machine sends it.
		"KEFU_PUBLIC_RATE_LIMIT": "0.2",
		"KEFU_WECHAT_TRANSFER":   "false", "KEFU_PUBLIC_URL": "https://kefu.example.com",
	})
	codec, err := wechat.NewCodec(edgeToken, edgeAppID, edgeAESKey)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := scrapeSeries(t, r.base)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var sent []string // random words a request carried
	word := func(max int) string {
		w := randomWord(rng, max, true)
		sent = append(sent, w)
		return w
	}
	// xmlWord is a word a signed XML document can carry.
	xmlWord := func(max int) string {
		w := randomWord(rng, max, false)
		sent = append(sent, w)
		return w
	}
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path string, q url.Values, body []byte) int {
		u := r.base + path
		if q != nil {
			u += "?" + q.Encode()
		}
		req, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil {
			return 0 // a method or path Go will not send
		}
		// Most requests come from a client of their own; one in ten from
		// the same one, which the rate limit stops.
		ip := fmt.Sprintf("198.51.%d.%d", rng.IntN(256), rng.IntN(256))
		if rng.IntN(10) == 0 {
			ip = "203.0.113.7"
		}
		req.Header.Set("X-Forwarded-For", ip)
		req.Header.Set("X-"+strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' {
				return r
			}
			return 'x'
		}, word(10)), url.QueryEscape(word(20)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	signed := func(mode wechat.Mode, inner string, shift time.Duration) (url.Values, []byte) {
		now := time.Now().Add(shift).Unix()
		plain := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_edge]]></ToUserName><FromUserName><![CDATA[o-%d]]></FromUserName>`+
			`<CreateTime>%d</CreateTime>%s</xml>`, rng.IntN(1000), now, inner)
		q, body, err := codec.SignCallback(mode, []byte(plain), "", strconv.FormatInt(now, 10), strconv.FormatUint(rng.Uint64(), 10))
		if err != nil {
			t.Fatal(err)
		}
		return q, body
	}
	cdata := func(s string) string { return "<![CDATA[" + strings.ReplaceAll(s, "]]>", "") + "]]>" }

	statuses := map[int]int{}
	for i := 0; i < 600; i++ {
		var code int
		switch rng.IntN(9) {
		case 0: // a signed message of any type
			q, body := signed(wechat.ModeSafe, "<MsgType>"+cdata(xmlWord(4000))+"</MsgType><Content>hi</Content><MsgId>"+
				strconv.FormatUint(rng.Uint64(), 10)+"</MsgId>", 0)
			code = do(http.MethodPost, "/wechat/callback", q, body)
		case 1: // a signed event of any name
			q, body := signed(wechat.ModeSafe, "<MsgType><![CDATA[event]]></MsgType><Event>"+cdata(xmlWord(4000))+"</Event>", 0)
			code = do(http.MethodPost, "/wechat/callback", q, body)
		case 2: // plaintext on a keyed account, a stale one, a forged one
			q, body := signed(wechat.ModePlain, "<MsgType>"+cdata(xmlWord(64))+"</MsgType><MsgId>1</MsgId>", 0)
			switch rng.IntN(3) {
			case 1:
				q, body = signed(wechat.ModeSafe, "<MsgType><![CDATA[text]]></MsgType><MsgId>2</MsgId>", -time.Hour)
			case 2:
				q.Set("signature", word(40))
				q.Set("msg_signature", word(40))
			}
			code = do(http.MethodPost, "/wechat/callback", q, body)
		case 3: // garbage query and body, any method
			q := url.Values{word(10): {word(100)}, "encrypt_type": {word(8)}, "timestamp": {word(10)}}
			method := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, "PATCH", word(6)}[rng.IntN(6)]
			code = do(method, "/wechat/callback", q, []byte(word(2000)))
		case 4: // a Tucao webhook of any type, sometimes over the limit
			typ, _ := json.Marshal(word(300)) // valid JSON, so the type is what is judged
			body := []byte(`{"id":"1","type":` + string(typ) + `,"payload":{}}`)
			if rng.IntN(5) == 0 {
				body = append(body, bytes.Repeat([]byte(" "), 70<<10)...)
			}
			code = do(http.MethodPost, "/tucao/webhook", nil, body)
		case 5: // webhook garbage and the secret-path form
			code = do(http.MethodPost, "/tucao/webhook/"+url.PathEscape(word(30)), nil, []byte(word(500)))
		case 6: // feedback pages with any token
			code = do(http.MethodGet, "/feedback/"+url.PathEscape(word(1500)), nil, nil)
		case 7: // unknown paths
			code = do(http.MethodGet, "/"+url.PathEscape(word(200)), url.Values{"q": {word(50)}}, nil)
		case 8: // URL verification with any echostr
			q, _ := signed(wechat.ModePlain, "", 0)
			q.Set("echostr", word(100))
			code = do(http.MethodGet, "/wechat/callback", q, nil)
		}
		statuses[code]++
	}
	t.Logf("answers by status: %v", statuses)

	after, text := scrapeSeries(t, r.base)
	for s := range after {
		if inFamilies(s, publicFamilies) {
			if _, ok := before[s]; !ok {
				t.Errorf("a request created the series %.200s", s)
			}
		}
	}
	for s := range before {
		if inFamilies(s, publicFamilies) {
			if _, ok := after[s]; !ok {
				t.Errorf("series %s disappeared", s)
			}
		}
	}
	lower := strings.ToLower(text)
	for _, w := range sent {
		if strings.Contains(lower, strings.ToLower(w)) {
			t.Fatalf("/metrics shows a value a request sent: %.80q", w)
		}
	}
	// Every label value anywhere is a plain name, whatever the requests were.
	plainLabel := regexp.MustCompile(`^[A-Za-z0-9_.:/+\-]{0,64}$`)
	labelRE := regexp.MustCompile(`="((?:[^"\\]|\\.)*)"`)
	for s := range after {
		for _, m := range labelRE.FindAllStringSubmatch(s, -1) {
			if !plainLabel.MatchString(m[1]) {
				t.Errorf("series %.200s has the label value %.80q", s, m[1])
			}
		}
	}
	// The campaign reached every handler: otherwise the property holds for
	// nothing.
	for _, s := range []string{
		`kefu_ingest_callbacks_total{kind="message.other",outcome="published"}`,
		`kefu_ingest_callbacks_total{kind="event.other",outcome="published"}`,
		`kefu_ingest_rejected_total{reason="signature"}`,
		`kefu_ingest_rejected_total{reason="stale"}`,
		`kefu_tucao_webhooks_total{type="other"}`,
		`kefu_http_rate_limited_total`,
		`kefu_notify_feedback_pages_total{result="bad"}`,
	} {
		if after[s] == 0 {
			t.Errorf("%s is 0: the random requests never reached that path", s)
		}
	}
}
