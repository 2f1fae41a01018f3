package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

// storedPosts pages through GET /api/feedback/posts?q=marker of the
// feedback role at baseURL and counts the posts by id.
func (o *observer) storedPosts(ctx context.Context, baseURL, marker string) (map[string]int, error) {
	out := map[string]int{}
	cursor := ""
	for {
		q := url.Values{"limit": {"500"}, "q": {marker}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/api/feedback/posts?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := o.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("list posts: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list posts: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("list posts: HTTP %d: %s", resp.StatusCode, body)
		}
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("list posts: %w", err)
		}
		for _, p := range page.Items {
			out[p.ID]++
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// publishedPosts counts the kefu.tucao.post.created events in KEFU_TUCAO
// of the posts in ids, by post id.
func (o *observer) publishedPosts(ctx context.Context, ids map[string]bool) (map[string]int, error) {
	out := map[string]int{}
	err := o.readStream(ctx, events.StreamTucao, events.SubjectPostCreated, func(m jetstream.Msg) {
		var p struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(m.Data(), &p) == nil && ids[p.ID] {
			out[p.ID]++
		}
	})
	return out, err
}

// deadLetters counts the messages stored in KEFU_DLQ since t.
func (o *observer) deadLetters(ctx context.Context, since time.Time) (int, error) {
	n := 0
	err := o.readStream(ctx, events.StreamDLQ, events.SubjectDLQPrefix+">", func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil && !md.Timestamp.Before(since) {
			n++
		}
	})
	return n, err
}

// fencedRecord is one write to a key of a bucket, in stream order.
type fencedRecord struct {
	key   string
	seq   uint64
	fence uint64 // bus.HeaderFence; 0 when the write carried none
	at    time.Time
}

// fenceWatch records every write a bucket's stream stores for some keys,
// as it is stored: the buckets keep one record per key, so the history
// must be watched, not read afterwards. A write the stream refused is not
// stored, so it is not seen.
type fenceWatch struct {
	cc   jetstream.ConsumeContext
	mu   sync.Mutex
	recs []fencedRecord
	errs int
}

// watchFenced starts watching the keys of bucket for new writes.
func (o *observer) watchFenced(ctx context.Context, bucket string, keys []string) (*fenceWatch, error) {
	s, err := o.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	var filters []string
	for _, k := range keys {
		filters = append(filters, "$KV."+bucket+"."+k)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	w := &fenceWatch{}
	prefix := "$KV." + bucket + "."
	w.cc, err = cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			w.errs++
			return
		}
		fence, _ := strconv.ParseUint(m.Headers().Get(bus.HeaderFence), 10, 64)
		w.recs = append(w.recs, fencedRecord{key: strings.TrimPrefix(m.Subject(), prefix), seq: md.Sequence.Stream, fence: fence, at: md.Timestamp})
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	return w, nil
}

// count is the number of writes seen so far.
func (w *fenceWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.recs)
}

// stop ends the watch and returns what it saw, in stream order.
func (w *fenceWatch) stop() []fencedRecord {
	w.cc.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]fencedRecord(nil), w.recs...)
}
