package deploy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

// accountsConf is the account layout every deployment's NATS loads.
var accountsConf = filepath.Join("nats", "accounts.conf")

// Passwords the test gives the servers through their environment, as the
// deployments do.
const (
	kefuPassword        = "kefu-pw-3b7e1d"
	eventsPassword      = "events-pw-9c02aa"
	eventsAdminPassword = "events-admin-pw-51f8"
	// accessToken stands for the WeChat access token kefu keeps in kefu_token.
	accessToken = "ACCESS_TOKEN_do-not-leak-4d9a"
)

// eventStreams are the streams other teams read (kefu's DLQ is kefu's own).
var eventStreams = []string{events.StreamWeChat, events.StreamKF, events.StreamTucao, events.StreamNotify}

// runAccountsServer runs a server with deploy/nats/accounts.conf, on a
// random port with its store in the test's directory.
func runAccountsServer(t *testing.T) *server.Server {
	t.Helper()
	t.Setenv("NATS_KEFU_PASSWORD", kefuPassword)
	t.Setenv("NATS_EVENTS_PASSWORD", eventsPassword)
	t.Setenv("NATS_EVENTS_ADMIN_PASSWORD", eventsAdminPassword)
	opts, err := server.ProcessConfigFile(accountsConf)
	if err != nil {
		t.Fatalf("%s: %v", accountsConf, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	return natstest.Run(t, opts)
}

// natsClient is one user's connection, with the permission violations the
// server reported to it.
type natsClient struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu         sync.Mutex
	violations []string
	changed    chan struct{}
}

func connectAs(t *testing.T, s *server.Server, user, password string) *natsClient {
	t.Helper()
	c := &natsClient{changed: make(chan struct{}, 1)}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.mu.Lock()
				c.violations = append(c.violations, err.Error())
				c.mu.Unlock()
				select {
				case c.changed <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// violated waits until the server has refused what (publish or
// subscription) on subject to this client.
func (c *natsClient) violated(t *testing.T, what, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s to %q", what, subject)
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for _, v := range c.violations {
			if strings.Contains(v, want) {
				c.mu.Unlock()
				return
			}
		}
		seen := append([]string(nil), c.violations...)
		c.mu.Unlock()
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("the server did not refuse %s to %s (violations: %q)", what, subject, seen)
		}
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The account layout of deploy/nats/accounts.conf: kefu runs with its
// user; other teams' `events` user reads every event, live and through
// its own consumers, and can neither read nor change anything of kefu's —
// above all not the access token in kefu_token.
func TestNATSAccountLayout(t *testing.T) {
	s := runAccountsServer(t)
	ctx := context.Background()

	// kefu, as it runs: its user, its streams, its buckets, its consumers.
	b, err := bus.Open(ctx, bus.Config{URLs: []string{s.ClientURL()}, User: "kefu", Password: kefuPassword})
	if err != nil {
		t.Fatalf("kefu opens the bus with its user: %v", err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(ctx, append(eventStreams, events.StreamDLQ)...); err != nil {
		t.Fatalf("kefu creates its streams: %v", err)
	}
	token, err := b.KeyValue(ctx, bus.BucketToken)
	if err != nil {
		t.Fatalf("kefu creates kefu_token: %v", err)
	}
	tokenRev, err := token.PutString(ctx, "access_token", accessToken)
	if err != nil {
		t.Fatalf("kefu stores the access token: %v", err)
	}
	for _, bucket := range []string{bus.BucketGroups, bus.BucketCursors, bus.BucketLocks, bus.BucketNotified, bus.BucketState} {
		if _, err := b.KeyValue(ctx, bucket); err != nil {
			t.Fatalf("kefu creates %s: %v", bucket, err)
		}
	}
	kefu := connectAs(t, s, "kefu", kefuPassword) // kefu's account, as another kefu process
	if _, err := kefu.js.CreateOrUpdateConsumer(ctx, events.StreamWeChat, jetstream.ConsumerConfig{
		Durable: "notifier-sessions", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatalf("kefu creates its consumer: %v", err)
	}

	// The copies other teams consume from, created once by events_admin
	// exactly as docs/events.md says.
	admin := connectAs(t, s, "events_admin", eventsAdminPassword)
	for _, name := range eventStreams {
		if _, err := admin.js.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: events.StreamSubjects[name], Storage: jetstream.FileStorage,
			MaxAge: 720 * time.Hour, Duplicates: 2 * time.Minute,
		}); err != nil {
			t.Fatalf("events_admin creates the copy %s: %v", name, err)
		}
	}

	ev := connectAs(t, s, "events", eventsPassword)
	live, err := ev.nc.SubscribeSync("kefu.wechat.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	publish := func(id string) bus.Published {
		t.Helper()
		msg := &nats.Msg{Subject: events.SubjectSessionCreated, Header: nats.Header{}, Data: []byte(`{"openid":"o-1","id":"` + id + `"}`)}
		msg.Header.Set(events.HeaderMsgID, id)
		p, err := b.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatalf("kefu publishes %s: %v", id, err)
		}
		return p
	}
	first := publish("evt-1")

	t.Run("events receives live events", func(t *testing.T) {
		m, err := live.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no live event: %v", err)
		}
		if m.Subject != events.SubjectSessionCreated || m.Header.Get(events.HeaderMsgID) != "evt-1" {
			t.Errorf("live event %s %v, want %s evt-1", m.Subject, m.Header, events.SubjectSessionCreated)
		}
	})

	t.Run("events consumes through its own durable consumer and acks", func(t *testing.T) {
		cons, err := ev.js.CreateOrUpdateConsumer(ctx, events.StreamWeChat, jetstream.ConsumerConfig{
			Durable: "myteam-sessions", FilterSubject: events.SubjectSessionAll,
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			t.Fatalf("create consumer: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []jetstream.Msg
		for m := range batch.Messages() {
			got = append(got, m)
		}
		if len(got) != 1 || got[0].Headers().Get(events.HeaderMsgID) != "evt-1" {
			t.Fatalf("fetched %d messages (%v), want evt-1", len(got), batch.Error())
		}
		if err := got[0].DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending != 0 || info.AckFloor.Stream != 1 {
			t.Errorf("after the ack: %d pending, ack floor %d", info.NumAckPending, info.AckFloor.Stream)
		}
	})

	t.Run("events cannot read kefu_token through KV", func(t *testing.T) {
		if kv, err := ev.js.KeyValue(shortCtx(t), bus.BucketToken); err == nil {
			e, err := kv.Get(shortCtx(t), "access_token")
			t.Fatalf("events opened kefu_token: %v %v", e, err)
		}
		ev.violated(t, "Publish", "$JS.API.STREAM.INFO.KV_kefu_token")
		// Not only a matter of permissions: even the EVENTS account's
		// administrator has no such bucket.
		if _, err := admin.js.KeyValue(shortCtx(t), bus.BucketToken); !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("events_admin opening kefu_token: %v, want %v", err, jetstream.ErrBucketNotFound)
		}
	})

	t.Run("events cannot subscribe to kefu_token's subjects", func(t *testing.T) {
		sub, err := ev.nc.SubscribeSync("$KV.kefu_token.>")
		if err != nil {
			t.Fatal(err)
		}
		ev.violated(t, "Subscription", "$KV.kefu_token.>")
		if _, err := token.PutString(ctx, "access_token", accessToken); err != nil {
			t.Fatal(err)
		}
		// A sentinel on a subject events may read, published after the
		// token: when it has arrived, the token would have too.
		publish("sentinel-kv")
		for {
			m, err := live.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("sentinel not received: %v", err)
			}
			if m.Header.Get(events.HeaderMsgID) == "sentinel-kv" {
				break
			}
		}
		if n, _, _ := sub.Pending(); n != 0 {
			m, _ := sub.NextMsg(0)
			t.Fatalf("events received %d messages of kefu_token: %q", n, m.Data)
		}
	})

	t.Run("events cannot get kefu_token's messages from its stream", func(t *testing.T) {
		for _, req := range []struct{ subject, body string }{
			{"$JS.API.DIRECT.GET.KV_kefu_token.$KV.kefu_token.access_token", ""},
			{"$JS.API.DIRECT.GET.KV_kefu_token", `{"last_by_subj":"$KV.kefu_token.access_token"}`},
			{"$JS.API.STREAM.MSG.GET.KV_kefu_token", `{"last_by_subj":"$KV.kefu_token.access_token"}`},
		} {
			m, err := ev.nc.Request(req.subject, []byte(req.body), time.Second)
			if err == nil && strings.Contains(string(m.Data)+fmt.Sprint(m.Header), accessToken) {
				t.Fatalf("%s answered the token", req.subject)
			}
			ev.violated(t, "Publish", req.subject)
		}
	})

	t.Run("events cannot consume kefu_token's stream", func(t *testing.T) {
		_, err := ev.js.CreateOrUpdateConsumer(shortCtx(t), "KV_kefu_token", jetstream.ConsumerConfig{
			Durable: "steal", AckPolicy: jetstream.AckNonePolicy,
		})
		if err == nil {
			t.Fatal("consumer on KV_kefu_token created")
		}
		ev.violated(t, "Publish", "$JS.API.CONSUMER.CREATE.KV_kefu_token.steal")
	})

	t.Run("no JetStream reply lands in kefu_token", func(t *testing.T) {
		// Within one account a server writes a JetStream API answer to
		// whatever reply subject the request names, a stored token
		// included. From EVENTS, even its administrator's reach KEFU.
		for _, c := range []*natsClient{ev, admin} {
			if err := c.nc.PublishRequest("$JS.API.STREAM.INFO."+events.StreamWeChat, "$KV.kefu_token.access_token", nil); err != nil {
				t.Fatal(err)
			}
			// The next request on the same connection is answered after it.
			if _, err := c.js.Stream(ctx, events.StreamWeChat); err != nil {
				t.Fatal(err)
			}
		}
		e, err := token.Get(ctx, "access_token")
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Value()) != accessToken {
			t.Fatalf("kefu_token now holds %.60q", e.Value())
		}
		if e.Revision() < tokenRev {
			t.Fatalf("revision %d went back", e.Revision())
		}
		st, err := b.Stream(ctx, "KV_kefu_token")
		if err != nil {
			t.Fatal(err)
		}
		if n := st.CachedInfo().State.Msgs; n != 1 {
			t.Errorf("KV_kefu_token holds %d messages, want kefu's 1", n)
		}
	})

	t.Run("events sees none of kefu's replies", func(t *testing.T) {
		inbox, err := ev.nc.SubscribeSync("_INBOX.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := ev.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		// kefu reads the token; its answer goes to kefu's inbox.
		if _, err := token.Get(ctx, "access_token"); err != nil {
			t.Fatal(err)
		}
		// events' own request: its answer is the first thing on _INBOX.>
		// unless kefu's answer came here too.
		if _, err := ev.js.Stream(ctx, events.StreamWeChat); err != nil {
			t.Fatal(err)
		}
		m, err := inbox.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), accessToken) || !strings.Contains(string(m.Data), "stream_info_response") {
			t.Errorf("first message on events' _INBOX.>: %.80q", m.Data)
		}
	})

	t.Run("events cannot publish events", func(t *testing.T) {
		before := publish("sentinel-before")
		if err := ev.nc.Publish("kefu.wechat.x", []byte("forged")); err != nil {
			t.Fatal(err)
		}
		ev.violated(t, "Publish", "kefu.wechat.x")
		after := publish("sentinel-after")
		if after.Sequence != before.Sequence+1 {
			t.Errorf("kefu's stream went from %d to %d: something was stored in between", before.Sequence, after.Sequence)
		}
	})

	t.Run("events cannot delete or purge streams or kefu's consumers", func(t *testing.T) {
		if err := ev.js.DeleteStream(shortCtx(t), events.StreamWeChat); err == nil {
			t.Error("stream deleted")
		}
		ev.violated(t, "Publish", "$JS.API.STREAM.DELETE."+events.StreamWeChat)
		if _, err := ev.nc.Request("$JS.API.STREAM.PURGE."+events.StreamWeChat, nil, time.Second); err == nil {
			t.Error("purge answered")
		}
		ev.violated(t, "Publish", "$JS.API.STREAM.PURGE."+events.StreamWeChat)
		// Allowed for its own consumers; kefu's are in another account.
		if err := ev.js.DeleteConsumer(ctx, events.StreamWeChat, "notifier-sessions"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("deleting kefu's consumer from events: %v, want %v", err, jetstream.ErrConsumerNotFound)
		}
		if _, err := b.ConsumerInfo(ctx, events.StreamWeChat, "notifier-sessions"); err != nil {
			t.Errorf("kefu's consumer: %v", err)
		}
		for _, c := range []struct {
			who string
			js  jetstream.JetStream
		}{{"kefu", kefu.js}, {"events", ev.js}} {
			st, err := c.js.Stream(ctx, events.StreamWeChat)
			if err != nil {
				t.Fatalf("%s's %s: %v", c.who, events.StreamWeChat, err)
			}
			if st.CachedInfo().State.FirstSeq != first.Sequence {
				t.Errorf("%s's %s starts at %d, want %d: purged", c.who, events.StreamWeChat, st.CachedInfo().State.FirstSeq, first.Sequence)
			}
		}
	})
}
