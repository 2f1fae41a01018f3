package faulttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// observer reads what the system did, from outside it: the streams, the
// durable consumers, the feedback HTTP API and the fake's record of
// custom/send.
type observer struct {
	nc          *nats.Conn
	js          jetstream.JetStream
	feedbackURL string // http://host:port of the feedback role
	fake        *wechattest.Server
	prefix      string    // of the run's openids
	since       time.Time // the run's start: sessions closed earlier are another run's
	http        *http.Client
}

func newObserver(natsURLs, feedbackURL string, fake *wechattest.Server, prefix string, since time.Time) (*observer, error) {
	nc, err := nats.Connect(natsURLs, nats.Name("kefu-faulttest"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &observer{nc: nc, js: js, feedbackURL: feedbackURL, fake: fake, prefix: prefix, since: since,
		http: &http.Client{Timeout: 15 * time.Second}}, nil
}

func (o *observer) close() { o.nc.Close() }

// consumerRef names a durable consumer.
type consumerRef struct{ stream, name string }

// idle reports whether every consumer has handed out and seen acknowledged
// every message: nothing pending, nothing waiting for an ack, so no
// redelivery can still come. why says which is not.
func (o *observer) idle(ctx context.Context, refs []consumerRef) (ok bool, why string) {
	for _, r := range refs {
		info, err := o.consumerInfo(ctx, r)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", r.name, err)
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return false, fmt.Sprintf("%s: %d pending, %d awaiting ack", r.name, info.NumPending, info.NumAckPending)
		}
	}
	return true, ""
}

// streamLeader names the server leading the stream's replicas.
func (o *observer) streamLeader(ctx context.Context, stream string) (string, error) {
	s, err := o.js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("find the %s leader: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("find the %s leader: %w", stream, err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("find the %s leader: none elected", stream)
	}
	return info.Cluster.Leader, nil
}

// consumerInfo reads a consumer's state whether it is a pull or a push
// consumer: that is the services' choice, not the check's.
func (o *observer) consumerInfo(ctx context.Context, r consumerRef) (*jetstream.ConsumerInfo, error) {
	c, err := o.js.Consumer(ctx, r.stream, r.name)
	if errors.Is(err, jetstream.ErrNotPullConsumer) {
		pc, perr := o.js.PushConsumer(ctx, r.stream, r.name)
		if perr != nil {
			return nil, perr
		}
		return pc.Info(ctx)
	}
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// readStream hands every message of stream matching filter to each,
// through an ordered consumer of its own (it never touches the services'
// durable consumers).
func (o *observer) readStream(ctx context.Context, stream, filter string, each func(jetstream.Msg)) error {
	var (
		s    jetstream.Stream
		info *jetstream.StreamInfo
		cons jetstream.Consumer
	)
	// Nothing is handed to each before the consumer exists, so the set-up
	// can be tried again while a cluster that another scenario just
	// disrupted elects its leaders.
	err := untilJetStreamAnswers(ctx, func() error {
		var err error
		if s, err = o.js.Stream(ctx, stream); err != nil {
			return err
		}
		if info, err = s.Info(ctx, jetstream.WithSubjectFilter(filter)); err != nil {
			return err
		}
		return nil
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	want := uint64(0)
	for _, n := range info.State.Subjects {
		want += n
	}
	if want == 0 {
		return nil
	}
	err = untilJetStreamAnswers(ctx, func() error {
		var err error
		cons, err = s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
		return err
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	var got uint64
	for got < want {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		n := 0
		last := false
		for m := range batch.Messages() {
			n++
			got++
			each(m)
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				last = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if n == 0 || last {
			break
		}
	}
	return nil
}

// streamEvent is what the stream holds under one Nats-Msg-Id.
type streamEvent struct {
	count  int
	openid string
}

// sessionEvents returns the run's session events in KEFU_WECHAT by id.
func (o *observer) sessionEvents(ctx context.Context) (map[string]*streamEvent, error) {
	out := map[string]*streamEvent{}
	err := o.readStream(ctx, events.StreamWeChat, events.SubjectSessionAll, func(m jetstream.Msg) {
		var body struct {
			OpenID string `json:"openid"`
		}
		json.Unmarshal(m.Data(), &body)
		if !strings.HasPrefix(body.OpenID, o.prefix) {
			return
		}
		id := m.Headers().Get(events.HeaderMsgID)
		e := out[id]
		if e == nil {
			e = &streamEvent{openid: body.OpenID}
			out[id] = e
		}
		e.count++
	})
	return out, err
}

// outcomes returns the notifier's outcome events by cause id.
func (o *observer) outcomes(ctx context.Context) (map[string][]events.Notification, error) {
	out := map[string][]events.Notification{}
	err := o.readStream(ctx, events.StreamNotify, "kefu.notify.>", func(m jetstream.Msg) {
		var n events.Notification
		if json.Unmarshal(m.Data(), &n) != nil || !strings.HasPrefix(n.OpenID, o.prefix) {
			return
		}
		out[n.CauseEventID] = append(out[n.CauseEventID], n)
	})
	return out, err
}

// apiToken is the read-only token the roles are started with (KEFU_API_TOKEN).
const apiToken = "faulttest-read-only-api-token"

// storedSession is a closed session as GET /api/feedback/sessions shows it.
type storedSession struct {
	OpenID    string    `json:"openid"`
	KfAccount string    `json:"kf_account"`
	StartedAt time.Time `json:"started_at"`
	ClosedAt  time.Time `json:"closed_at"`
}

// storedSessions pages through the feedback API and returns the run's
// closed sessions by openid.
func (o *observer) storedSessions(ctx context.Context) (map[string][]storedSession, error) {
	out := map[string][]storedSession{}
	cursor := ""
	for {
		q := url.Values{"limit": {"500"}, "from": {o.since.Add(-time.Minute).UTC().Format(time.RFC3339)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.feedbackURL+"/api/feedback/sessions?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := o.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("list sessions: HTTP %d: %s", resp.StatusCode, body)
		}
		var page struct {
			Items      []storedSession `json:"items"`
			NextCursor string          `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		for _, s := range page.Items {
			if strings.HasPrefix(s.OpenID, o.prefix) {
				out[s.OpenID] = append(out[s.OpenID], s)
			}
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// Texts that tell the notifier's messages apart (its default templates).
const (
	textCreated = "正在为您服务"
	textClosed  = "感谢您的咨询"
)

// sentMessages counts custom/send messages per openid and kind
// (events.NotifySessionCreated, events.NotifySessionClosed, "other").
func (o *observer) sentMessages() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, m := range o.fake.Sent() {
		if !strings.HasPrefix(m.OpenID, o.prefix) {
			continue
		}
		kind := "other"
		switch {
		case strings.Contains(m.Content, textCreated):
			kind = events.NotifySessionCreated
		case strings.Contains(m.Content, textClosed):
			kind = events.NotifySessionClosed
		}
		if out[m.OpenID] == nil {
			out[m.OpenID] = map[string]int{}
		}
		out[m.OpenID][kind]++
	}
	return out
}

// untilJetStreamAnswers runs request until JetStream answers it, for at
// most 30 s: right after a node of the cluster went down and came back,
// requests can find no responder or time out while leaders are elected.
// Any other error, or an answer, ends it at once.
func untilJetStreamAnswers(ctx context.Context, request func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := request()
		transient := errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		if err == nil || !transient || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
