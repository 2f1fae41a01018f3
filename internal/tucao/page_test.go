package tucao

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodePage(t *testing.T) {
	tests := []struct {
		name    string
		body    []byte
		wantErr error
		check   func(*testing.T, *Page)
	}{
		{
			name: "the example in Tucao's API documentation decodes with its pagination",
			body: readTestdata(t, "page_seed.json"),
			check: func(t *testing.T, p *Page) {
				if len(p.Posts) != 2 || p.PerPage != 5 || p.Total != 9 || p.From != "20180911" || p.To != "20180912" ||
					p.NextPageURL != "/api/v1/33588/posts?max_id=153985337910779973" {
					t.Errorf("page = %+v", p)
				}
				if p.Posts[0].IDInt() <= p.Posts[1].IDInt() {
					t.Errorf("posts not newest first: %s, %s", p.Posts[0].ID, p.Posts[1].ID)
				}
			},
		},
		{
			name: "nulls and quoted numbers in the envelope are accepted",
			body: readTestdata(t, "page_lenient.json"),
			check: func(t *testing.T, p *Page) {
				if len(p.Posts) != 1 || p.PerPage != 20 || p.NextPageURL != "" || p.Total != 0 {
					t.Errorf("page = %+v", p)
				}
			},
		},
		{
			name: "an empty last page is not an error",
			body: readTestdata(t, "page_empty.json"),
			check: func(t *testing.T, p *Page) {
				if len(p.Posts) != 0 || p.NextPageURL != "" {
					t.Errorf("page = %+v", p)
				}
			},
		},
		{
			name: "data null is an empty page",
			body: []byte(`{"status":0,"data":null}`),
			check: func(t *testing.T, p *Page) {
				if len(p.Posts) != 0 {
					t.Errorf("page = %+v", p)
				}
			},
		},
		{name: "a rate-limit status is ErrRateLimited", body: readTestdata(t, "page_rate_limited.json"), wantErr: ErrRateLimited},
		{name: "the example in Tucao's API documentation as printed (comments, trailing comma) is malformed", body: readTestdata(t, "seed_example_raw.txt"), wantErr: ErrMalformedResponse},
		{name: "a truncated body is malformed", body: []byte(`{"status":0,"data":[{"id":"1539`), wantErr: ErrMalformedResponse},
		{name: "an HTML page is malformed", body: []byte(`<html><body>502 Bad Gateway</body></html>`), wantErr: ErrMalformedResponse},
		{name: "a success without data is malformed", body: []byte(`{"status":0,"message":null}`), wantErr: ErrMalformedResponse},
		{name: "a post without id is malformed", body: []byte(`{"status":0,"data":[{"content":"x"}]}`), wantErr: ErrMalformedResponse},
		{name: "a post with a bad id is malformed", body: []byte(`{"status":0,"data":[{"id":"x1"}]}`), wantErr: ErrMalformedResponse},
		{name: "data that is not a list is malformed", body: []byte(`{"status":0,"data":{"id":"1"}}`), wantErr: ErrMalformedResponse},
		{name: "a top-level list is malformed", body: []byte(`[]`), wantErr: ErrMalformedResponse},
		{name: "a status that is not a number is malformed", body: []byte(`{"status":"ok","data":[]}`), wantErr: ErrMalformedResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := decodePage(tt.body)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodePage: %v", err)
			}
			tt.check(t, page)
		})
	}
}

func TestDecodePageStatusIsAPIError(t *testing.T) {
	_, err := decodePage([]byte(`{"status":40103,"message":"Signature mismatch"}`))
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if apiErr.Status != 40103 || apiErr.Message != "Signature mismatch" || apiErr.Retryable() || errors.Is(err, ErrRateLimited) {
		t.Errorf("APIError = %+v, retryable %v", apiErr, apiErr.Retryable())
	}
}

// FuzzDecodePage feeds arbitrary bodies to the decoder: it must never
// panic, every post it accepts has a valid id, and re-encoding what it
// accepted is stable.
func FuzzDecodePage(f *testing.F) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"status":0,"data":[{"id":"1","extra":{"a":[1,2]},"zz":null}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodePage(body)
		if err != nil {
			if _, isAPI := errors.AsType[*APIError](err); !isAPI && !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("error is neither *APIError nor ErrMalformedResponse: %v", err)
			}
			return
		}
		for _, p := range page.Posts {
			if p.IDInt() <= 0 {
				t.Fatalf("accepted post with id %q", p.ID)
			}
			first, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("Marshal accepted post: %v", err)
			}
			var back Post
			if err := json.Unmarshal(first, &back); err != nil {
				t.Fatalf("re-decode %s: %v", first, err)
			}
			second, err := json.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("encoding not stable:\n%s\n%s", first, second)
			}
			if back.ID != p.ID || strings.Contains(string(first), `"id":null`) {
				t.Fatalf("id changed: %q -> %q", p.ID, back.ID)
			}
		}
	})
}
