package app

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpedge"
)

// edge is the one handler in front of rt.mux, so that no service can
// register a route that escapes it:
//
//   - every /api/ path, whichever service registered it, answers only to a
//     bearer token (httpedge.Tokens.Guard; 404 when none is configured);
//   - /healthz and /metrics are served as they are (probes and scrapers);
//   - everything else — the public paths /wechat/callback, /tucao/webhook…
//     and /feedback/…, /readyz, and unknown paths — goes through the
//     per-client rate limit (KEFU_PUBLIC_RATE_LIMIT).
//
// A path is under /api/ when the request's path is, or when the route that
// would serve it is (the mux's own answer, so a path it cleans or matches
// differently cannot slip past).
func (rt *runtime) edge() http.Handler {
	// Under /api/ a path or method no route takes is answered a problem,
	// like every other error of the JSON APIs.
	api := rt.apiTokens().Guard(httpapi.Routes(rt.mux))
	limited := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kefu_http_rate_limited_total",
		Help: "Requests to public paths refused with 429 because their client exceeded KEFU_PUBLIC_RATE_LIMIT.",
	})
	rt.registry.MustRegister(limited)
	limiter := httpedge.NewLimiter(httpedge.LimiterConfig{
		Rate: rt.cfg.PublicRateLimit, Trusted: rt.cfg.TrustedProxies, OnReject: limited.Inc,
	})
	public := limiter.Handler(rt.mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := rt.mux.Handler(r)
		switch {
		case isAPIPath(r.URL.Path) || isAPIPath(patternPath(pattern)):
			api.ServeHTTP(w, r)
		case r.URL.Path == "/healthz" || r.URL.Path == "/metrics":
			rt.mux.ServeHTTP(w, r)
		default:
			public.ServeHTTP(w, r)
		}
	})
}

func isAPIPath(p string) bool { return p == "/api" || strings.HasPrefix(p, "/api/") }

// patternPath is the path of a ServeMux pattern such as
// "GET example.com/api/kf/customers/{openid}".
func patternPath(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}
