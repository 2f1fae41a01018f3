package wechattest

import (
	"context"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// Fault is a failure of the HTTP exchange rather than a WeChat answer, for
// [Server.InjectFault].
type Fault int

const (
	// FaultTooManyRequests answers HTTP 429 before anything else, as
	// WeChat's gateway does when it sheds load: the request is not carried
	// out.
	FaultTooManyRequests Fault = iota + 1
	// FaultHangAfterHandling carries the request out, then holds the answer
	// until the client gives up: the client's timeout fires after the
	// request was written, and the outcome is unknown to it although the
	// request took effect.
	FaultHangAfterHandling
	// FaultResetAfterHandling carries the request out, then closes the
	// connection without an answer.
	FaultResetAfterHandling
)

// InjectFault makes the next n calls of method fail with f. Faults and
// injected errcodes are independent queues; a call takes from both, the
// fault first.
func (s *Server) InjectFault(method string, f Fault, n int) {
	method = normalizeMethod(method)
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for range n {
		s.httpFaults[method] = append(s.httpFaults[method], f)
	}
}

// takeFault returns the next injected fault of method (0: none).
func (s *Server) takeFault(method string) Fault {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	q := s.httpFaults[method]
	if len(q) == 0 {
		return 0
	}
	s.httpFaults[method] = q[1:]
	return q[0]
}

// faultWriter applies a Fault that comes after the handler ran.
type faultWriter struct {
	http.ResponseWriter
	r     *http.Request
	fault Fault
}

func (w *faultWriter) WriteHeader(status int) {
	switch w.fault {
	case FaultHangAfterHandling:
		<-w.r.Context().Done()
		panic(http.ErrAbortHandler)
	case FaultResetAfterHandling:
		panic(http.ErrAbortHandler)
	}
	w.ResponseWriter.WriteHeader(status)
}

// NetFaults breaks connections before any request reaches the server:
// dials that fail or hang, and TLS handshakes that fail. Its DialContext
// goes into the client's http.Transport (see Transport).
type NetFaults struct {
	mu         sync.Mutex
	dials      int // next dials that fail with "connection refused"
	stalls     int // next dials that hang until their context ends
	handshakes int // next connections closed during the TLS handshake
	dialer     net.Dialer
}

// FailDials makes the next n dials fail with ECONNREFUSED.
func (f *NetFaults) FailDials(n int) { f.mu.Lock(); f.dials += n; f.mu.Unlock() }

// StallDials makes the next n dials hang until the dial's context ends (a
// connect timeout).
func (f *NetFaults) StallDials(n int) { f.mu.Lock(); f.stalls += n; f.mu.Unlock() }

// FailHandshakes makes the next n connections end before the TLS
// handshake completes; use it with a TLS server (httptest.NewTLSServer).
func (f *NetFaults) FailHandshakes(n int) { f.mu.Lock(); f.handshakes += n; f.mu.Unlock() }

// DialContext dials addr unless a fault is due.
func (f *NetFaults) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	var refuse, stall, drop bool
	switch {
	case f.dials > 0:
		f.dials--
		refuse = true
	case f.stalls > 0:
		f.stalls--
		stall = true
	case f.handshakes > 0:
		f.handshakes--
		drop = true
	}
	f.mu.Unlock()
	switch {
	case refuse:
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.AddrError{Err: syscall.ECONNREFUSED.Error(), Addr: addr}}
	case stall:
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	case drop:
		// The peer reads the ClientHello and hangs up: the handshake fails
		// and nothing reaches the server.
		client, peer := net.Pipe()
		go func() {
			buf := make([]byte, 512)
			_, _ = peer.Read(buf)
			_ = peer.Close()
		}()
		return client, nil
	}
	return f.dialer.DialContext(ctx, network, addr)
}

// Transport returns a clone of base (http.DefaultTransport when nil) that
// dials through f.
func (f *NetFaults) Transport(base *http.Transport) *http.Transport {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	t := base.Clone()
	t.DialContext = f.DialContext
	return t
}
