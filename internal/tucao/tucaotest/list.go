package tucaotest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

type listQuery struct {
	count      int
	countGiven bool
	maxID      int64
	from, to   string
	start, end time.Time // the from/to window as [start, end); zero when open
}

func parseQuery(r *http.Request) (listQuery, error) {
	v := r.URL.Query()
	q := listQuery{count: defaultCount, maxID: -1}
	if c := v.Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > tucao.MaxCount {
			return q, fmt.Errorf("count must be 1..%d", tucao.MaxCount)
		}
		q.count, q.countGiven = n, true
	}
	if m := v.Get("max_id"); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("max_id must be a post id")
		}
		q.maxID = n
	}
	if f := v.Get("from"); f != "" {
		t, err := tucao.ParseDate(f)
		if err != nil {
			return q, fmt.Errorf("from must be YYYYMMDD")
		}
		q.from, q.start = f, t
	}
	if t := v.Get("to"); t != "" {
		day, err := tucao.ParseDate(t)
		if err != nil {
			return q, fmt.Errorf("to must be YYYYMMDD")
		}
		q.to, q.end = t, day // exclusive, as in the example in Tucao's API documentation
	}
	return q, nil
}

func (q listQuery) windowed() bool { return q.from != "" || q.to != "" }

func (q listQuery) inWindow(t time.Time) bool {
	if !q.start.IsZero() && t.Before(q.start) {
		return false
	}
	if !q.end.IsZero() && !t.Before(q.end) {
		return false
	}
	return true
}

type listResponse struct {
	Status     int          `json:"status"`
	Message    *string      `json:"message"`
	Pagination pagination   `json:"pagination"`
	Object     string       `json:"object"`
	Data       []tucao.Post `json:"data"`
}

type pagination struct {
	PerPage     int     `json:"per_page"`
	NextPageURL *string `json:"next_page_url"`
	From        *string `json:"from"`
	To          *string `json:"to"`
	Total       *int    `json:"total"`
}

func (s *Server) list(q listQuery) listResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	resp := listResponse{Object: "post", Data: []tucao.Post{}, Pagination: pagination{PerPage: q.count}}
	if q.from != "" {
		resp.Pagination.From = &q.from
	}
	if q.to != "" {
		resp.Pagination.To = &q.to
	}
	if q.windowed() {
		total := 0
		for _, ps := range s.posts {
			if q.inWindow(ps.created) {
				total++
			}
		}
		resp.Pagination.Total = &total
	}
	// Posts are kept in ascending id order: start below max_id and walk
	// towards older posts.
	i := len(s.posts) - 1
	if q.maxID > 0 {
		i = sort.Search(len(s.posts), func(k int) bool { return s.posts[k].post.IDInt() > q.maxID }) - 1
	}
	for ; i >= 0; i-- {
		ps := s.posts[i]
		if !q.inWindow(ps.created) {
			continue
		}
		if len(resp.Data) == q.count {
			next := s.nextPageURL(ps.post.ID, q)
			resp.Pagination.NextPageURL = &next
			break
		}
		resp.Data = append(resp.Data, render(ps, now))
	}
	return resp
}

func (s *Server) nextPageURL(maxID string, q listQuery) string {
	var b strings.Builder
	b.WriteString("/api/v1/" + s.productID + "/posts?max_id=" + maxID)
	if q.countGiven {
		b.WriteString("&count=" + strconv.Itoa(q.count))
	}
	if q.from != "" {
		b.WriteString("&from=" + q.from)
	}
	if q.to != "" {
		b.WriteString("&to=" + q.to)
	}
	return b.String()
}
