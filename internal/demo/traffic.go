package demo

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// Simulate starts agents, arriving customers and other traffic; it is the
// traffic Start runs unless the Host gives its own.
func (d *Env) Simulate(ctx context.Context) error {
	for _, a := range []struct{ account, nick string }{{"xiaowang", "小王"}, {"xiaoli", "小李"}, {"xiaozhang", "小张"}} {
		account := a.account + "@" + WeChatID
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
		Seed: uint64(time.Now().UnixNano()), Speed: speed, SwitchProb: 0.15, ForgetProb: 0.04,
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
func (d *Env) otherTraffic(ctx context.Context) {
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
