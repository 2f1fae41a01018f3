package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat"
)

// docs/openapi.yaml is checked against the routes the code registers by
// the docs package; this test checks it against the answers: `kefu all`
// runs with the fake WeChat and Tucao, every documented operation is
// called for real (a success and an error where the fakes allow), and each
// answer must be documented — its status, its content type, its required
// headers — and its body valid against the operation's schema.

const openAPIPath = "../../docs/openapi.yaml"

// openAPIDoc is the document and a compiler that resolves its schemas.
type openAPIDoc struct {
	root     map[string]any
	compiler *jsonschema.Compiler
	// called records the operations exercised ("GET /api/kf/queue").
	called map[string]bool
}

const openAPIURL = "https://kefu.invalid/openapi.json"

func loadOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	data, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("parse %s: %v", openAPIPath, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(openAPIURL, doc); err != nil {
		t.Fatal(err)
	}
	return &openAPIDoc{root: doc.(map[string]any), compiler: c, called: map[string]bool{}}
}

type refuseLoader struct{}

func (refuseLoader) Load(u string) (any, error) { return nil, fmt.Errorf("no network: %s", u) }

// pointer escapes a JSON pointer token.
func pointer(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// lookup follows a JSON pointer ("/paths/~1healthz/get") in the document.
func (d *openAPIDoc) lookup(ptr string) (any, bool) {
	var cur any = d.root
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// deref follows $ref of an object of the document, returning its pointer.
func (d *openAPIDoc) deref(ptr string) (string, map[string]any, bool) {
	for range 10 {
		v, ok := d.lookup(ptr)
		m, isMap := v.(map[string]any)
		if !ok || !isMap {
			return ptr, nil, false
		}
		ref, isRef := m["$ref"].(string)
		if !isRef {
			return ptr, m, true
		}
		ptr = strings.TrimPrefix(ref, "#")
	}
	return ptr, nil, false
}

// answer is one real exchange.
type answer struct {
	status int
	header http.Header
	body   []byte
	// sent is the request's body and its media type.
	sent, sentType string
}

// check validates a real answer against the operation method template.
func (d *openAPIDoc) check(t *testing.T, method, template string, a answer) {
	t.Helper()
	op := strings.ToUpper(method) + " " + template
	d.called[op] = true
	opPtr := "/paths/" + pointer(template) + "/" + strings.ToLower(method)
	respPtr := opPtr + "/responses/" + strconv.Itoa(a.status)
	if _, ok := d.lookup(opPtr); !ok {
		// A method the path does not list: 405, documented once (in
		// info.description: plain text on the WeChat callback, whose
		// caller is WeChat, a problem everywhere else).
		if _, ok := d.lookup("/paths/" + pointer(template)); !ok || a.status != http.StatusMethodNotAllowed {
			t.Errorf("%s: not documented (answered %d)", op, a.status)
			return
		}
		delete(d.called, op)
		respPtr = "/components/responses/MethodNotAllowed"
		if strings.HasPrefix(template, "/wechat/") {
			respPtr = "/components/responses/TextMethodNotAllowed"
		}
	}
	if a.status < 300 && a.sent != "" {
		// A request that succeeded is one the document allows.
		d.checkRequest(t, op, opPtr, a)
	}
	respPtr, resp, ok := d.deref(respPtr)
	if !ok {
		t.Errorf("%s answered %d, which is not documented (body %.300s)", op, a.status, a.body)
		return
	}
	where := fmt.Sprintf("%s %d", op, a.status)
	if headers, ok := resp["headers"].(map[string]any); ok {
		for name := range headers {
			hPtr, h, ok := d.deref(respPtr + "/headers/" + pointer(name))
			if !ok {
				t.Errorf("%s: header %s: bad reference", where, name)
				continue
			}
			got := a.header.Get(name)
			if got == "" {
				if req, _ := h["required"].(bool); req {
					t.Errorf("%s: the answer lacks the required header %s", where, name)
				}
				continue
			}
			var value any = got
			if n, err := strconv.Atoi(got); err == nil {
				value = json.Number(strconv.Itoa(n))
			}
			d.validate(t, where+" header "+name, hPtr+"/schema", value)
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(a.body) == 0 && len(content) == 0 {
		return
	}
	ct := a.header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Errorf("%s: Content-Type %q: %v", where, ct, err)
		return
	}
	if _, ok := content[mt]; !ok {
		t.Errorf("%s: content type %s is not documented (documented: %v; body %.300s)", where, mt, keys(content), a.body)
		return
	}
	schemaPtr := respPtr + "/content/" + pointer(mt) + "/schema"
	if _, ok := d.lookup(schemaPtr); !ok {
		return
	}
	var value any
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		if value, err = jsonschema.UnmarshalJSON(bytes.NewReader(a.body)); err != nil {
			t.Errorf("%s: body is not JSON: %v: %.300s", where, err, a.body)
			return
		}
	} else if strings.HasPrefix(mt, "text/") || mt == "application/xml" {
		value = string(a.body)
	} else {
		return // binary: the content type is what can be checked
	}
	d.validate(t, where, schemaPtr, value)
}

// checkRequest validates a JSON request body against the operation's
// requestBody.
func (d *openAPIDoc) checkRequest(t *testing.T, op, opPtr string, a answer) {
	t.Helper()
	bodyPtr, body, ok := d.deref(opPtr + "/requestBody")
	if !ok {
		t.Errorf("%s: a request body was accepted but none is documented", op)
		return
	}
	mt, _, _ := mime.ParseMediaType(a.sentType)
	content, _ := body["content"].(map[string]any)
	if _, ok := content[mt]; !ok {
		t.Errorf("%s: request content type %s is not documented (documented: %v)", op, mt, keys(content))
		return
	}
	if mt != "application/json" {
		return
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(a.sent))
	if err != nil {
		t.Errorf("%s: request body is not JSON: %v", op, err)
		return
	}
	d.validate(t, op+" request", bodyPtr+"/content/application~1json/schema", v)
}

func (d *openAPIDoc) validate(t *testing.T, where, ptr string, value any) {
	t.Helper()
	sch, err := d.compiler.Compile(openAPIURL + "#" + ptr)
	if err != nil {
		t.Errorf("%s: compile the schema at %s: %v", where, ptr, err)
		return
	}
	if err := sch.Validate(value); err != nil {
		t.Errorf("%s: the answer does not match the documented schema: %v", where, err)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// operations lists every documented "METHOD /template".
func (d *openAPIDoc) operations() []string {
	var ops []string
	for path, item := range d.root["paths"].(map[string]any) {
		for m := range item.(map[string]any) {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				ops = append(ops, strings.ToUpper(m)+" "+path)
			}
		}
	}
	sort.Strings(ops)
	return ops
}

// notExercised are the documented operations this test cannot call for
// real, and why.
var notExercised = map[string]string{}

// firstRateLimited sends GET url from n goroutines, each at most max
// times, and returns the first 429 answer.
func firstRateLimited(c *http.Client, url string, n, max int) (answer, bool) {
	found := make(chan answer, n)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < max && !stop.Load(); i++ {
				resp, err := c.Get(url)
				if err != nil {
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusTooManyRequests {
					stop.Store(true)
					found <- answer{status: resp.StatusCode, header: resp.Header, body: b}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case a := <-found:
		return a, true
	default:
		return answer{}, false
	}
}

// bound is a value at a query parameter's documented bound and one beyond.
type bound struct {
	name, what, at, beyond string
}

// queryBounds returns the bounds the document gives the query parameters
// of an operation: maxLength of a string, minimum and maximum of an
// integer. It fails when there are none, so that a document that lost them
// is noticed.
func (d *openAPIDoc) queryBounds(t *testing.T, method, template string) []bound {
	t.Helper()
	opPtr := "/paths/" + pointer(template) + "/" + strings.ToLower(method)
	params, _ := d.lookup(opPtr + "/parameters")
	list, _ := params.([]any)
	var out []bound
	for i := range list {
		_, p, ok := d.deref(fmt.Sprintf("%s/parameters/%d", opPtr, i))
		if !ok || p["in"] != "query" {
			continue
		}
		name, _ := p["name"].(string)
		sch, _ := p["schema"].(map[string]any)
		num := func(k string) (int, bool) {
			n, ok := sch[k].(json.Number)
			if !ok {
				return 0, false
			}
			v, err := n.Int64()
			return int(v), err == nil
		}
		if n, ok := num("maxLength"); ok {
			out = append(out, bound{name, fmt.Sprintf("maxLength %d", n), strings.Repeat("字", n), strings.Repeat("字", n+1)})
		}
		if n, ok := num("maximum"); ok {
			out = append(out, bound{name, fmt.Sprintf("maximum %d", n), strconv.Itoa(n), strconv.Itoa(n + 1)})
		}
		if n, ok := num("minimum"); ok {
			out = append(out, bound{name, fmt.Sprintf("minimum %d", n), strconv.Itoa(n), strconv.Itoa(n - 1)})
		}
	}
	if len(out) == 0 {
		t.Errorf("%s %s: the document gives no query parameter a bound", method, template)
	}
	return out
}

// signedText is a text message from openid, signed and encrypted as
// WeChat's safe mode does.
func signedText(t *testing.T, openid, text string) (url.Values, []byte) {
	t.Helper()
	codec, err := wechat.NewCodec(edgeToken, edgeAppID, edgeAESKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	plain := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_edge]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId></xml>`, openid, now, text, now)
	q, body, err := codec.SignCallback(wechat.ModeSafe, []byte(plain), openid, fmt.Sprint(now), "t-"+openid)
	if err != nil {
		t.Fatal(err)
	}
	return q, body
}

// client sends requests to the running role.
type apiClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (c apiClient) do(method, path, auth string, header http.Header, body io.Reader) answer {
	c.t.Helper()
	var sent []byte
	if body != nil {
		sent, _ = io.ReadAll(body)
		body = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b, sent: string(sent), sentType: req.Header.Get("Content-Type")}
}

func jsonBody(v any) (http.Header, io.Reader) {
	b, _ := json.Marshal(v)
	return http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(b)
}

func TestOpenAPIAgainstTheRunningHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kefu all")
	}
	doc := loadOpenAPI(t)
	tc := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(tc.Close)
	tc.Generate(3, 1)
	r := startAll(t, map[string]string{
		"KEFU_ADMIN_TOKEN": testAdmin, "KEFU_API_TOKEN": testReadOnly,
		"KEFU_TUCAO_PRODUCT_ID": tc.ProductID(), "KEFU_TUCAO_SECRET": tc.Secret(), "KEFU_TUCAO_API_BASE": tc.URL(),
		"KEFU_TUCAO_POLL_INTERVAL": "1h", "KEFU_PUBLIC_URL": "https://kefu.example.com", "KEFU_PUBLIC_RATE_LIMIT": "100",
	})
	jar, _ := cookiejar.New(nil)
	c := apiClient{t: t, base: r.base, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	call := func(method, template, path, auth string, header http.Header, body io.Reader) answer {
		t.Helper()
		a := c.do(method, path, auth, header, body)
		doc.check(t, method, template, a)
		return a
	}
	get := func(template, path, auth string) answer {
		t.Helper()
		return call("GET", template, path, auth, nil, nil)
	}
	send := func(method, template, path, auth string, v any) answer {
		t.Helper()
		h, b := jsonBody(v)
		return call(method, template, path, auth, h, b)
	}
	expect := func(a answer, want int, what string) {
		t.Helper()
		if a.status != want {
			t.Errorf("%s: %d, want %d: %.300s", what, a.status, want, a.body)
		}
	}

	// Probes and metrics.
	expect(get("/healthz", "/healthz", ""), 200, "healthz")
	expect(get("/readyz", "/readyz", ""), 200, "readyz")
	expect(get("/readyz", "/readyz", testReadOnly), 200, "readyz with a token")
	expect(get("/metrics", "/metrics", ""), 200, "metrics")

	// The queue (estimator, queue care): 503 until the first poll.
	if err := r.fake.AddAgent("a1@edge", "Agent One"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := get("/api/kf/queue", "/api/kf/queue", testReadOnly)
		if a.status == 200 || time.Now().After(deadline) {
			expect(a, 200, "queue after the first poll")
			break
		}
		expect(a, 503, "queue before the first poll")
		time.Sleep(200 * time.Millisecond)
	}
	expect(get("/api/kf/queue", "/api/kf/queue", ""), 401, "queue without a token")
	expect(call("DELETE", "/api/kf/queue", "/api/kf/queue", testAdmin, nil, nil), 405, "DELETE queue")
	expect(get("/api/kf/customers/{openid}", "/api/kf/customers/o-nobody", testReadOnly), 404, "unknown customer")
	expect(get("/api/kf/customers/{openid}", "/api/kf/customers/bad.id", testReadOnly), 400, "malformed openid")
	if a := get("/api/kf/stale", "/api/kf/stale", testReadOnly); a.status != 200 && a.status != 503 {
		t.Errorf("stale: %d", a.status)
	}

	// The admin API.
	const acct, acct2 = "new1@edge", "new2@edge"
	expect(get("/api/kf/accounts", "/api/kf/accounts", testReadOnly), 200, "list accounts")
	expect(send("POST", "/api/kf/accounts", "/api/kf/accounts", testAdmin, map[string]string{"kf_account": acct, "nickname": "New", "password": "pw"}), 201, "add account")
	expect(send("POST", "/api/kf/accounts", "/api/kf/accounts", testAdmin, map[string]string{"kf_account": acct2, "nickname": "Two"}), 201, "add account 2")
	expect(send("POST", "/api/kf/accounts", "/api/kf/accounts", testReadOnly, map[string]string{"kf_account": acct}), 403, "add account, read-only token")
	expect(send("POST", "/api/kf/accounts", "/api/kf/accounts", testAdmin+"x", map[string]string{"kf_account": acct}), 401, "add account, wrong token")
	expect(send("POST", "/api/kf/accounts", "/api/kf/accounts", testAdmin, map[string]string{"kf_accont": acct}), 400, "add account, misspelt field")
	expect(get("/api/kf/accounts", "/api/kf/accounts", testReadOnly), 200, "list accounts")
	expect(send("PUT", "/api/kf/accounts/{account}", "/api/kf/accounts/"+acct, testAdmin, map[string]string{"nickname": "Renamed"}), 200, "update account")
	expect(send("PUT", "/api/kf/accounts/{account}", "/api/kf/accounts/"+acct, testAdmin, map[string]string{"kf_account": acct2}), 400, "update account, other account in body")
	{
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("media", "a.jpg")
		fw.Write([]byte("\xff\xd8\xff\xe0 not much of a jpeg"))
		mw.Close()
		a := call("POST", "/api/kf/accounts/{account}/avatar", "/api/kf/accounts/"+acct+"/avatar", testAdmin,
			http.Header{"Content-Type": {mw.FormDataContentType()}}, &buf)
		if a.status != 200 && a.status != 502 {
			t.Errorf("avatar: %d %s", a.status, a.body)
		}
		expect(call("POST", "/api/kf/accounts/{account}/avatar", "/api/kf/accounts/"+acct+"/avatar", testAdmin,
			http.Header{"Content-Type": {"text/plain"}}, strings.NewReader("x")), 400, "avatar, not multipart")
	}
	if a := send("POST", "/api/kf/accounts/{account}/invite", "/api/kf/accounts/"+acct+"/invite", testAdmin, map[string]string{"invite_wx": "wxid_someone"}); a.status != 200 && a.status != 502 {
		t.Errorf("invite: %d %s", a.status, a.body)
	}
	expect(send("POST", "/api/kf/accounts/{account}/invite", "/api/kf/accounts/"+acct+"/invite", testAdmin, map[string]string{}), 400, "invite without invite_wx")
	expect(get("/api/kf/online", "/api/kf/online", testReadOnly), 200, "online")
	expect(get("/api/kf/waiting", "/api/kf/waiting", testReadOnly), 200, "waiting")
	expect(get("/api/kf/sessions", "/api/kf/sessions?kf="+url.QueryEscape(acct), testReadOnly), 200, "sessions of an agent")
	expect(get("/api/kf/sessions", "/api/kf/sessions", testReadOnly), 400, "sessions without kf")
	// A customer waits; nobody is online to take them, then a1 is.
	if err := r.fake.TransferToQueue("o-customer-1", ""); err != nil {
		t.Fatal(err)
	}
	expect(send("POST", "/api/kf/groups", "/api/kf/groups", testAdmin, map[string]any{"name": "g0", "members": []string{"a1@edge"}}), 201, "create group g0")
	expect(send("POST", "/api/kf/sessions", "/api/kf/sessions", testAdmin, map[string]string{"openid": "o-customer-1", "group": "g0"}), 409, "create a session with nobody of the group online")
	expect(send("POST", "/api/kf/sessions", "/api/kf/sessions", testAdmin, map[string]string{"openid": "o-customer-1"}), 400, "create a session for nobody")
	expect(get("/api/kf/sessions/{openid}", "/api/kf/sessions/o-unknown", testReadOnly), 502, "session of an unknown customer (WeChat's 40003)")
	if err := r.fake.SetAgentStatus("a1@edge", 1); err != nil {
		t.Fatal(err)
	}
	expect(send("POST", "/api/kf/sessions", "/api/kf/sessions", testAdmin, map[string]string{"openid": "o-customer-1", "kf_account": "a1@edge"}), 201, "create a session")
	expect(send("POST", "/api/kf/sessions", "/api/kf/sessions", testAdmin, map[string]string{"openid": "o-customer-1", "kf": acct, "kf_account": acct2}), 400, "create session, kf and kf_account differ")
	expect(get("/api/kf/sessions/{openid}", "/api/kf/sessions/o-customer-1", testReadOnly), 200, "get session")
	expect(send("POST", "/api/kf/sessions/close", "/api/kf/sessions/close", testAdmin, map[string]string{"openid": "o-customer-1", "kf_account": "a1@edge"}), 200, "close a session")
	expect(send("POST", "/api/kf/sessions/close", "/api/kf/sessions/close", testAdmin, map[string]string{"openid": "o-customer-1", "group": "g"}), 400, "close with a group")
	expect(send("POST", "/api/kf/groups", "/api/kf/groups", testAdmin, map[string]any{"name": "g1", "keywords": []string{"refund"}, "members": []string{acct}}), 201, "create group")
	expect(send("POST", "/api/kf/groups", "/api/kf/groups", testAdmin, map[string]any{"name": "g1"}), 409, "create group twice")
	expect(get("/api/kf/groups", "/api/kf/groups", testReadOnly), 200, "list groups")
	expect(get("/api/kf/groups/{name}", "/api/kf/groups/g1", testReadOnly), 200, "get group")
	expect(get("/api/kf/groups/{name}", "/api/kf/groups/nope", testReadOnly), 404, "get unknown group")
	expect(send("PUT", "/api/kf/groups/{name}/keywords", "/api/kf/groups/g1/keywords", testAdmin, map[string]any{"keywords": []string{"invoice"}}), 200, "set keywords")
	expect(send("PUT", "/api/kf/groups/{name}/keywords", "/api/kf/groups/g1/keywords", testAdmin, map[string]any{}), 400, "set keywords without keywords")
	expect(send("POST", "/api/kf/groups/{name}/members", "/api/kf/groups/g1/members", testAdmin, map[string]any{"members": []string{acct2}}), 200, "add members")
	expect(send("POST", "/api/kf/groups/{name}/members", "/api/kf/groups/g1/members", testAdmin, map[string]any{"members": []string{"no-at-sign"}}), 400, "add a malformed member")
	expect(call("DELETE", "/api/kf/groups/{name}/members/{account}", "/api/kf/groups/g1/members/"+acct2, testAdmin, nil, nil), 200, "remove a member")
	expect(send("POST", "/api/kf/groups/{name}/members", "/api/kf/groups/g1/members", testAdmin, map[string]any{"members": []string{acct2}}), 200, "add members again")
	expect(call("DELETE", "/api/kf/groups/{name}/members", "/api/kf/groups/g1/members?account="+url.QueryEscape(acct)+"&account="+url.QueryEscape(acct2), testAdmin, nil, nil), 200, "remove members")
	expect(call("DELETE", "/api/kf/groups/{name}/members", "/api/kf/groups/g1/members", testAdmin, nil, nil), 400, "remove members without account")
	expect(call("DELETE", "/api/kf/groups/{name}", "/api/kf/groups/g1", testAdmin, nil, nil), 200, "delete group")
	expect(call("DELETE", "/api/kf/groups/{name}", "/api/kf/groups/g1", testAdmin, nil, nil), 404, "delete group twice")
	expect(call("DELETE", "/api/kf/accounts/{account}", "/api/kf/accounts/"+acct2, testAdmin, nil, nil), 200, "delete account")
	expect(call("DELETE", "/api/kf/accounts/{account}", "/api/kf/accounts/"+acct2, testReadOnly, nil, nil), 403, "delete account, read-only token")

	// The feedback store.
	expect(get("/api/feedback/posts", "/api/feedback/posts?limit=10", testReadOnly), 200, "posts")
	expect(get("/api/feedback/posts", "/api/feedback/posts?limit=0", testReadOnly), 400, "posts, limit 0")
	expect(call("POST", "/api/feedback/posts", "/api/feedback/posts", testAdmin, nil, nil), 405, "POST posts")
	expect(get("/api/feedback/sessions", "/api/feedback/sessions?from=2025-03-01&to=2025-03-01", testReadOnly), 200, "sessions")
	expect(get("/api/feedback/sessions", "/api/feedback/sessions?from=yesterday", testReadOnly), 400, "sessions, bad from")

	// The bounds the document gives the query parameters are the
	// handlers': a value at the bound is taken, one beyond it refused,
	// naming the parameter.
	for _, path := range []string{"/api/feedback/posts", "/api/feedback/sessions"} {
		for _, b := range doc.queryBounds(t, "GET", path) {
			at := get(path, path+"?"+url.Values{b.name: {b.at}}.Encode(), testReadOnly)
			beyond := get(path, path+"?"+url.Values{b.name: {b.beyond}}.Encode(), testReadOnly)
			expect(beyond, 400, fmt.Sprintf("%s %s beyond its bound (%s)", path, b.name, b.what))
			var pa, pb struct{ Param, Detail string }
			json.Unmarshal(at.body, &pa)
			json.Unmarshal(beyond.body, &pb)
			if beyond.status == 400 && pb.Param != b.name {
				t.Errorf("%s %s beyond its bound: param %q, want %q", path, b.name, pb.Param, b.name)
			}
			// At the bound the value is taken, or refused for another
			// reason than its size (a cursor of the right length that is
			// no cursor).
			if at.status != 200 && (at.status != 400 || pa.Detail == pb.Detail) {
				t.Errorf("%s %s at its bound (%s): %d %s", path, b.name, b.what, at.status, at.body)
			}
		}
	}

	// The console.
	expect(get("/console", "/console", ""), 301, "console redirect")
	expect(get("/console/", "/console/", ""), 200, "console page")
	expect(get("/console/api/me", "/console/api/me", ""), 401, "me before signing in")
	expect(send("POST", "/console/api/login", "/console/api/login", "", map[string]string{"token": "wrong"}), 401, "login, wrong token")
	expect(send("POST", "/console/api/login", "/console/api/login", "", map[string]string{}), 400, "login, nothing")
	login := send("POST", "/console/api/login", "/console/api/login", "", map[string]string{"token": testAdmin})
	expect(login, 200, "login")
	var sess struct{ CSRF string }
	json.Unmarshal(login.body, &sess)
	csrf := http.Header{"X-Kefu-Csrf": {sess.CSRF}, "Content-Type": {"application/json"}}
	post := func(template string, v any, header http.Header) answer {
		t.Helper()
		if v == nil {
			return call("POST", template, template, "", header, nil)
		}
		b, _ := json.Marshal(v)
		return call("POST", template, template, "", header, bytes.NewReader(b))
	}
	expect(get("/console/api/me", "/console/api/me", ""), 200, "me")
	expect(get("/console/api/state", "/console/api/state", ""), 200, "state")
	{
		// The stream never ends by itself: read its start only.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", r.base+"/console/api/events", nil)
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 8)
		io.ReadFull(resp.Body, head)
		cancel()
		resp.Body.Close()
		doc.check(t, "GET", "/console/api/events", answer{status: resp.StatusCode, header: resp.Header})
		expect(answer{status: resp.StatusCode}, 200, "events")
	}
	expect(post("/console/api/feedback", map[string]string{"q": "a"}, csrf), 200, "console feedback")
	expect(post("/console/api/feedback", map[string]string{"q": "a"}, http.Header{"Content-Type": {"application/json"}}), 403, "console feedback without CSRF")
	expect(post("/console/api/feedback", map[string]string{"openid": strings.Repeat("o", 129)}, csrf), 400, "console feedback, long openid")
	expect(post("/console/api/kf/groups", map[string]any{"name": "cg"}, csrf), 201, "console: create group")
	expect(post("/console/api/kf/groups/keywords", map[string]any{"name": "cg", "keywords": []string{"x"}}, csrf), 200, "console: keywords")
	expect(post("/console/api/kf/groups/members", map[string]any{"name": "cg", "members": []string{acct}}, csrf), 200, "console: add member")
	expect(post("/console/api/kf/groups/members/remove", map[string]any{"name": "cg", "account": acct}, csrf), 200, "console: remove member")
	expect(post("/console/api/kf/groups/members/remove", map[string]any{"name": "cg"}, csrf), 400, "console: remove member without account")
	expect(post("/console/api/kf/groups/delete", map[string]any{"name": "cg"}, csrf), 200, "console: delete group")
	expect(post("/console/api/kf/groups/delete", map[string]any{"name": "cg"}, csrf), 404, "console: delete group twice")
	if err := r.fake.TransferToQueue("o-customer-2", ""); err != nil {
		t.Fatal(err)
	}
	expect(post("/console/api/kf/sessions", map[string]any{"openid": "o-customer-2", "kf_account": "a1@edge"}, csrf), 201, "console: create a session")
	expect(post("/console/api/kf/sessions/close", map[string]any{"openid": "o-customer-2", "kf_account": "a1@edge"}, csrf), 200, "console: close the session")
	expect(post("/console/api/kf/sessions/close", map[string]any{"openid": "o-unknown", "kf_account": "a1@edge"}, csrf), 502, "console: close a session WeChat does not know")
	expect(post("/console/api/logout", nil, csrf), 204, "logout")
	expect(post("/console/api/kf/groups", map[string]any{"name": "cg"}, csrf), 401, "console action after logout")
	expect(call("DELETE", "/api/kf/accounts/{account}", "/api/kf/accounts/"+acct, testAdmin, nil, nil), 200, "delete account")

	// The pages customers open.
	expect(get("/feedback/avatar.png", "/feedback/avatar.png", ""), 200, "avatar")
	{
		// Links signed as the notifier signs them (the key derives from
		// the AppSecret when KEFU_FEEDBACK_LINK_SECRET is unset).
		keys, err := feedbacklink.NewKeys("", edgeSecret)
		if err != nil {
			t.Fatal(err)
		}
		fresh := feedbacklink.NewSigner(keys, time.Hour, time.Now).Token("o-openapi-1")
		stale := feedbacklink.NewSigner(keys, time.Hour, func() time.Time { return time.Now().Add(-48 * time.Hour) }).Token("o-openapi-1")
		expect(get("/feedback/{token}", "/feedback/"+fresh, ""), 200, "feedback page")
		expect(get("/feedback/{token}", "/feedback/"+stale, ""), 410, "feedback page, expired link")
		expect(get("/feedback/{token}", "/feedback/not-a-token", ""), 400, "feedback page, bad link")
	}

	// The WeChat callback, in safe mode as startAll configures it.
	{
		crypter, err := wechat.NewCrypter(edgeAESKey, edgeAppID)
		if err != nil {
			t.Fatal(err)
		}
		echo, err := crypter.Encrypt([]byte("echo-42"))
		if err != nil {
			t.Fatal(err)
		}
		ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), "n-verify"
		q := url.Values{"signature": {wechat.Signature(edgeToken, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce},
			"echostr": {echo}, "encrypt_type": {"aes"}, "msg_signature": {wechat.MsgSignature(edgeToken, ts, nonce, echo)}}
		a := get("/wechat/callback", "/wechat/callback?"+q.Encode(), "")
		expect(a, 200, "URL verification")
		if string(a.body) != "echo-42" {
			t.Errorf("URL verification answered %q", a.body)
		}
		q.Set("msg_signature", strings.Repeat("0", 40))
		expect(get("/wechat/callback", "/wechat/callback?"+q.Encode(), ""), 401, "URL verification, bad signature")
		cq, body := signedEvent(t, "o-openapi-1")
		expect(call("POST", "/wechat/callback", "/wechat/callback?"+cq.Encode(), "", http.Header{"Content-Type": {"text/xml"}}, bytes.NewReader(body)), 200, "callback")
		// A text message: ingest hands the customer to 多客服 (an XML
		// reply, sealed) and queue care starts following them.
		tq, tbody := signedText(t, "o-openapi-2", "hello")
		a = call("POST", "/wechat/callback", "/wechat/callback?"+tq.Encode(), "", http.Header{"Content-Type": {"text/xml"}}, bytes.NewReader(tbody))
		expect(a, 200, "text message callback")
		deadline := time.Now().Add(10 * time.Second)
		for {
			a := get("/api/kf/customers/{openid}", "/api/kf/customers/o-openapi-2", testReadOnly)
			if a.status == 200 || time.Now().After(deadline) {
				expect(a, 200, "the state of a customer who joined the queue")
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		expect(call("PUT", "/wechat/callback", "/wechat/callback", "", nil, nil), 405, "PUT callback")
		cq.Set("msg_signature", strings.Repeat("0", 40))
		expect(call("POST", "/wechat/callback", "/wechat/callback?"+cq.Encode(), "", http.Header{"Content-Type": {"text/xml"}}, bytes.NewReader(body)), 401, "callback, bad signature")
	}

	// The Tucao webhook (no secret configured).
	expect(call("POST", "/tucao/webhook", "/tucao/webhook", "", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"type":"webhook.test"}`)), 200, "webhook")
	expect(call("POST", "/tucao/webhook", "/tucao/webhook", "", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{not json`)), 400, "webhook, bad JSON")
	expect(get("/tucao/webhook", "/tucao/webhook", ""), 405, "GET webhook")

	// Last, since it spends this client's budget: over the public rate
	// limit (KEFU_PUBLIC_RATE_LIMIT, burst twice the rate). Eight clients
	// at once ask for the cheapest public path, so that even a slow machine
	// outruns the refill.
	if a, ok := firstRateLimited(c.c, r.base+"/feedback/avatar.png", 8, 1000); ok {
		doc.check(t, "GET", "/feedback/avatar.png", a)
	} else {
		t.Error("8000 requests were never rate limited")
	}

	// The webhook behind KEFU_TUCAO_WEBHOOK_SECRET: an ingest role of its own.
	{
		const secret = "hook-openapi-0123456789"
		httpAddr := freeAddr(t)
		for k, v := range map[string]string{"KEFU_HTTP_ADDR": httpAddr, "KEFU_NATS_LISTEN": "127.0.0.1:0", "KEFU_DATA_DIR": t.TempDir(),
			"KEFU_TUCAO_WEBHOOK_SECRET": secret} {
			t.Setenv(k, v)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"ingest"}, io.Discard, io.Discard) }()
		waitHTTP(t, "http://"+httpAddr+"/healthz", 200)
		ic := apiClient{t: t, base: "http://" + httpAddr, c: c.c}
		hook := func(template, path string, want int) {
			t.Helper()
			a := ic.do("POST", path, "", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"type":"webhook.test"}`))
			doc.check(t, "POST", template, a)
			expect(a, want, "POST "+path)
		}
		hook("/tucao/webhook/{secret}", "/tucao/webhook/"+secret, 200)
		hook("/tucao/webhook/{secret}", "/tucao/webhook/not-the-secret", 404)
		hook("/tucao/webhook", "/tucao/webhook", 404)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ingest: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("ingest did not stop")
		}
	}

	// Every documented operation was called, or says why it cannot be.
	for _, op := range doc.operations() {
		if !doc.called[op] && notExercised[op] == "" {
			t.Errorf("%s is documented but this test never calls it", op)
		}
	}
}

