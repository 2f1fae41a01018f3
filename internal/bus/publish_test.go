package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

// An event over the server's max_payload is ErrTooLarge (callers refuse
// it rather than retry for ever), nothing is stored, and the connection
// stays usable for the next event.
func TestOversizeEventIsErrTooLargeAndTheConnectionSurvives(t *testing.T) {
	b := openBus(t)
	if b.MaxPayload() <= 0 {
		t.Fatalf("MaxPayload %d", b.MaxPayload())
	}
	ctx := context.Background()
	big := events.MessageReceived{MsgType: "text", Content: strings.Repeat("a", int(b.MaxPayload()))}
	_, err := b.Publish(ctx, big, bus.Envelope{ID: "big", Source: "kefu/test"})
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("oversize publish: %v, want ErrTooLarge", err)
	}
	// A body under the limit whose headers take it over is refused too.
	_, err = b.PublishRaw(ctx, "kefu.wechat.message.text", make([]byte, b.MaxPayload()-64), bus.Envelope{ID: "almost", Source: "kefu/test"})
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("body plus headers over the limit: %v, want ErrTooLarge", err)
	}
	p := publish(t, b, "o-after")
	s, _ := bus.JetStream(b).Stream(ctx, events.StreamWeChat)
	info, _ := s.Info(ctx)
	if p.Sequence != 1 || info.State.Msgs != 1 {
		t.Fatalf("after the refusal: seq %d, %d stored; want only the later event", p.Sequence, info.State.Msgs)
	}
}

// The callback-signature bucket forgets entries after the de-duplication
// window, which Open takes from the configuration.
func TestCallbackSigsBucketFollowsTheDuplicateWindow(t *testing.T) {
	srv := natstest.Run(t, nil)
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}, DuplicateWindow: 11 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.DuplicateWindow() != 11*time.Minute {
		t.Fatalf("DuplicateWindow %v", b.DuplicateWindow())
	}
	kv, err := b.KeyValue(context.Background(), bus.BucketCallbackSigs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil || st.TTL() != 11*time.Minute {
		t.Fatalf("TTL %v, %v", st.TTL(), err)
	}
	if err := b.EnsureStreams(context.Background(), events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	s, _ := bus.JetStream(b).Stream(context.Background(), events.StreamWeChat)
	info, _ := s.Info(context.Background())
	if info.Config.Duplicates != 11*time.Minute {
		t.Fatalf("stream duplicate window %v", info.Config.Duplicates)
	}
}
