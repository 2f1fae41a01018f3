package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Writing posts: versions, duplicates and the batches the store rejects.

func testUpsertThenList(t *testing.T, backend Backend) {
	s := Open(t, backend)
	a := post(100, "o-a", t0, "first")
	b := post(200, "o-b", t0.Add(time.Hour), "second")
	b.User = json.RawMessage(`{"id":1}`)
	b.HasAdminReply, b.IsSpam, b.IsHidden = true, true, true
	upsert(t, s, a, b)

	page := listPosts(t, s, store.PostQuery{})
	assertIDs(t, "all posts", ids(page.Items), []string{"200", "100"})
	if page.NextCursor != "" {
		t.Errorf("NextCursor = %q on the only page, want empty", page.NextCursor)
	}
	if len(page.Items) == 2 {
		assertSamePost(t, page.Items[0].FeedbackPost, b)
		assertSamePost(t, page.Items[1].FeedbackPost, a)
		if !page.Items[0].CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("created_at = %v, want %v", page.Items[0].CreatedAt, b.CreatedAt)
		}
	}
}

func testSameVersionIsNoOp(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "original")
	upsert(t, s, p)
	// Same updated_at is the same version, whatever the body says: the
	// stored one stays.
	upsert(t, s, version(p, p.UpdatedAt, "same version, other text"))
	upsert(t, s, p)
	got := listPosts(t, s, store.PostQuery{})
	assertIDs(t, "posts", ids(got.Items), []string{"1"})
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, p)
}

func testNewerVersionReplaces(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "original")
	upsert(t, s, p)
	newer := version(p, t0.Add(time.Minute), "edited with a reply")
	newer.ReplyCount = 2
	upsert(t, s, newer)
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, newer)
	if got := listPosts(t, s, store.PostQuery{Q: "edited"}); len(got.Items) != 1 {
		t.Errorf("search finds %d posts by the new content, want 1", len(got.Items))
	}
	if got := listPosts(t, s, store.PostQuery{Q: "original"}); len(got.Items) != 0 {
		t.Errorf("search finds %d posts by the replaced content, want 0", len(got.Items))
	}
}

func testOlderVersionNeverOverwrites(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "v1")
	v3 := version(p, t0.Add(3*time.Minute), "v3")
	upsert(t, s, v3)
	upsert(t, s, version(p, t0.Add(2*time.Minute), "v2"))
	upsert(t, s, p)
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, v3)
}

func testDuplicatesInBatch(t *testing.T, backend Backend) {
	s := Open(t, backend)
	p := post(1, "o", t0, "v1")
	v2 := version(p, t0.Add(2*time.Minute), "v2")
	v2again := version(p, t0.Add(2*time.Minute), "v2 delivered again")
	other := post(2, "o", t0, "other")
	upsert(t, s, p, v2, other, version(p, t0.Add(time.Minute), "v1.5"), v2again)
	assertIDs(t, "posts", ids(listPosts(t, s, store.PostQuery{}).Items), []string{"2", "1"})
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, v2)
}

func testInvalidPostRejectsBatch(t *testing.T, backend Backend) {
	s := Open(t, backend)
	for _, bad := range []struct {
		name  string
		spoil func(p *events.FeedbackPost)
	}{
		{"id not a number", func(p *events.FeedbackPost) { p.ID = "12ab" }},
		{"empty id", func(p *events.FeedbackPost) { p.ID = "" }},
		{"id with a sign", func(p *events.FeedbackPost) { p.ID = "+5" }},
		{"id with a leading zero", func(p *events.FeedbackPost) { p.ID = "05" }},
		{"negative id", func(p *events.FeedbackPost) { p.ID = "-5" }},
		{"id too large for int64", func(p *events.FeedbackPost) { p.ID = "99999999999999999999" }},
		{"no created_at", func(p *events.FeedbackPost) { p.CreatedAt = time.Time{} }},
		{"invalid raw JSON", func(p *events.FeedbackPost) { p.Extra = json.RawMessage(`{`) }},
	} {
		t.Run(bad.name, func(t *testing.T) {
			p := post(1, "o", t0, "x")
			bad.spoil(&p)
			err := s.UpsertPosts(ctx(t), []events.FeedbackPost{post(7, "o", t0, "valid"), p})
			if !errors.Is(err, store.ErrInvalidPost) {
				t.Fatalf("UpsertPosts error = %v, want ErrInvalidPost", err)
			}
			if got := listPosts(t, s, store.PostQuery{}); len(got.Items) != 0 {
				t.Errorf("the valid post of a rejected batch was written: %v", ids(got.Items))
			}
		})
	}
}

func testUnstorableText(t *testing.T, backend Backend) {
	s := Open(t, backend)
	// PostgreSQL text rejects NUL; jsonb would reject \u0000 too.
	p := post(1, "o\x00nul", t0, "crash\x00here")
	p.Extra = json.RawMessage(`{"note":"a\u0000b"}`)
	upsert(t, s, p)
	assertSamePost(t, onlyPost(t, s, "1").FeedbackPost, p)
	assertIDs(t, "search", ids(listPosts(t, s, store.PostQuery{Q: "here"}).Items), []string{"1"})
}
