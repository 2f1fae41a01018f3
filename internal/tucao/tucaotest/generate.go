package tucaotest

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

var (
	feedbackTopics = []string{
		"支付成功了但是订单一直显示待付款", "客服半天没有人回复", "退款申请提交三天了还没到账",
		"页面加载很慢，经常转圈", "优惠券领取后在结算页用不了", "希望增加夜间模式",
		"收货地址无法修改", "登录时验证码收不到", "商品详情图片显示不全",
		"物流信息好几天没有更新", "会员积分没有到账", "发票怎么开，找不到入口",
		"小程序闪退，iPhone 上必现", "建议支持按价格排序", "客服态度很好，问题解决了，点赞",
		"消息通知太多了，能不能关掉一部分", "下单后想改规格找不到地方", "安卓版本上传图片失败",
	}
	feedbackDetails = []string{
		"", "麻烦尽快处理一下。", "已经是第二次遇到了。", "截图已经上传。", "谢谢！",
		"联系电话在订单里。", "希望能给个答复。", "昨天晚上开始出现的。",
	}
	nickNames = []string{
		"小橘子", "阿杰", "Lily", "风一样的男子", "王女士", "#゛~", "老张", "momo", "晴天", "陈先生",
		"一只猫", "Kevin", "小鱼儿", "路人甲",
	}
	adminAnswers = []string{
		"您好，已经反馈给技术同学排查，请留意后续通知。", "您好，退款会在 1-3 个工作日内原路退回。",
		"感谢建议，我们会评估。", "您好，请提供一下订单号，我们帮您查询。", "问题已修复，请更新到最新版本后再试。",
	}
)

const openIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// Generate adds n realistic posts and returns them, oldest first. The same
// seed gives the same content, users, replies and flags. Creation times end
// at the server's clock and go back a few minutes to a few hours between
// posts, so a few hundred posts span several days (useful for from/to);
// about a third of the posts get an admin reply, some a user follow-up,
// some flags. Generate is meant for a server without newer posts (see
// PostInput.CreatedAt).
func (s *Server) Generate(n int, seed int64) []tucao.Post {
	if n <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
	users := make([]struct{ openid, nick string }, n/3+1)
	for i := range users {
		users[i].openid = fakeOpenID(rng)
		users[i].nick = nickNames[rng.IntN(len(nickNames))]
	}
	gaps := make([]time.Duration, n)
	var span time.Duration
	for i := range gaps {
		gaps[i] = time.Duration(2+rng.IntN(240)) * time.Minute
		span += gaps[i]
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	at := now.Add(-span)
	out := make([]tucao.Post, 0, n)
	for i := range n {
		at = at.Add(gaps[i])
		u := users[rng.IntN(len(users))]
		content := feedbackTopics[rng.IntN(len(feedbackTopics))] + feedbackDetails[rng.IntN(len(feedbackDetails))]
		var images []string
		if rng.IntN(5) == 0 {
			images = []string{"https://txc.qq.com/static/upload/" + fakeOpenID(rng)[1:13] + ".png"}
		}
		extra, _ := json.Marshal(map[string]string{"clientInfo": []string{"iPhone", "Android", "PC"}[rng.IntN(3)]})
		ps := s.addPostLocked(PostInput{
			Content: content, OpenID: u.openid, NickName: u.nick, CreatedAt: at,
			Images: images, Extra: extra,
		})
		// Replies come after the post and before now.
		replyAt := func() time.Time {
			room := now.Sub(ps.created)
			if room <= time.Second {
				return now
			}
			return ps.created.Add(time.Duration(rng.Int64N(int64(min(room, 6*time.Hour)))))
		}
		if rng.IntN(3) == 0 {
			s.addReplyLocked(ps, ReplyInput{
				Content: adminAnswers[rng.IntN(len(adminAnswers))], OpenID: "admin", NickName: "管理员",
				IsAdmin: true, CreatedAt: replyAt(),
			})
			if rng.IntN(4) == 0 {
				s.addReplyLocked(ps, ReplyInput{Content: "好的，谢谢", OpenID: u.openid, NickName: u.nick, CreatedAt: now})
			}
		}
		ps.post.IsTodo = rng.IntN(6) == 0
		ps.post.IsGood = rng.IntN(15) == 0
		ps.post.LikeCount = rng.IntN(4)
		out = append(out, render(ps, now))
	}
	return out
}

// fakeOpenID looks like a WeChat openid: "o" and 27 URL-safe characters.
func fakeOpenID(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteByte('o')
	for range 27 {
		b.WriteByte(openIDAlphabet[rng.IntN(len(openIDAlphabet))])
	}
	return b.String()
}
