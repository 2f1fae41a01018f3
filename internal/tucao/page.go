package tucao

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Page is one answer of the posts endpoint.
type Page struct {
	Posts       []Post // newest first
	NextPageURL string // path of the next (older) page; "" on the last page
	PerPage     int
	Total       int    // posts in the from/to window; 0 without one
	From, To    string // the window the server applied, YYYYMMDD
}

// wirePage is the response envelope. Every value stays raw so that the
// lenient decoders of post.go apply to the envelope too.
type wirePage struct {
	Status     json.RawMessage `json:"status"`
	Message    json.RawMessage `json:"message"`
	Pagination *wirePagination `json:"pagination"`
	Data       json.RawMessage `json:"data"`
}

type wirePagination struct {
	PerPage     json.RawMessage `json:"per_page"`
	NextPageURL json.RawMessage `json:"next_page_url"`
	From        json.RawMessage `json:"from"`
	To          json.RawMessage `json:"to"`
	Total       json.RawMessage `json:"total"`
}

// decodePage turns a 2xx body into a Page. A body that says status != 0 is
// an *APIError; a body that is not the documented JSON wraps
// ErrMalformedResponse.
func decodePage(body []byte) (*Page, error) {
	var w wirePage
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedResponse, err)
	}
	var status int
	if err := decodeOptional(w.Status, decodeInt, &status); err != nil {
		return nil, fmt.Errorf("%w: status: %w", ErrMalformedResponse, err)
	}
	if status != StatusOK {
		apiErr := &APIError{Status: status, HTTPStatus: http.StatusOK}
		_ = decodeOptional(w.Message, decodeString, &apiErr.Message) // best effort: the status decides
		return nil, apiErr
	}
	// A success without data is not an empty page: it is a body we do not
	// understand (an empty object from a proxy, say), and treating it as
	// "no posts" would make a poller believe it is up to date. An explicit
	// null is an empty page.
	if len(w.Data) == 0 {
		return nil, fmt.Errorf("%w: no data field", ErrMalformedResponse)
	}
	var posts []Post
	if err := json.Unmarshal(w.Data, &posts); err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrMalformedResponse, err)
	}
	for i, p := range posts {
		if p.ID == "" {
			return nil, fmt.Errorf("%w: data[%d] has no id", ErrMalformedResponse, i)
		}
	}
	page := &Page{Posts: posts}
	if pg := w.Pagination; pg != nil {
		for _, f := range []struct {
			name string
			err  error
		}{
			{"per_page", decodeOptional(pg.PerPage, decodeInt, &page.PerPage)},
			{"next_page_url", decodeOptional(pg.NextPageURL, decodeString, &page.NextPageURL)},
			{"from", decodeOptional(pg.From, decodeString, &page.From)},
			{"to", decodeOptional(pg.To, decodeString, &page.To)},
			{"total", decodeOptional(pg.Total, decodeInt, &page.Total)},
		} {
			if f.err != nil {
				return nil, fmt.Errorf("%w: pagination.%s: %w", ErrMalformedResponse, f.name, f.err)
			}
		}
	}
	return page, nil
}

// decodeOptional runs decode unless the field was absent.
func decodeOptional[T any](raw json.RawMessage, decode func(json.RawMessage, *T) error, dst *T) error {
	if len(raw) == 0 {
		return nil
	}
	return decode(raw, dst)
}
