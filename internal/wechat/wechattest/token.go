package wechattest

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// tokenGrace is how long WeChat keeps an access token valid after
// cgi-bin/token handed out a newer one, and how long before its expiry
// stable_token starts handing out the next one.
const tokenGrace = 5 * time.Minute

type accessToken struct {
	expiresAt time.Time
	revokedAt time.Time // zero while not revoked; valid before this instant
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// handleToken serves GET cgi-bin/token. Each call issues a new token and
// leaves the previous one valid for five more minutes, as documented; the
// stable token is independent of it.
func (s *Server) handleToken(r *http.Request, _ []byte) (any, *APIError) {
	q := r.URL.Query()
	switch {
	case q.Get("grant_type") != "client_credential":
		return nil, apiErr(CodeInvalidGrantType, "")
	case q.Get("appid") != s.cfg.AppID:
		return nil, apiErr(CodeInvalidAppID, "")
	case q.Get("secret") != s.cfg.AppSecret:
		// cgi-bin/token answers a wrong secret with 40001, the same code as
		// a bad token: a client that refreshes on 40001 must not loop on it.
		return nil, apiErr(CodeInvalidCredential, "invalid appsecret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if old, ok := s.tokens[s.latestToken]; ok {
		if grace := now.Add(tokenGrace); old.revokedAt.IsZero() || grace.Before(old.revokedAt) {
			old.revokedAt = grace
		}
	}
	value := s.mintTokenLocked(now)
	s.latestToken = value
	return tokenResponse{AccessToken: value, ExpiresIn: int64(s.cfg.TokenLifetime / time.Second)}, nil
}

type stableTokenRequest struct {
	GrantType    string `json:"grant_type"`
	AppID        string `json:"appid"`
	Secret       string `json:"secret"`
	ForceRefresh bool   `json:"force_refresh"`
}

// Limits of stable_token's forced refresh for one appid, as documented:
// one per 30 s (45011 otherwise) and 20 a day (45009).
const (
	forceInterval = 30 * time.Second
	forcePerDay   = 20
)

// handleStableToken serves POST cgi-bin/stable_token. In normal mode it
// returns the current token until five minutes before its expiry; with
// force_refresh it issues a new one and the previous one stops working at
// once, within the forced-refresh limits.
func (s *Server) handleStableToken(_ *http.Request, body []byte) (any, *APIError) {
	var req stableTokenRequest
	if e := decodeJSONBody(body, &req); e != nil {
		return nil, e
	}
	switch {
	case req.GrantType != "client_credential":
		return nil, apiErr(CodeInvalidGrantType, "")
	case req.AppID != s.cfg.AppID:
		return nil, apiErr(CodeInvalidAppID, "")
	case req.Secret != s.cfg.AppSecret:
		return nil, apiErr(CodeInvalidAppSecret, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if req.ForceRefresh {
		s.forceRequests++
		if e := s.takeForceLocked(now); e != nil {
			return nil, e
		}
		return s.forceStableLocked(now), nil
	}
	cur, ok := s.tokens[s.stableToken]
	if ok && tokenUsable(cur, now) && cur.expiresAt.Sub(now) > tokenGrace {
		s.tokenFetches++
		return tokenResponse{AccessToken: s.stableToken, ExpiresIn: int64(cur.expiresAt.Sub(now) / time.Second)}, nil
	}
	s.stableToken = s.mintTokenLocked(now)
	return tokenResponse{AccessToken: s.stableToken, ExpiresIn: int64(s.cfg.TokenLifetime / time.Second)}, nil
}

// takeForceLocked counts a forced refresh against the limits, or answers
// the code WeChat gives when it is over them.
func (s *Server) takeForceLocked(now time.Time) *APIError {
	kept := s.forces[:0]
	for _, t := range s.forces {
		if now.Sub(t) < 24*time.Hour {
			kept = append(kept, t)
		}
	}
	s.forces = kept
	if n := len(s.forces); n > 0 && now.Sub(s.forces[n-1]) < forceInterval {
		return apiErr(CodeFrequencyLimit, "api minute-quota reach limit, force refresh at most once per 30 s")
	}
	if len(s.forces) >= forcePerDay {
		return apiErr(CodeDailyQuota, "api daily quota reached for force refresh")
	}
	s.forces = append(s.forces, now)
	return nil
}

// forceStableLocked revokes the current stable token and issues a new one.
func (s *Server) forceStableLocked(now time.Time) tokenResponse {
	if cur, ok := s.tokens[s.stableToken]; ok && (cur.revokedAt.IsZero() || now.Before(cur.revokedAt)) {
		cur.revokedAt = now
	}
	s.stableToken = s.mintTokenLocked(now)
	return tokenResponse{AccessToken: s.stableToken, ExpiresIn: int64(s.cfg.TokenLifetime / time.Second)}
}

// ForceRefreshByOtherSystem does what another system sharing the appid does
// with stable_token and force_refresh: the current stable token stops
// working at once and a new one is current, which stable_token without
// force then returns. It counts against the daily and 30-second limits of
// forced refreshes like any other, and fails as WeChat would beyond them.
// It returns the new token.
func (s *Server) ForceRefreshByOtherSystem() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	if e := s.takeForceLocked(now); e != nil {
		return "", e
	}
	return s.forceStableLocked(now).AccessToken, nil
}

// ForceRefreshRequests returns how many stable_token requests with
// force_refresh the API received (ForceRefreshByOtherSystem not included),
// refused ones included.
func (s *Server) ForceRefreshRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forceRequests
}

// StableToken returns the current stable token ("" before the first).
func (s *Server) StableToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stableToken
}

func tokenUsable(t *accessToken, now time.Time) bool {
	return (t.revokedAt.IsZero() || now.Before(t.revokedAt)) && now.Before(t.expiresAt)
}

// mintTokenLocked issues a token, counts the fetch and forgets tokens that
// have been dead for an hour (they then answer 40001 like any unknown token).
func (s *Server) mintTokenLocked(now time.Time) string {
	for v, t := range s.tokens {
		dead := t.expiresAt
		if !t.revokedAt.IsZero() && t.revokedAt.Before(dead) {
			dead = t.revokedAt
		}
		if now.Sub(dead) > time.Hour {
			delete(s.tokens, v)
		}
	}
	var b [96]byte
	_, _ = rand.Read(b[:])
	value := strings.NewReplacer("-", "_").Replace(base64.RawURLEncoding.EncodeToString(b[:]))
	s.tokens[value] = &accessToken{expiresAt: now.Add(s.cfg.TokenLifetime)}
	s.tokenFetches++
	return value
}

// checkAccessToken maps a token to WeChat's answer: missing 41001, unknown
// or superseded 40001, past its lifetime 42001.
func (s *Server) checkAccessToken(value string) *APIError {
	if value == "" {
		return apiErr(CodeMissingAccessToken, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	t, ok := s.tokens[value]
	switch {
	case !ok:
		return apiErr(CodeInvalidCredential, "")
	case !t.revokedAt.IsZero() && !now.Before(t.revokedAt):
		return apiErr(CodeInvalidCredential, "")
	case !now.Before(t.expiresAt):
		return apiErr(CodeAccessTokenExpired, "")
	}
	return nil
}

// ExpireTokens ends the lifetime of every token issued so far: calls with
// them answer 42001 and stable_token issues a new one.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for _, t := range s.tokens {
		if t.expiresAt.After(now) {
			t.expiresAt = now
		}
	}
}

// InvalidateTokens revokes every token issued so far, as if another process
// had fetched a new one: calls with them answer 40001.
func (s *Server) InvalidateTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for _, t := range s.tokens {
		if t.revokedAt.IsZero() || t.revokedAt.After(now) {
			t.revokedAt = now
		}
	}
}

// TokenFetches returns how many tokens cgi-bin/token and stable_token have
// handed out (a stable_token call returning the current token counts too).
func (s *Server) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenFetches
}
