package tucaotest

import (
	"strconv"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

// Options configures a Server. Zero values take the defaults.
type Options struct {
	ProductID string      // default DefaultProductID
	Secret    string      // default DefaultSecret
	Clock     tucao.Clock // checks timestamps, drives the rate limit and stamps posts; default the system clock
	// RateLimit is the accepted requests per minute; 0 means 100 and a
	// negative value turns the limit off.
	RateLimit int
	// TimestampTolerance is how far Timestamp may be from the server's
	// clock; default 300 s.
	TimestampTolerance time.Duration
	// SlowDelay is how long a FaultSlow answer waits (real time); default
	// 20 s, longer than the client's default timeout.
	SlowDelay time.Duration
	// OmitDate leaves the Date header out of the API's answers, as a proxy
	// that strips it would: the client then cannot measure its clock skew.
	OmitDate bool
}

// FaultKind is a failure FailNext injects.
type FaultKind int

// Faults the server can inject.
const (
	FaultServerError   FaultKind = iota + 1 // HTTP 500, status 50001
	FaultSlow                               // answer after Options.SlowDelay
	FaultMalformedJSON                      // HTTP 200, truncated JSON body
	FaultRateLimited                        // HTTP 429, status 42901, Retry-After: 1
)

func (k FaultKind) String() string {
	switch k {
	case FaultServerError:
		return "server-error"
	case FaultSlow:
		return "slow"
	case FaultMalformedJSON:
		return "malformed-json"
	case FaultRateLimited:
		return "rate-limited"
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}