// The probes' failures, which a healthy kefu all never shows: a runtime
// whose database check fails, then whose NATS server went away.
func TestOpenAPIProbeFailures(t *testing.T) {
	doc := loadOpenAPI(t)
	b, srv := bustest.Open(t, bustest.Config(func(c *bus.Config) { c.Logger, c.Registerer = zap.NewNop(), prometheus.NewRegistry() }))
	rt := &runtime{cfg: config.Config{AdminToken: testAdmin, APIToken: testReadOnly, NATSDownLimit: time.Millisecond}, bus: b,
		log: zap.NewNop(), checks: []readyChecker{failingCheck{errors.New("postgres: connection refused")}}}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", rt.readyz)
	mux.HandleFunc("/healthz", rt.healthz)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	c := apiClient{t: t, base: hs.URL, c: hs.Client()}
	probe := func(path, auth string, want int) {
		t.Helper()
		a := c.do("GET", path, auth, nil, nil)
		doc.check(t, "GET", path, a)
		if a.status != want {
			t.Errorf("%s: %d, want %d: %s", path, a.status, want, a.body)
		}
	}
	probe("/readyz", "", 503)
	probe("/readyz", testReadOnly, 503)
	probe("/healthz", "", 200)

	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.Eventually(t, 10*time.Second, func() bool { return c.do("GET", "/healthz", "", nil, nil).status == 503 },
		"/healthz answering 503 once the NATS server is gone")
	probe("/healthz", "", 503)
	probe("/readyz", testAdmin, 503)
}
