package feedback_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	wx "github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/services/notifier"
)

// startLinkNotifier runs what sends the feedback link: the fake WeChat,
// where the agents exist and the customer wrote to the account (opening
// their 48-hour window), and the notifier on b with its pages served over
// TLS as in production (Tucao takes only an https avatar), pointing at
// Tucao tc. It returns the fake (its Sent record) and the pages' server.
func startLinkNotifier(t *testing.T, ctx context.Context, b *bus.Bus, tc *tucaotest.Server, openid string, agents map[string]string) (*wechattest.Server, *httptest.Server) {
	t.Helper()
	weixin, err := wechattest.New(wechattest.Config{AppID: "wx-e2e", AppSecret: "e2e-secret", Token: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	wxWeb := httptest.NewServer(weixin)
	t.Cleanup(func() { wxWeb.Close(); weixin.Close() })
	for account, nickname := range agents {
		if err := weixin.AddAgent(account, nickname); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := weixin.CustomerMessage(ctx, openid, "你好"); err != nil {
		t.Fatal(err)
	}
	tokens, err := wx.NewMemoryTokenSource(&wx.StableTokenFetcher{BaseURL: wxWeb.URL, AppID: "wx-e2e", Secret: "e2e-secret"}, wx.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := wx.NewClient(wx.ClientConfig{BaseURL: wxWeb.URL, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	web := httptest.NewTLSServer(mux)
	t.Cleanup(web.Close)
	n, err := notifier.New(notifier.Config{
		Instance: "e2e", RateLimit: -1,
		PublicURL: web.URL, TucaoProductID: tc.ProductID(), TucaoURL: tc.URL() + "/product/",
		FeedbackLinkSecret: linkSecret,
	}, notifier.Deps{Bus: b, Sender: client})
	if err != nil {
		t.Fatal(err)
	}
	n.Routes(mux)
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	return weixin, web
}
