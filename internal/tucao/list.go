package tucao

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ListOptions selects posts. The zero value asks for the newest page of the
// server's default size.
type ListOptions struct {
	// Count is the page size, 1..100; 0 leaves it to the server (20).
	Count int
	// MaxID asks for posts whose id is at most MaxID (older pages).
	MaxID string
	// From and To (YYYYMMDD, Asia/Shanghai) limit the posts to a creation
	// window, as Tucao reads them: From is the first day, To the day after
	// the last (exclusive; the documentation's from=20180123&to=20180124 is January
	// 23rd alone). Either may be empty. Callers that take inclusive days
	// from a person translate with DayAfter.
	From, To string
}

// DayAfter returns the YYYYMMDD day after day: the exclusive To of a
// window whose last day is day.
func DayAfter(day string) (string, error) {
	t, err := ParseDate(day)
	if err != nil {
		return "", err
	}
	return FormatDate(t.AddDate(0, 0, 1)), nil
}

func (o ListOptions) query() (url.Values, error) {
	q := url.Values{}
	if o.Count < 0 || o.Count > MaxCount {
		return nil, fmt.Errorf("count %d out of range 1..%d", o.Count, MaxCount)
	}
	if o.Count > 0 {
		q.Set("count", strconv.Itoa(o.Count))
	}
	if o.MaxID != "" {
		if _, err := parseID(o.MaxID); err != nil {
			return nil, fmt.Errorf("max_id: %w", err)
		}
		q.Set("max_id", o.MaxID)
	}
	var from, to time.Time
	var err error
	if o.From != "" {
		if from, err = ParseDate(o.From); err != nil {
			return nil, err
		}
		q.Set("from", o.From)
	}
	if o.To != "" {
		if to, err = ParseDate(o.To); err != nil {
			return nil, err
		}
		q.Set("to", o.To)
	}
	if o.From != "" && o.To != "" && !to.After(from) {
		return nil, fmt.Errorf("to %s must be after from %s (to is exclusive: the day after the last day)", o.To, o.From)
	}
	return q, nil
}

func (c *Client) postsPath() string {
	return c.base.Path + "/api/v1/" + c.cfg.ProductID + "/posts"
}

// ListPosts fetches the first page matching opt.
func (c *Client) ListPosts(ctx context.Context, opt ListOptions) (*Page, error) {
	q, err := opt.query()
	if err != nil {
		return nil, fmt.Errorf("list tucao posts: invalid options: %w", err)
	}
	u := *c.base
	u.Path = c.postsPath()
	u.RawQuery = q.Encode()
	page, err := c.get(ctx, &u)
	if err != nil {
		return nil, fmt.Errorf("list tucao posts: %w", err)
	}
	return page, nil
}

// NextPage fetches the page a previous answer's NextPageURL points to,
// signed afresh. The URL is normally a path ("/api/v1/1234/posts?max_id=…")
// and is resolved against BaseURL, prefix included; an absolute URL is
// accepted only for BaseURL's own scheme and host, so a forged answer cannot
// send our signed requests elsewhere.
func (c *Client) NextPage(ctx context.Context, nextPageURL string) (*Page, error) {
	u, err := c.resolve(nextPageURL)
	if err != nil {
		return nil, fmt.Errorf("next tucao page: %w", err)
	}
	page, err := c.get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("next tucao page: %w", err)
	}
	return page, nil
}

