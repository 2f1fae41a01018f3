package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kefu-io/kefu/internal/demo"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// chromiumPath finds Debian's chromium (or Chrome); the browser tests skip
// without one, saying how to install it.
func chromiumPath(t testing.TB) string {
	for _, name := range []string{os.Getenv("KEFU_TEST_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium found: apt-get install -y chromium fonts-noto-cjk (or set KEFU_TEST_CHROMIUM)")
	return ""
}

// newBrowser starts one headless chromium with a fresh profile.
func newBrowser(t testing.TB, path string) (context.Context, context.CancelFunc) {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	return ctx, func() { cancel(); cancelAlloc() }
}

// The console on the demo's simulated desk, in a real browser: a customer
// joins and appears with an estimate without a reload, an agent accepting
// them moves them to served, a Tucao post appears, an admin closes a
// session and the simulated WeChat records it, a read-only user sees no
// actions; the screenshot the README shows is taken on the way.
func TestConsoleInABrowser(t *testing.T) {
	browserPath := chromiumPath(t)
	desk := make(chan *demo.Env, 1)
	saved := demoTraffic
	demoTraffic = func(d *demo.Env, ctx context.Context) error {
		// Three agents, one chat each, busy: whoever comes next waits.
		for i, a := range []struct{ account, nick string }{{"xiaowang", "小王"}, {"xiaoli", "小李"}, {"xiaozhang", "小张"}} {
			account := a.account + "@" + demo.WeChatID
			if err := d.WeChat().AddAgent(account, a.nick); err != nil {
				return err
			}
			d.WeChat().SetAutoAccept(account, 1)
			d.WeChat().SetAgentStatus(account, wechattest.StatusPC)
			if err := d.WeChat().TransferToQueue(fmt.Sprintf("o-served-%d", i+1), ""); err != nil {
				return err
			}
		}
		desk <- d
		return nil
	}
	t.Cleanup(func() { demoTraffic = saved })
	t.Setenv("KEFU_HTTP_ADDR", freeAddr(t))
	t.Setenv("KEFU_NATS_LISTEN", "127.0.0.1:0")
	t.Setenv("KEFU_DATA_DIR", t.TempDir())
	t.Setenv("KEFU_LOG_LEVEL", "error")
	t.Setenv("KEFU_ADMIN_TOKEN", "")
	t.Setenv("KEFU_API_TOKEN", "")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &lockedBuffer{}
	go func() { done <- run(ctx, []string{"demo"}, out, io.Discard) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop")
		}
	})
	var d *demo.Env
	select {
	case d = <-desk:
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not start")
	}
	links := regexp.MustCompile(`(?m)^    (admin|read-only): +(http://\S+/console/#code=\S+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(links) != 2 {
		t.Fatalf("the demo printed no sign-in links:\n%s", out.String())
	}
	adminLink, readLink := links[0][2], links[1][2]
	if strings.Contains(out.String(), "/console/?") {
		t.Error("a console link carries a query string (it would reach access logs)")
	}

	bctx, cancel := newBrowser(t, browserPath)
	defer cancel()
	bctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			html, _ := chromedp.Run(context.WithoutCancel(bctx), chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("%s: %v\npage: %.3000s", what, err, html)
		}
	}
	// poll waits until the JavaScript expression is true.
	poll := func(what, expr string) {
		t.Helper()
		run(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(30*time.Second)))
	}
	evalString := func(what, expr string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	evalInt := func(what, expr string, opts ...chromedp.EvaluateOption) int {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[int](expr, opts...))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	row := func(openid string) string {
		return `document.querySelector('#queue-body .tr[data-openid="` + openid + `"]')`
	}

	run("open the admin sign-in link", chromedp.Navigate(adminLink))
	poll("the console shows the desk", `document.body.dataset.ready === "1" && document.querySelectorAll('#agents .agent').length === 3 && document.querySelectorAll('#agents .sessions li[data-openid]').length === 3`)
	if href := evalString("the address", `location.href`); strings.Contains(href, "code=") {
		t.Errorf("the sign-in code stayed in the address bar: %s", href)
	}
	evalInt("mark the page", `window.notReloaded = 1`)

	// A customer joins: they appear with an estimate, pushed live.
	if err := d.WeChat().TransferToQueue("o-browser-join", ""); err != nil {
		t.Fatal(err)
	}
	poll("the customer appears with an estimate", row("o-browser-join")+` && `+row("o-browser-join")+`.querySelector('.est') !== null`)
	estimate := evalString("read the estimate", row("o-browser-join")+`.querySelector('.c-est').textContent`)
	if !strings.Contains(estimate, "P90") {
		t.Errorf("estimate %q has no P90 band", estimate)
	}

	// An agent accepts them: they move to served.
	if err := d.WeChat().CloseSession("o-served-1"); err != nil {
		t.Fatal(err)
	}
	poll("the customer moves to served", row("o-browser-join")+` === null && document.querySelector('#served-list li[data-openid="o-browser-join"]') !== null`)

	// A Tucao post appears.
	d.Tucao().AddPost(tucaotest.PostInput{Content: "排队时间比预计的短，客服很耐心", OpenID: "o-browser-join", NickName: "测试用户"})
	poll("the post appears", `Array.from(document.querySelectorAll('#posts .post')).some(p => p.textContent.includes('排队时间比预计的短'))`)

	// Fill the queue for the screenshot: more customers wait.
	for i := 1; i <= 6; i++ {
		d.WeChat().TransferToQueue(fmt.Sprintf("o-waiting-%02d", i), "")
	}
	d.Tucao().AddPost(tucaotest.PostInput{Content: "退款流程能不能简化一下", OpenID: "o-served-2", NickName: "访客"})
	poll("the queue fills", `document.querySelectorAll('#queue-body .tr .est').length === 6 && document.querySelectorAll('#posts .post').length === 2`)
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("../../docs/console.png", png, 0o644); err != nil {
		t.Fatal(err)
	}

	// The admin closes the session: the simulated WeChat records the close.
	closes := d.WeChat().CallCount(wechattest.MethodSessionClose)
	button := `#agents button.close-session[data-openid="o-browser-join"]`
	run("press close twice (ask, then close)", chromedp.Click(chromedp.CSS(button)), chromedp.Click(chromedp.CSS(button)))
	poll("the console says it is done", `document.querySelector('#action-result').classList.contains('ok')`)
	if got := d.WeChat().CallCount(wechattest.MethodSessionClose); got != closes+1 {
		t.Fatalf("kfsession/close calls: %d, want %d", got, closes+1)
	}
	for _, s := range d.WeChat().Snapshot().Sessions {
		if s.OpenID == "o-browser-join" {
			t.Fatalf("the simulated WeChat still has the session: %+v", s)
		}
	}
	poll("the session leaves the agent", `document.querySelector('#agents .sessions li[data-openid="o-browser-join"]') === null`)
	if evalInt("no reload happened", `window.notReloaded === 1 ? 0 : 1`) != 0 {
		t.Error("the page reloaded")
	}

	// A read-only user sees no actions, and the server refuses them.
	adminActions := evalInt("count the admin's actions", `document.querySelectorAll('.action').length + (document.querySelector('#actions').hidden ? 0 : 1)`)
	if adminActions < 2 {
		t.Fatalf("the admin sees %d actions: the read-only check below would prove nothing", adminActions)
	}
	run("sign out", chromedp.Click(chromedp.CSS("#logout")))
	poll("the sign-in form", `!document.querySelector('#signin').hidden`)
	run("open the read-only link", chromedp.Navigate(readLink))
	poll("the read-only console", `document.body.dataset.ready === "1" && document.querySelectorAll('#agents .sessions li[data-openid]').length >= 3`)
	readActions := evalInt("count the read-only actions", `document.querySelectorAll('.action').length + (document.querySelector('#actions').hidden ? 0 : 1)`)
	if readActions != 0 {
		t.Errorf("the read-only user sees %d actions", readActions)
	}
	status := evalInt("a forged action from the read-only page", `window.KEFU.api("api/kf/sessions/close", {openid: "o-served-2", kf_account: "xiaoli@kefudemo"}).then(() => 200, e => e.status)`,
		chromedp.EvalAwaitPromise)
	if status != 403 {
		t.Errorf("the read-only user's action answered %d, want 403", status)
	}

	// Chinese by default, English a click away.
	poll("Chinese by default", `document.documentElement.lang === "zh-CN" && document.querySelector('[data-i18n=queue]').textContent === "排队"`)
	run("switch to English", chromedp.Click(chromedp.CSS("#lang")))
	poll("English", `document.documentElement.lang === "en" && document.querySelector('[data-i18n=queue]').textContent === "Queue" && document.querySelector('#lang').textContent === "中文"`)
}
