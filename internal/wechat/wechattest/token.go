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

// handleStableToken serves POST cgi-bin/stable_token. In normal mode it
// returns the current token until five minutes before its expiry; with
// force_refresh it issues a new one and the previous one stops working at
// once.
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
	cur, ok := s.tokens[s.stableToken]
	if ok && !req.ForceRefresh && tokenUsable(cur, now) && cur.expiresAt.Sub(now) > tokenGrace {
		s.tokenFetches++
		return tokenResponse{AccessToken: s.stableToken, ExpiresIn: int64(cur.expiresAt.Sub(now) / time.Second)}, nil
	}
	if ok && req.ForceRefresh {
		cur.revokedAt = now
	}
	s.stableToken = s.mintTokenLocked(now)
	return tokenResponse{AccessToken: s.stableToken, ExpiresIn: int64(s.cfg.TokenLifetime / time.Second)}, nil
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
