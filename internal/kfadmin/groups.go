package kfadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the group store. The HTTP API maps them to statuses (404, 409,
// 400, 409) and the CLI prints them; neither looks at the text.
var (
	ErrGroupNotFound = errors.New("group not found")
	ErrGroupExists   = errors.New("group already exists")
	// ErrInvalidInput wraps every validation failure: a bad group name,
	// member account or keyword, a missing field of an HTTP request.
	ErrInvalidInput = errors.New("invalid input")
	// ErrConflict means a compare-and-set update lost the race
	// maxCASAttempts times in a row; the caller may simply retry.
	ErrConflict = errors.New("group changed concurrently, try again")
)

// Limits of a group. They keep one KV value small (well under NATS's
// default 1 MiB message size) and the router's keyword scan cheap.
const (
	MaxGroupNameLen = 64
	MaxMembers      = 200
	MaxKeywords     = 100
	MaxKeywordRunes = 32
	maxAccountLen   = 64
	// maxCASAttempts bounds the read-modify-write loop. Each failed attempt
	// means another writer succeeded, so the loop cannot livelock; the
	// bound only protects against a pathological stream of writers.
	maxCASAttempts = 100
)

// groupNameRE: one NATS subject token (no '.', '*', '>' or spaces), so the
// name is the KV key as it is and shows up unchanged in `nats kv ls`.
var groupNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Group is a local agent group: WeChat's 多客服 has no groups (its API
// documentation knows only accounts), so
// kefu keeps them in the kefu_groups KV bucket, one key per group holding
// this JSON.
type Group struct {
	Name string `json:"name"`
	// Members are kf accounts (prefix@wechat-id), sorted, without duplicates.
	Members []string `json:"members"`
	// Keywords route a customer whose text contains one of them
	// (case-insensitively) to this group; see Router.
	Keywords  []string  `json:"keywords"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Groups stores agent groups in a JetStream KV bucket (bus.BucketGroups).
// Every change is a compare-and-set on the key's revision, retried on
// conflict, so two admins editing the same group at once never lose each
// other's change. It is safe for concurrent use.
type Groups struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewGroups returns a store on kv, typically
// (*bus.Bus).KeyValue(ctx, bus.BucketGroups).
func NewGroups(kv jetstream.KeyValue) *Groups {
	return &Groups{kv: kv, now: time.Now}
}

// ValidateGroupName reports whether name can be a group name: 1 to
// MaxGroupNameLen letters, digits, '-' or '_'.
func ValidateGroupName(name string) error {
	if len(name) == 0 || len(name) > MaxGroupNameLen || !groupNameRE.MatchString(name) {
		return fmt.Errorf("%w: group name %q: use 1 to %d letters, digits, '-' or '_'", ErrInvalidInput, name, MaxGroupNameLen)
	}
	return nil
}

// ValidateAccount reports whether account looks like a kf account,
// prefix@wechat-id. Whether it exists is WeChat's business: a group may
// name an agent before the account is created.
func ValidateAccount(account string) error {
	prefix, id, ok := strings.Cut(account, "@")
	if !ok || prefix == "" || id == "" || strings.Contains(id, "@") || len(account) > maxAccountLen ||
		strings.IndexFunc(account, unicode.IsSpace) >= 0 {
		return fmt.Errorf("%w: kf account %q: want prefix@wechat-id", ErrInvalidInput, account)
	}
	return nil
}

// normalizeKeywords trims, drops empty entries and removes case-insensitive
// duplicates (keeping the first spelling).
func normalizeKeywords(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, k := range in {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if n := utf8.RuneCountInString(k); n > MaxKeywordRunes || !utf8.ValidString(k) ||
			strings.IndexFunc(k, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("%w: keyword %q: at most %d printable characters", ErrInvalidInput, k, MaxKeywordRunes)
		}
		low := strings.ToLower(k)
		if seen[low] {
			continue
		}
		seen[low] = true
		out = append(out, k)
	}
	if len(out) > MaxKeywords {
		return nil, fmt.Errorf("%w: %d keywords, at most %d", ErrInvalidInput, len(out), MaxKeywords)
	}
	return out, nil
}

func normalizeAccounts(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, a := range in {
		a = strings.TrimSpace(a)
		if err := ValidateAccount(a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no kf account given", ErrInvalidInput)
	}
	return out, nil
}

// List returns every group, sorted by name.
func (g *Groups) List(ctx context.Context) ([]Group, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := g.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer func() {
		w.Stop()
		// Unblock the watcher's delivery goroutine should we return
		// before reading everything; the channel closes after Stop.
		go func() {
			for range w.Updates() {
			}
		}()
	}()
	var groups []Group
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list groups: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list groups: watcher closed")
			}
			if e == nil { // all current values delivered
				slices.SortFunc(groups, func(a, b Group) int { return strings.Compare(a.Name, b.Name) })
				return groups, nil
			}
			grp, err := decodeGroup(e.Key(), e.Value())
			if err != nil {
				return nil, fmt.Errorf("list groups: %w", err)
			}
			groups = append(groups, grp)
		}
	}
}

// Get returns one group; ErrGroupNotFound if there is none of that name.
func (g *Groups) Get(ctx context.Context, name string) (Group, error) {
	grp, _, err := g.get(ctx, name)
	if err != nil {
		return Group{}, fmt.Errorf("get group: %w", err)
	}
	return grp, nil
}

func (g *Groups) get(ctx context.Context, name string) (Group, uint64, error) {
	if err := ValidateGroupName(name); err != nil {
		return Group{}, 0, err
	}
	e, err := g.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Group{}, 0, fmt.Errorf("%w: %s", ErrGroupNotFound, name)
	}
	if err != nil {
		return Group{}, 0, err
	}
	grp, err := decodeGroup(name, e.Value())
	return grp, e.Revision(), err
}

func decodeGroup(key string, value []byte) (Group, error) {
	var grp Group
	if err := json.Unmarshal(value, &grp); err != nil {
		return Group{}, fmt.Errorf("decode group %s: %w", key, err)
	}
	grp.Name = key // the key is authoritative
	if grp.Members == nil {
		grp.Members = []string{}
	}
	if grp.Keywords == nil {
		grp.Keywords = []string{}
	}
	return grp, nil
}

// Create adds an empty group with the given routing keywords;
// ErrGroupExists if the name is taken.
func (g *Groups) Create(ctx context.Context, name string, keywords []string) (Group, error) {
	return g.create(ctx, name, keywords, nil)
}

func (g *Groups) create(ctx context.Context, name string, keywords, members []string) (Group, error) {
	if err := ValidateGroupName(name); err != nil {
		return Group{}, fmt.Errorf("create group: %w", err)
	}
	kw, err := normalizeKeywords(keywords)
	if err != nil {
		return Group{}, fmt.Errorf("create group %s: %w", name, err)
	}
	grp := Group{Name: name, Members: []string{}, Keywords: kw, UpdatedAt: g.now().UTC()}
	if len(members) > 0 {
		accounts, err := normalizeAccounts(members)
		if err != nil {
			return Group{}, fmt.Errorf("create group %s: %w", name, err)
		}
		if _, err := addMembers(&grp, accounts); err != nil {
			return Group{}, fmt.Errorf("create group %s: %w", name, err)
		}
	}
	data, err := json.Marshal(grp)
	if err != nil {
		return Group{}, fmt.Errorf("create group %s: %w", name, err)
	}
	// Create succeeds only if the key is absent (or deleted), atomically.
	if _, err := g.kv.Create(ctx, name, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Group{}, fmt.Errorf("create group: %w: %s", ErrGroupExists, name)
		}
		return Group{}, fmt.Errorf("create group %s: %w", name, err)
	}
	return grp, nil
}

// AddMembers adds kf accounts to a group; accounts already in it are
// ignored.
func (g *Groups) AddMembers(ctx context.Context, name string, accounts ...string) (Group, error) {
	add, err := normalizeAccounts(accounts)
	if err != nil {
		return Group{}, fmt.Errorf("add members to group %s: %w", name, err)
	}
	grp, err := g.update(ctx, name, func(grp *Group) (bool, error) { return addMembers(grp, add) })
	if err != nil {
		return Group{}, fmt.Errorf("add members to group %s: %w", name, err)
	}
	return grp, nil
}

func addMembers(grp *Group, add []string) (bool, error) {
	changed := false
	for _, a := range add {
		if !slices.Contains(grp.Members, a) {
			grp.Members = append(grp.Members, a)
			changed = true
		}
	}
	if len(grp.Members) > MaxMembers {
		return false, fmt.Errorf("%w: %d members, at most %d", ErrInvalidInput, len(grp.Members), MaxMembers)
	}
	slices.Sort(grp.Members)
	return changed, nil
}

// RemoveMembers removes kf accounts from a group; accounts not in it are
// ignored.
func (g *Groups) RemoveMembers(ctx context.Context, name string, accounts ...string) (Group, error) {
	rm, err := normalizeAccounts(accounts)
	if err != nil {
		return Group{}, fmt.Errorf("remove members from group %s: %w", name, err)
	}
	grp, err := g.update(ctx, name, func(grp *Group) (bool, error) {
		n := len(grp.Members)
		grp.Members = slices.DeleteFunc(grp.Members, func(m string) bool { return slices.Contains(rm, m) })
		return len(grp.Members) != n, nil
	})
	if err != nil {
		return Group{}, fmt.Errorf("remove members from group %s: %w", name, err)
	}
	return grp, nil
}

// SetKeywords replaces a group's routing keywords (none: the group is no
// longer used for keyword routing).
func (g *Groups) SetKeywords(ctx context.Context, name string, keywords []string) (Group, error) {
	kw, err := normalizeKeywords(keywords)
	if err != nil {
		return Group{}, fmt.Errorf("set keywords of group %s: %w", name, err)
	}
	grp, err := g.update(ctx, name, func(grp *Group) (bool, error) {
		if slices.Equal(grp.Keywords, kw) {
			return false, nil
		}
		grp.Keywords = kw
		return true, nil
	})
	if err != nil {
		return Group{}, fmt.Errorf("set keywords of group %s: %w", name, err)
	}
	return grp, nil
}

// Delete removes a group; ErrGroupNotFound if there is none of that name.
func (g *Groups) Delete(ctx context.Context, name string) error {
	for range maxCASAttempts {
		_, rev, err := g.get(ctx, name)
		if err != nil {
			return fmt.Errorf("delete group: %w", err)
		}
		// Conditional on the revision read, so that a group deleted and
		// re-created meanwhile is not removed by a stale request.
		err = g.kv.Delete(ctx, name, jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete group %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("delete group %s: %w", name, ErrConflict)
}

// update is the compare-and-set loop: read the group and its revision,
// apply mutate, write back only if nobody wrote in between, else start
// over from the fresh value. mutate reports whether it changed anything;
// unchanged groups are not rewritten.
func (g *Groups) update(ctx context.Context, name string, mutate func(*Group) (bool, error)) (Group, error) {
	for range maxCASAttempts {
		grp, rev, err := g.get(ctx, name)
		if err != nil {
			return Group{}, err
		}
		changed, err := mutate(&grp)
		if err != nil {
			return Group{}, err
		}
		if !changed {
			return grp, nil
		}
		grp.UpdatedAt = g.now().UTC()
		data, err := json.Marshal(grp)
		if err != nil {
			return Group{}, err
		}
		_, err = g.kv.Update(ctx, name, data, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return Group{}, err
		}
		return grp, nil
	}
	return Group{}, ErrConflict
}