func (c *Client) resolve(next string) (*url.URL, error) {
	if next == "" {
		return nil, errors.New("empty next_page_url")
	}
	ref, err := url.Parse(next)
	if err != nil {
		return nil, fmt.Errorf("%w: next_page_url %q: %w", ErrMalformedResponse, next, err)
	}
	u := *c.base
	switch {
	case ref.IsAbs():
		if ref.Scheme != c.base.Scheme || ref.Host != c.base.Host {
			return nil, fmt.Errorf("%w: next_page_url %q leaves %s", ErrMalformedResponse, next, c.base.Host)
		}
		u.Path = ref.Path
	case ref.Host != "":
		return nil, fmt.Errorf("%w: next_page_url %q names another host", ErrMalformedResponse, next)
	case strings.HasPrefix(ref.Path, "/"):
		u.Path = c.base.Path + ref.Path
		if c.base.Path != "" && strings.HasPrefix(ref.Path, c.base.Path+"/") {
			u.Path = ref.Path // the server already knows the prefix
		}
	default:
		return nil, fmt.Errorf("%w: next_page_url %q is not a path", ErrMalformedResponse, next)
	}
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	return &u, nil
}

// ErrMorePages is what Walk returns when it stopped at its page budget with
// older pages still to read.
var ErrMorePages = errors.New("page budget spent with more pages to read")

// Iterate calls fn for each post matching opt, newest first, following
// next_page_url until fn says stop, fn fails or there is no next page.
//
// Two defences keep a long backfill honest: the page size and the from/to
// window of opt are carried into a next_page_url that does not repeat them,
// and a post already seen on the previous page (a server that treats max_id
// as inclusive of the last post) is not passed to fn twice. A
// next_page_url that was already followed stops the walk with
// ErrMalformedResponse instead of looping for ever.
func (c *Client) Iterate(ctx context.Context, opt ListOptions, fn func(Post) (more bool, err error)) error {
	_, err := c.Walk(ctx, opt, 0, fn)
	return err
}

// Walk is Iterate that reads at most maxPages pages (0: no limit) and says
// how many requests it made. When the budget is spent while older pages
// remain it returns ErrMorePages, so the caller can resume later with
// MaxID set to the last post fn saw.
func (c *Client) Walk(ctx context.Context, opt ListOptions, maxPages int, fn func(Post) (more bool, err error)) (pages int, err error) {
	if maxPages < 0 {
		return 0, fmt.Errorf("iterate tucao posts: page budget %d is negative", maxPages)
	}
	pages = 1
	page, err := c.ListPosts(ctx, opt)
	if err != nil {
		return pages, err
	}
	followed := make(map[string]bool)
	var previous map[string]bool
	for {
		current := make(map[string]bool, len(page.Posts))
		for _, p := range page.Posts {
			if previous[p.ID] || current[p.ID] {
				continue
			}
			current[p.ID] = true
			more, err := fn(p)
			if err != nil {
				return pages, fmt.Errorf("iterate tucao posts: post %s: %w", p.ID, err)
			}
			if !more {
				return pages, nil
			}
		}
		if page.NextPageURL == "" {
			return pages, nil
		}
		if maxPages > 0 && pages >= maxPages {
			return pages, ErrMorePages
		}
		next, err := carryOptions(page.NextPageURL, opt)
		if err != nil {
			return pages, fmt.Errorf("iterate tucao posts: %w", err)
		}
		if followed[next] {
			return pages, fmt.Errorf("iterate tucao posts: %w: next_page_url %q repeats", ErrMalformedResponse, next)
		}
		followed[next] = true
		previous = current
		pages++
		if page, err = c.NextPage(ctx, next); err != nil {
			return pages, fmt.Errorf("iterate tucao posts: %w", err)
		}
	}
}

// carryOptions adds opt's count, from and to to a next_page_url that lacks
// them.
func carryOptions(next string, opt ListOptions) (string, error) {
	u, err := url.Parse(next)
	if err != nil {
		return "", fmt.Errorf("%w: next_page_url %q: %w", ErrMalformedResponse, next, err)
	}
	q := u.Query()
	changed := false
	add := func(key, value string) {
		if value != "" && !q.Has(key) {
			q.Set(key, value)
			changed = true
		}
	}
	if opt.Count > 0 {
		add("count", strconv.Itoa(opt.Count))
	}
	add("from", opt.From)
	add("to", opt.To)
	if !changed {
		return next, nil
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}
