package notifier

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/feedbacklink"
)

// The feedback link.
//
// A customer-service message can only carry a link, while Tucao logs a
// user in through a form POST of openid, nickname and avatar to
// https://support.qq.com/product/{id}. So the closed-session message links
// to a page of ours, GET {PublicURL}/feedback/{token}, which answers with a
// form that posts itself to Tucao. Tucao takes the posted openid as the
// user's identity, so the form posts the customer's pseudonym, never the
// WeChat openid, and the token carries the pseudonym and an expiry, signed:
// without the signature anyone could post feedback in another customer's
// name by editing the link. Token and pseudonym are package feedbacklink's.
//
// The link sent when a session closes names that session in its token;
// the form passes it to Tucao as customInfo (feedbacklink.CustomInfo:
// kefu's session id, the agent, the close time — no openid), which Tucao
// returns as the "extra" of the posts the customer writes, so the feedback
// store links them to exactly that session.

const (
	feedbackPathPrefix = feedbacklink.PagePath
	avatarPath         = "/feedback/avatar.png"
)

// Errors of a feedback token.
var (
	ErrBadToken     = feedbacklink.ErrBadToken
	ErrExpiredToken = feedbacklink.ErrExpiredToken
)

// FeedbackURL is the feedback link of a customer as the closed-session
// message carries it; "" when no Tucao product is configured.
func (s *Service) FeedbackURL(openid string) string {
	link, _ := s.feedbackURL(openid, nil)
	return link
}

// feedbackURL is the link a closed-session message carries: our page with
// a signed token, or the bare Tucao page when no public URL is configured.
// redacted is the same link with the token blanked, for events and logs,
// which must not hand out a working login. sess, when not nil, is the
// session the link is about.
func (s *Service) feedbackURL(openid string, sess *feedbacklink.Session) (link, redacted string) {
	return s.feedback.URL(openid, sess)
}

func (s *Service) tucaoPage() string { return s.feedback.TucaoPage() }

// LinksConfig is the part of cfg that makes the feedback links, with now
// as their clock.
func LinksConfig(cfg Config, now func() time.Time) feedbacklink.LinksConfig {
	cfg.setDefaults()
	return feedbacklink.LinksConfig{PublicURL: cfg.PublicURL, TucaoURL: cfg.TucaoURL, ProductID: cfg.TucaoProductID,
		LinkSecret: cfg.FeedbackLinkSecret, WeChatSecret: cfg.WeChatSecret, TTL: cfg.FeedbackLinkTTL, Now: now}
}

var feedbackPage = template.Must(template.New("feedback").Parse(`<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style>body{font-family:-apple-system,BlinkMacSystemFont,"PingFang SC","Microsoft YaHei",sans-serif;margin:3em 1.5em;text-align:center;color:#333}button,a.button{font-size:1.1em;padding:.6em 1.6em;border:0;border-radius:6px;background:#07c160;color:#fff;text-decoration:none}</style>
</head>
<body>
{{- if .Action}}
<form id="tucao" method="post" action="{{.Action}}">
<input type="hidden" name="openid" value="{{.Pseudonym}}">
<input type="hidden" name="nickname" value="{{.Nickname}}">
<input type="hidden" name="avatar" value="{{.Avatar}}">
{{- if .CustomInfo}}
<input type="hidden" name="customInfo" value="{{.CustomInfo}}">
{{- end}}
<p>正在打开反馈页面……</p>
<button type="submit">继续</button>
</form>
<script>` + autoSubmitScript + `</script>
{{- else}}
<p>{{.Message}}</p>
{{- if .Fallback}}<p><a class="button" href="{{.Fallback}}">匿名反馈</a></p>{{end}}
{{- end}}
</body>
</html>
`))

const autoSubmitScript = `document.getElementById("tucao").submit();`

// pageCSP allows exactly the one inline script above and a form post to
// Tucao's origin; nothing else loads, and the page cannot be framed.
func pageCSP(tucaoURL string) string {
	origin := "'none'"
	if u, err := url.Parse(tucaoURL); err == nil {
		origin = u.Scheme + "://" + u.Host
	}
	sum := sha256.Sum256([]byte(autoSubmitScript))
	return "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" +
		base64.StdEncoding.EncodeToString(sum[:]) + "'; form-action " + origin + "; frame-ancestors 'none'; base-uri 'none'"
}

type pageData struct {
	Title, Message, Fallback string
	// Pseudonym goes into Tucao's openid field: it is the customer's
	// identity there, and it is not the WeChat openid.
	Action, Pseudonym string
	Nickname, Avatar  string
	// CustomInfo names the session the link was sent for; Tucao returns
	// it as the post's extra.
	CustomInfo string
}

// serveFeedback answers GET /feedback/{token}: a valid token gives the
// auto-posting form, a bad one 400 and an expired one 410 (with a link to
// post anonymously instead). A token issued before pseudonyms (with the
// openid in it) posts the pseudonym too.
func (s *Service) serveFeedback(w http.ResponseWriter, r *http.Request) {
	if s.links == nil || s.cfg.TucaoProductID == "" {
		http.NotFound(w, r)
		return
	}
	link, err := s.links.VerifyLink(r.PathValue("token"))
	switch {
	case errors.Is(err, ErrExpiredToken):
		s.metrics.feedbackPages.WithLabelValues("expired").Inc()
		s.writePage(w, http.StatusGone, pageData{Title: "链接已过期", Message: "这个反馈链接已过期。", Fallback: s.tucaoPage()})
	case err != nil:
		s.metrics.feedbackPages.WithLabelValues("bad").Inc()
		s.writePage(w, http.StatusBadRequest, pageData{Title: "链接无效", Message: "这个反馈链接无效，请从客服消息中重新打开。"})
	default:
		s.metrics.feedbackPages.WithLabelValues("ok").Inc()
		s.writePage(w, http.StatusOK, pageData{Title: "意见反馈", Action: s.tucaoPage(), Pseudonym: link.Pseudonym,
			Nickname: s.cfg.FeedbackNickname, Avatar: s.cfg.FeedbackAvatarURL, CustomInfo: feedbacklink.CustomInfo(link.Session)})
	}
}

func (s *Service) writePage(w http.ResponseWriter, status int, data pageData) {
	var buf bytes.Buffer
	if err := feedbackPage.Execute(&buf, data); err != nil {
		s.log.Error("render feedback page", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The token is a login: keep it out of caches and of the Referer
	// header Tucao would otherwise receive.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// avatarPNG is the default avatar customers appear with on Tucao, which
// requires one: a plain green disc, generated rather than shipped as a file.
var avatarPNG = func() []byte {
	const size = 96
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	green := color.NRGBA{0x07, 0xc1, 0x60, 0xff}
	c := float64(size-1) / 2
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			if dx, dy := float64(x)-c, float64(y)-c; dx*dx+dy*dy <= c*c {
				img.Set(x, y, green)
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(fmt.Sprintf("encode avatar: %v", err))
	}
	return b.Bytes()
}()

func serveAvatar(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(avatarPNG)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Routes registers the feedback link page (GET /feedback/{token}) and the
// default avatar it hands to Tucao (GET /feedback/avatar.png).
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+avatarPath, serveAvatar)
	mux.HandleFunc("GET "+feedbackPathPrefix+"{token}", s.serveFeedback)
}
