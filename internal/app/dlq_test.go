package app

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

func TestDLQCommandLineMistakes(t *testing.T) {
	// Nothing listens here: a usage error must not even try to connect.
	t.Setenv("KEFU_NATS_URL", "nats://127.0.0.1:1")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "a subcommand is required"},
		{[]string{"dlq", "purge", "--role", "feedback"}, `unknown subcommand "purge"`},
		{[]string{"dlq", "list"}, "--role is required"},
		{[]string{"dlq", "list", "--role", "feed.back"}, "is not a role name"},
		{[]string{"dlq", "list", "--role", "feedback", "--colour"}, "flag provided but not defined"},
		{[]string{"dlq", "list", "--role", "feedback", "--subject", "kefu..post"}, "is not a subject"},
		{[]string{"dlq", "list", "--role", "feedback", "--subject", "kefu.>.post"}, "is not a subject"},
		{[]string{"dlq", "show", "--role", "feedback"}, "show needs --seq"},
		{[]string{"dlq", "show", "--role", "feedback", "--seq", "x"}, "not a positive sequence number"},
		{[]string{"dlq", "show", "--role", "feedback", "--seq", "0"}, "not a positive sequence number"},
		{[]string{"dlq", "redrive", "--role", "feedback", "--seq", "3", "--subject", "kefu.>"}, "exclude each other"},
		{[]string{"dlq", "redrive", "--role", "feedback", "extra"}, `unexpected argument "extra"`},
	} {
		var stderr bytes.Buffer
		if code := Main(tt.args, io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", tt.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: stderr %q does not say %q", tt.args, stderr.String(), tt.want)
		}
	}
	var stdout bytes.Buffer
	if code := Main([]string{"dlq", "--help"}, &stdout, io.Discard); code != 0 || !strings.Contains(stdout.String(), "kefu dlq redrive") {
		t.Errorf("--help: exit %d, %q", code, stdout.String())
	}
}

// rejectingStore refuses one post until the bug behind it is fixed, as a
// store that wrongly rejected valid data would.
type rejectingStore struct {
	store.Store
	reject string
	fixed  atomic.Bool
}

func (s *rejectingStore) UpsertPosts(ctx context.Context, posts []events.FeedbackPost) error {
	for _, p := range posts {
		if p.ID == s.reject && !s.fixed.Load() {
			return store.ErrInvalidPost
		}
	}
	return s.Store.UpsertPosts(ctx, posts)
}

