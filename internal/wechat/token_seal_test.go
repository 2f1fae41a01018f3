package wechat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/wechat"
)

func sealKey(t *testing.T, secret string) []byte {
	t.Helper()
	k, err := wechat.TokenSealKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealedSource(t *testing.T, kv jetstream.KeyValue, appID string, f wechat.TokenFetcher, clock *fakeClock, key []byte) *wechat.KVTokenSource {
	t.Helper()
	src, err := wechat.NewKVTokenSource(kv, f, wechat.TokenOptions{AppID: appID, Now: clock.Now, PollInterval: 10 * time.Millisecond,
		LocalCacheTTL: time.Nanosecond, SealKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// The whole token-source contract holds with the token sealed, as kefu
// runs it.
func TestKVTokenSourceContractSealed(t *testing.T) {
	srv, _ := tokenBucket(t)
	var n atomic.Int32
	key := sealKey(t, "contract-secret")
	testTokenSourceContract(t, func(t *testing.T, f wechat.TokenFetcher, clock *fakeClock) wechat.TokenSource {
		return newSealedSource(t, processKV(t, srv), fmt.Sprintf("wxsealed%d", n.Add(1)), f, clock, key)
	})
}

func TestTokenSealKey(t *testing.T) {
	a, b := sealKey(t, "secret-a"), sealKey(t, "secret-b")
	if len(a) != 32 || bytes.Equal(a, b) || !bytes.Equal(a, sealKey(t, "secret-a")) {
		t.Errorf("keys %x, %x: want 32 bytes, deterministic per secret, different between secrets", a, b)
	}
	if bytes.Contains(a, []byte("secret-a")) {
		t.Error("the key contains the secret")
	}
	if _, err := wechat.TokenSealKey(""); err == nil {
		t.Error("an empty AppSecret gave a key")
	}
}

// Whoever reads the bucket sees when the token was fetched and expires,
// never the token; every process with the AppSecret reads it without a
// second fetch.
func TestKVTokenSourceStoresTheTokenSealed(t *testing.T) {
	srv, kv := tokenBucket(t)
	clock := newFakeClock()
	f := &countingFetcher{}
	key := sealKey(t, "the-app-secret")
	tok, err := newSealedSource(t, processKV(t, srv), "wxseal", f, clock, key).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), "wxseal")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(entry.Value(), []byte(tok)) {
		t.Fatalf("the bucket holds the token %q in clear: %s", tok, entry.Value())
	}
	var stored map[string]any
	if err := json.Unmarshal(entry.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored["token"]; ok {
		t.Errorf("stored value has a token field: %s", entry.Value())
	}
	if s, _ := stored["sealed_token"].(string); s == "" || stored["expires_at"] == nil {
		t.Errorf("stored value %s lacks sealed_token or expires_at", entry.Value())
	}
	got, err := newSealedSource(t, processKV(t, srv), "wxseal", f, clock, sealKey(t, "the-app-secret")).Token(context.Background())
	if err != nil || got != tok {
		t.Errorf("another process with the same AppSecret read %q, %v; want %q", got, err, tok)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d fetches, want 1: the second process must read the sealed token", n)
	}
}

// A value the source cannot open is a missing token: it fetches a new one
// and overwrites the value, so a changed AppSecret or a tampered value
// repairs itself instead of failing every call.
func TestKVTokenSourceRefetchesWhatItCannotOpen(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		spoil  func(t *testing.T, kv jetstream.KeyValue, sealed []byte)
		reader []byte
	}{
		{"another AppSecret", func(*testing.T, jetstream.KeyValue, []byte) {}, sealKey(t, "rotated-secret")},
		{"a changed ciphertext", func(t *testing.T, kv jetstream.KeyValue, sealed []byte) {
			var v map[string]any
			json.Unmarshal(sealed, &v)
			s := []byte(v["sealed_token"].(string))
			s[len(s)/2] ^= 'A' ^ 'B' // another character, never the same one
			v["sealed_token"] = string(s)
			b, _ := json.Marshal(v)
			if _, err := kv.Put(ctx, "wxspoil", b); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"another appid's value", func(t *testing.T, kv jetstream.KeyValue, _ []byte) {
			other, err := kv.Get(ctx, "wxother")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(ctx, "wxspoil", other.Value()); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"not JSON", func(t *testing.T, kv jetstream.KeyValue, _ []byte) {
			if _, err := kv.Put(ctx, "wxspoil", []byte("\x00garbage")); err != nil {
				t.Fatal(err)
			}
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, kv := tokenBucket(t)
			clock := newFakeClock()
			key := sealKey(t, "the-app-secret")
			f := &countingFetcher{}
			if _, err := newSealedSource(t, processKV(t, srv), "wxother", &countingFetcher{}, clock, key).Token(ctx); err != nil {
				t.Fatal(err)
			}
			first, err := newSealedSource(t, processKV(t, srv), "wxspoil", f, clock, key).Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			entry, err := kv.Get(ctx, "wxspoil")
			if err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, kv, entry.Value())
			readerKey := key
			if tc.reader != nil {
				readerKey = tc.reader
			}
			got, err := newSealedSource(t, processKV(t, srv), "wxspoil", f, clock, readerKey).Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n := f.calls.Load(); n != 2 {
				t.Errorf("%d fetches, want 2: the unreadable value must be replaced by a fetch", n)
			}
			if got == first {
				t.Errorf("got the first token %q back from an unreadable value", got)
			}
			// Repaired: the reader's key opens what is stored now.
			again, err := newSealedSource(t, processKV(t, srv), "wxspoil", f, clock, readerKey).Token(ctx)
			if err != nil || again != got || f.calls.Load() != 2 {
				t.Errorf("after the repair: %q, %v, %d fetches; want %q without a fetch", again, err, f.calls.Load(), got)
			}
		})
	}
}

// A value written in clear (before sealing, or by a process of an older
// version during a rolling upgrade) is still read, and the next refresh
// stores it sealed.
func TestKVTokenSourceReadsATokenStoredInClear(t *testing.T) {
	srv, kv := tokenBucket(t)
	clock := newFakeClock()
	f := &countingFetcher{}
	ctx := context.Background()
	plain, err := wechat.NewKVTokenSource(processKV(t, srv), f, wechat.TokenOptions{AppID: "wxclear", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := plain.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if entry, _ := kv.Get(ctx, "wxclear"); entry == nil || !bytes.Contains(entry.Value(), []byte(`"token":"`+tok+`"`)) {
		t.Fatalf("without a key the token is stored in clear; got %v", entry)
	}
	sealed := newSealedSource(t, processKV(t, srv), "wxclear", f, clock, sealKey(t, "s"))
	if got, err := sealed.Token(ctx); err != nil || got != tok || f.calls.Load() != 1 {
		t.Fatalf("sealed source read %q, %v after %d fetches; want %q without a fetch", got, err, f.calls.Load(), tok)
	}
	clock.Advance(2 * time.Hour)
	next, err := sealed.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "wxclear")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(entry.Value(), []byte(next)) || !bytes.Contains(entry.Value(), []byte("sealed_token")) {
		t.Errorf("after the refresh the bucket holds %s; want the new token %q sealed", entry.Value(), next)
	}
}
