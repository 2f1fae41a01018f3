package httpapi

import (
	"net/http"
)

// Routes wraps a ServeMux so that its own answers for a path it has no
// route for (404) or a method no route takes (405, with its Allow header)
// are problems rather than Go's plain-text pages. Requests that match a
// route are served as they are.
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// Let the mux decide between 404, 405 and a redirect (a path it
		// cleans), and turn only its errors into problems.
		h.ServeHTTP(&muxAnswer{ResponseWriter: w}, r)
	})
}

// muxAnswer turns a mux's 404 or 405 into a problem and lets anything else
// (a redirect) through.
type muxAnswer struct {
	http.ResponseWriter
	swallow bool
}

func (m *muxAnswer) WriteHeader(status int) {
	switch status {
	case http.StatusNotFound:
		m.swallow = true
		WriteProblem(m.ResponseWriter, status, "no such endpoint")
	case http.StatusMethodNotAllowed:
		m.swallow = true
		WriteProblem(m.ResponseWriter, status, "method not allowed; see the Allow header")
	default:
		m.ResponseWriter.WriteHeader(status)
	}
}

func (m *muxAnswer) Write(b []byte) (int, error) {
	if m.swallow {
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}
