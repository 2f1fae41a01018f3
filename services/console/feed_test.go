package console

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
)

// The console follows what the services publish on a real bus: the
// estimator's queue view and estimates, a customer joining, sessions,
// abandonment, posts and groups, and a kind of event it has no column for.
func TestFeedFollowsTheBus(t *testing.T) {
	ctx := context.Background()
	b, _ := bustest.Open(t, bustest.Streams(events.StreamKF, events.StreamWeChat, events.StreamTucao))
	now := time.Now().UTC().Truncate(time.Second)
	meta := events.Meta{AppID: "wx1", OccurredAt: now, ReceivedAt: now}
	publish := func(ev events.Event, id string) {
		t.Helper()
		if _, err := b.Publish(ctx, ev, bus.Envelope{ID: id, Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	// Published before the console starts: read back from History.
	publish(events.WaitEstimated{Meta: meta, OpenID: "o-early", Position: 1, WaitSeconds: 60, WaitP90Seconds: 150, Model: "kefu"}, "e1")

	s, err := New(Config{AdminToken: adminTok, AppID: "wx1", StaleAfter: time.Minute}, Deps{Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })

	waitFor(t, s, "the estimate published before the start", func(st *state) bool {
		w := st.waiting["o-early"]
		return w != nil && w.Estimated && w.WaitSeconds == 60
	})

	kv, err := b.KeyValue(ctx, bus.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	view := map[string]any{"at": now, "waiting_count": 130, "unlisted": 29, "mean_session_seconds": 240,
		"tail":    map[string]any{"position": 130, "wait_seconds": 3000, "wait_p90_seconds": 5000},
		"waiting": []map[string]any{{"openid": "o-early", "since": now.Add(-time.Minute), "position": 1, "wait_seconds": 55, "wait_p90_seconds": 140}},
		"agents": []map[string]any{{"kf_account": "kf1@test", "status": 1, "auto_accept": 2, "accepted_case": 1,
			"sessions": []map[string]any{{"openid": "o-old", "since": now.Add(-2 * time.Hour)}}}}}
	body, _ := json.Marshal(view)
	if _, err := kv.Put(ctx, "queue.wx1", body); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "queue.wxother", []byte(`{"waiting":[{"openid":"o-other-account","position":1}]}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "the queue view", func(st *state) bool {
		a := st.agents["kf1@test"]
		return st.summary.Unlisted == 29 && st.summary.SessionSeconds == 240 && a != nil && len(a.Sessions) == 1 && st.waiting["o-early"].Listed
	})

	groups, err := b.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := groups.Put(ctx, "vip", []byte(`{"name":"vip","members":["kf1@test"],"keywords":["退款"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishRaw(ctx, "kefu.wechat.kf.queue.joined", []byte(fmt.Sprintf(`{"openid":"o-join","occurred_at":%q,"msg_id":"1"}`, now.Format(time.RFC3339))), bus.Envelope{ID: "j1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishRaw(ctx, "kefu.kf.agent.chosen", []byte(`{"openid":"o-join","choice":2,"kind":"agent","kf_account":"kf1@test","outcome":"transferred","deep":{"x":1}}`), bus.Envelope{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	wx := events.WeChatSource{OpenID: "o-early"}
	publish(events.SessionCreated{Meta: events.Meta{OccurredAt: now.Add(30 * time.Second)}, WeChatSource: wx, KfAccount: "kf1@test"}, "s1")
	publish(events.SessionAbandoned{Meta: meta, OpenID: "o-gone", WaitedSeconds: 300, Reason: events.AbandonVanished}, "a1")
	publish(events.FeedbackPost{Meta: events.Meta{ProductID: "1"}, ID: "101", OpenID: "o-early", Content: "很好", CreatedAt: now,
		Replies: json.RawMessage(`[{"content":"谢谢","is_admin":true,"nick_name":"官方"}]`)}, "p1")

	waitFor(t, s, "the session, the join, the choice, the abandonment, the post and the group", func(st *state) bool {
		j := st.waiting["o-join"]
		return st.waiting["o-early"] == nil && len(st.served) == 1 && j != nil && j.KfAccount == "kf1@test" && j.Extra["outcome"] == "transferred" &&
			len(st.left) == 1 && len(st.posts) == 1 && len(st.groups) == 1 && st.accuracy.N == 1
	})
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	st := s.hub.st
	if st.waiting["o-other-account"] != nil {
		t.Error("the queue of another appid was shown")
	}
	if sv := st.served[0]; sv.PredictedSeconds != 60 || sv.P90Seconds != 150 || sv.ActualSeconds != 30 || sv.WaitedSeconds != 90 {
		t.Errorf("served %+v: want the first estimate (60 s, P90 150 s) against 30 s from it, 90 s in the queue", sv)
	}
	if _, ok := st.waiting["o-join"].Extra["deep"]; ok {
		t.Error("an object field was shown on the row")
	}
	if _, ok := st.waiting["o-join"].Extra["msg_id"]; ok {
		t.Error("msg_id was shown")
	}
	if p := st.posts[0]; p.Session == nil || p.Session.KfAccount != "kf1@test" || len(p.Replies) != 1 || !p.Replies[0].IsAdmin {
		t.Errorf("post %+v", p)
	}
	if sess := st.agents["kf1@test"].Sessions; len(sess) != 2 {
		t.Errorf("agent sessions %+v: want the old one and o-early", sess)
	}
}

// waitFor waits (natstest.Eventually) until ok holds of the console's
// state, read under the hub's lock, and fails showing that state.
func waitFor(t *testing.T, s *Service, what string, ok func(*state) bool) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() bool {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		return ok(s.hub.st)
	}, "never saw %s; state %s", what, snapshot{s})
}

// snapshot formats as the console's state at the moment it is printed.
type snapshot struct{ s *Service }

func (v snapshot) String() string {
	b, _ := v.s.hub.snapshotJSON()
	return string(b)
}
