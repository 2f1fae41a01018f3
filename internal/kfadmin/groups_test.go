package kfadmin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/natstest"
)

func TestGroupLifecycle(t *testing.T) {
	ctx := context.Background()
	g, kv := newGroups(t)

	created, err := g.Create(ctx, "billing", []string{" 退款 ", "Refund", "refund", ""})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"退款", "Refund"}; !slices.Equal(created.Keywords, want) {
		t.Errorf("keywords %q, want %q (trimmed, empty dropped, case-insensitive duplicates removed)", created.Keywords, want)
	}
	if _, err := g.Create(ctx, "billing", nil); !errors.Is(err, kfadmin.ErrGroupExists) {
		t.Errorf("second create: %v, want ErrGroupExists", err)
	}

	grp, err := g.AddMembers(ctx, "billing", "bob@test", "alice@test", "bob@test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice@test", "bob@test"}; !slices.Equal(grp.Members, want) {
		t.Errorf("members %q, want %q (sorted, no duplicates)", grp.Members, want)
	}
	grp, err = g.RemoveMembers(ctx, "billing", "bob@test", "nobody@test")
	if err != nil || !slices.Equal(grp.Members, []string{"alice@test"}) {
		t.Errorf("after remove: %q, %v", grp.Members, err)
	}
	grp, err = g.SetKeywords(ctx, "billing", []string{"发票"})
	if err != nil || !slices.Equal(grp.Keywords, []string{"发票"}) {
		t.Errorf("after set keywords: %q, %v", grp.Keywords, err)
	}

	// The stored value is the documented JSON, under the group's name.
	e, err := kv.Get(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	if err := json.Unmarshal(e.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "members", "keywords", "updated_at"} {
		if _, ok := stored[k]; !ok {
			t.Errorf("stored JSON %s lacks %q", e.Value(), k)
		}
	}

	if _, err := g.Create(ctx, "aftersales", nil); err != nil {
		t.Fatal(err)
	}
	list, err := g.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "aftersales" || list[1].Name != "billing" || list[1].Members[0] != "alice@test" {
		t.Errorf("list %+v, want aftersales then billing with its members", list)
	}

	if err := g.Delete(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Get(ctx, "billing"); !errors.Is(err, kfadmin.ErrGroupNotFound) {
		t.Errorf("get after delete: %v, want ErrGroupNotFound", err)
	}
	if err := g.Delete(ctx, "billing"); !errors.Is(err, kfadmin.ErrGroupNotFound) {
		t.Errorf("second delete: %v, want ErrGroupNotFound", err)
	}
	if _, err := g.AddMembers(ctx, "billing", "a@test"); !errors.Is(err, kfadmin.ErrGroupNotFound) {
		t.Errorf("add to deleted group: %v, want ErrGroupNotFound", err)
	}
	if list, _ := g.List(ctx); len(list) != 1 {
		t.Errorf("list after delete: %+v", list)
	}
	// A deleted name can be used again, empty.
	again, err := g.Create(ctx, "billing", nil)
	if err != nil || len(again.Members) != 0 {
		t.Errorf("re-create: %+v, %v", again, err)
	}
}

func TestGroupListOfEmptyBucketIsEmpty(t *testing.T) {
	g, _ := newGroups(t)
	list, err := g.List(context.Background())
	if err != nil || len(list) != 0 {
		t.Fatalf("list: %v, %v", list, err)
	}
}

func TestGroupInputIsValidated(t *testing.T) {
	ctx := context.Background()
	g, _ := newGroups(t)
	if _, err := g.Create(ctx, "ok", nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() error
	}{
		{"empty group name", func() error { _, err := g.Create(ctx, "", nil); return err }},
		{"a dot would make a KV key hierarchy", func() error { _, err := g.Create(ctx, "a.b", nil); return err }},
		{"wildcards are not key characters", func() error { _, err := g.Create(ctx, "a*", nil); return err }},
		{"spaces are not key characters", func() error { _, err := g.Create(ctx, "a b", nil); return err }},
		{"non-ASCII names are not key characters", func() error { _, err := g.Create(ctx, "售后", nil); return err }},
		{"name longer than 64", func() error { _, err := g.Create(ctx, strings.Repeat("a", 65), nil); return err }},
		{"keyword longer than 32 characters", func() error {
			_, err := g.Create(ctx, "long", []string{strings.Repeat("字", 33)})
			return err
		}},
		{"member without @", func() error { _, err := g.AddMembers(ctx, "ok", "alice"); return err }},
		{"member without prefix", func() error { _, err := g.AddMembers(ctx, "ok", "@test"); return err }},
		{"member with two @", func() error { _, err := g.AddMembers(ctx, "ok", "a@b@c"); return err }},
		{"member with a space", func() error { _, err := g.AddMembers(ctx, "ok", "a b@test"); return err }},
		{"no member given", func() error { _, err := g.AddMembers(ctx, "ok"); return err }},
		{"bad name on get", func() error { _, err := g.Get(ctx, "a.b"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, kfadmin.ErrInvalidInput) {
				t.Errorf("got %v, want ErrInvalidInput", err)
			}
		})
	}
	for _, name := range []string{"sales", "vip-2", "A_b", strings.Repeat("x", 64)} {
		if err := kfadmin.ValidateGroupName(name); err != nil {
			t.Errorf("name %q refused: %v", name, err)
		}
	}
}

// Two admins (two processes, two connections) adding members to the same
// group at the same time: every addition survives.
func TestConcurrentGroupEditsAreNotLost(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Run(t, nil)
	admins := []*kfadmin.Groups{kfadmin.NewGroups(newBucket(t, srv)), kfadmin.NewGroups(newBucket(t, srv))}
	if _, err := admins[0].Create(ctx, "sales", nil); err != nil {
		t.Fatal(err)
	}
	const perAdmin = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*perAdmin+2)
	for a, g := range admins {
		for i := range perAdmin {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := g.AddMembers(ctx, "sales", fmt.Sprintf("a%d_%d@test", a, i))
				errs <- err
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := admins[1].SetKeywords(ctx, "sales", []string{"price"})
		errs <- err
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	grp, err := admins[0].Get(ctx, "sales")
	if err != nil {
		t.Fatal(err)
	}
	if len(grp.Members) != 2*perAdmin || !slices.Equal(grp.Keywords, []string{"price"}) {
		t.Fatalf("got %d members %q and keywords %q; want all %d additions and the keywords kept",
			len(grp.Members), grp.Members, grp.Keywords, 2*perAdmin)
	}
}

// racingKV writes a competing change between the store's read and its
// write, the interleaving compare-and-set exists for.
type racingKV struct {
	jetstream.KeyValue
	once  sync.Once
	race  func()
	tries int
}

func (r *racingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	r.tries++
	r.once.Do(r.race)
	return r.KeyValue.Update(ctx, key, value, rev)
}

func TestChangeBetweenReadAndWriteIsKept(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Run(t, nil)
	other := kfadmin.NewGroups(newBucket(t, srv))
	if _, err := other.Create(ctx, "sales", nil); err != nil {
		t.Fatal(err)
	}
	rkv := &racingKV{KeyValue: newBucket(t, srv)}
	rkv.race = func() {
		if _, err := other.AddMembers(ctx, "sales", "bob@test"); err != nil {
			t.Error(err)
		}
	}
	grp, err := kfadmin.NewGroups(rkv).AddMembers(ctx, "sales", "alice@test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(grp.Members, []string{"alice@test", "bob@test"}) || rkv.tries != 2 {
		t.Fatalf("members %q after %d writes; want both members, the first write refused and retried", grp.Members, rkv.tries)
	}
}
