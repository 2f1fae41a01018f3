package httpedge

import (
	"net/http"
	"time"
)

// Limits of every listener. The public requests kefu serves are small and
// quick (WeChat waits 5 s for a callback answer and sends at most 1 MiB; the
// largest private request is a 5 MiB avatar upload from inside the network),
// so the limits are generous for them and short for a client that trickles
// bytes to hold a connection open.
const (
	// ReadHeaderTimeout bounds how long a client may take to send its
	// headers (the slowloris attack sends them a byte at a time).
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds the whole request, body included.
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds the time from the end of the headers to the end
	// of the answer; no kefu handler streams.
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes keep-alive connections nobody uses.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds the request line and headers; Go answers 431
	// Request Header Fields Too Large beyond it. WeChat's and Tucao's
	// requests carry well under 2 KiB of headers.
	MaxHeaderBytes = 64 << 10
)

// NewServer returns the server every kefu listener uses, with the limits
// above; use it for every listener so none is left with Go's defaults (no
// timeouts at all, 1 MiB of headers).
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
