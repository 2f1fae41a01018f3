package feedbacklink

import (
	"net/url"
	"strings"
	"time"
)

// PagePath is the path of kefu's feedback page; a link is PublicURL +
// PagePath + token.
const PagePath = "/feedback/"

// LinksConfig is what the links are made of: the notifier's settings
// KEFU_PUBLIC_URL, KEFU_TUCAO_URL, KEFU_FEEDBACK_LINK_SECRET and
// KEFU_FEEDBACK_LINK_TTL, with KEFU_TUCAO_PRODUCT_ID and KEFU_WECHAT_SECRET.
type LinksConfig struct {
	// PublicURL is where kefu serves the feedback page; without it links
	// go straight to Tucao, anonymously.
	PublicURL string
	// TucaoURL is the base of Tucao's product pages, ending in "/".
	TucaoURL  string
	ProductID string
	// LinkSecret and WeChatSecret give the keys (NewKeys).
	LinkSecret, WeChatSecret string
	TTL                      time.Duration
	// Now is the clock of the tokens' expiry; default time.Now.
	Now func() time.Time
}

// Links makes the feedback links kefu sends customers: the notifier when a
// session closes, queue care with its goodbye to a stale session. Built
// once from the settings, so both hand out the same links.
type Links struct {
	signer   *Signer // nil: links go straight to Tucao
	pageBase string  // PublicURL + PagePath
	tucao    string  // the product's Tucao page; "" without a product
}

// NewLinks checks the keys and builds the links. Without a product there
// are no links; without a public URL they are the Tucao page itself.
func NewLinks(c LinksConfig) (*Links, error) {
	l := &Links{}
	if c.ProductID == "" {
		return l, nil
	}
	l.tucao = c.TucaoURL + url.PathEscape(c.ProductID)
	if c.PublicURL == "" {
		return l, nil
	}
	keys, err := NewKeys(c.LinkSecret, c.WeChatSecret)
	if err != nil {
		return nil, err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	l.signer = NewSigner(keys, c.TTL, c.Now)
	l.pageBase = c.PublicURL + PagePath
	return l, nil
}

// URL is the link a message to openid carries, naming sess when not nil;
// redacted is the same with the token blanked, for events and logs, which
// must not hand out a working login. Both are "" without a product.
func (l *Links) URL(openid string, sess *Session) (link, redacted string) {
	if l.signer == nil {
		return l.tucao, l.tucao
	}
	return l.pageBase + l.signer.SessionToken(openid, sess), l.pageBase + "REDACTED"
}

// Link is the feedback link of openid, naming no session.
func (l *Links) Link(openid string) string {
	link, _ := l.URL(openid, nil)
	return link
}

// Signer checks the tokens of the page; nil when kefu serves no page.
func (l *Links) Signer() *Signer { return l.signer }

// TucaoPage is the product's page on Tucao, the anonymous way to give
// feedback; "" without a product.
func (l *Links) TucaoPage() string { return l.tucao }

// Redact blanks the signed token of one of kefu's feedback links
// (…/feedback/<token>) for events: anyone holding it could post as the
// customer. A plain Tucao link carries no secret and stays.
func Redact(link string) string {
	if i := strings.LastIndexByte(link, '/'); i >= 0 && i < len(link)-1 && strings.HasSuffix(link[:i+1], PagePath) {
		return link[:i+1] + "REDACTED"
	}
	return link
}