// A post the store rejected is dead-lettered; kefu dlq lists and shows
// it; once the store is fixed, redriving it twice stores it once, another
// consumer of the subject does not see it again, and the dead letter is
// removed.
func TestDLQListShowRedriveRoundTrip(t *testing.T) {
	b, srv := bustest.Open(t)
	t.Setenv("KEFU_NATS_URL", srv.ClientURL())
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	st := &rejectingStore{Store: storetest.Open(t, storetest.SQLite), reject: "77"}
	svc, err := feedback.New(feedback.Config{AckWait: 5 * time.Second, WriteTimeout: time.Second}, feedback.Deps{Bus: b, Store: st, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	// Another role's consumer of the same subject, which handled the
	// original and must not get the redriven copy.
	var otherSaw77 atomic.Int32
	other, err := b.Subscribe(ctx, bus.ConsumerSpec{Role: "other", Stream: events.StreamTucao, Durable: "other", FilterSubject: feedback.FilterPosts},
		func(_ context.Context, d *bus.Delivery) error {
			if p, err := events.Decode[events.FeedbackPost](d.Data); err == nil && p.ID == "77" {
				otherSaw77.Add(1)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })

	at := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	for _, id := range []string{"77", "78"} {
		p := events.FeedbackPost{Meta: events.Meta{ProductID: "1234", OccurredAt: at, ReceivedAt: at}, ID: id, OpenID: "o-1", Content: "反馈", CreatedAt: at, UpdatedAt: at}
		if _, err := b.Publish(ctx, p, bus.Envelope{ID: events.TucaoPostID(id, at), Source: "kefu/test"}); err != nil {
			t.Fatal(err)
		}
	}
	dlq, err := b.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 20*time.Second, func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs == 1
	}, "the rejected post to be dead-lettered")

	kefu := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := Main(append([]string{"dlq"}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("kefu dlq %v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	out := kefu("list", "--role", "feedback")
	for _, want := range []string{events.SubjectPostCreated, feedback.DurablePosts, store.ErrInvalidPost.Error(), "1 dead letters for role feedback"} {
		if !strings.Contains(out, want) {
			t.Errorf("list does not say %q:\n%s", want, out)
		}
	}
	seq := regexp.MustCompile(`(?m)^(\d+)\s`).FindStringSubmatch(out)
	if seq == nil {
		t.Fatalf("list shows no sequence:\n%s", out)
	}
	if out := kefu("list", "--role", "feedback", "--subject", "kefu.wechat.>"); !strings.Contains(out, "no dead letters") {
		t.Errorf("a subject filter matching nothing lists:\n%s", out)
	}
	if out := kefu("list", "--role", "notifier"); !strings.Contains(out, "no dead letters for role notifier") {
		t.Errorf("another role's list:\n%s", out)
	}
	out = kefu("show", "--role", "feedback", "--seq", seq[1])
	for _, want := range []string{"Kefu-Dlq-Consumer: " + feedback.DurablePosts, "Kefu-Dlq-Reason: ", "Kefu-Dlq-Msg-Id: " + events.TucaoPostID("77", at), `"id":"77"`} {
		if !strings.Contains(out, want) {
			t.Errorf("show does not say %q:\n%s", want, out)
		}
	}
	var stderr bytes.Buffer
	if code := Main([]string{"dlq", "show", "--role", "notifier", "--seq", seq[1]}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "not role notifier's") {
		t.Errorf("showing another role's dead letter: exit %d, %q", code, stderr.String())
	}

	st.fixed.Store(true)
	if out := kefu("redrive", "--role", "feedback", "--keep"); !strings.Contains(out, "1 redriven") {
		t.Errorf("first redrive:\n%s", out)
	}
	if out := kefu("redrive", "--role", "feedback"); !strings.Contains(out, "already redriven") || !strings.Contains(out, "removed") {
		t.Errorf("second redrive:\n%s", out)
	}
	natstest.Eventually(t, 20*time.Second, func() bool {
		return consumerDone(b, events.StreamTucao, feedback.DurablePosts) && consumerDone(b, events.StreamTucao, "other")
	}, "the redriven post to be stored")
	tucao, err := b.Stream(ctx, events.StreamTucao)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := tucao.Info(ctx); err != nil || info.State.Msgs != 3 {
		t.Errorf("KEFU_TUCAO holds %d messages (%v), want the 2 posts and one redriven copy", info.State.Msgs, err)
	}
	posts, err := st.ListPosts(ctx, store.PostQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(posts.Items) != 2 {
		t.Errorf("%d posts stored, want 2", len(posts.Items))
	}
	if n := otherSaw77.Load(); n != 1 {
		t.Errorf("another consumer of the subject handled post 77 %d times, want once", n)
	}
	if out := kefu("list", "--role", "feedback"); !strings.Contains(out, "no dead letters") {
		t.Errorf("after the redrive the dead letter is still listed:\n%s", out)
	}
	if out := kefu("redrive", "--role", "feedback"); !strings.Contains(out, "no dead letters") {
		t.Errorf("a third redrive:\n%s", out)
	}
}

func consumerDone(b *bus.Bus, stream, durable string) bool {
	info, err := b.ConsumerInfo(context.Background(), stream, durable)
	if err != nil {
		return false
	}
	st, err := b.Stream(context.Background(), stream)
	if err != nil {
		return false
	}
	sinfo, err := st.Info(context.Background())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= sinfo.State.LastSeq
}
