package console

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/httpapi"
)

// ErrTooManyStreams is returned when MaxStreams live streams are open.
var ErrTooManyStreams = errors.New("too many live console streams")

// clientBuffer is how many frames a live stream may fall behind before it
// is dropped; the page reconnects and starts again from a full snapshot.
const clientBuffer = 1024

// hub owns the state and fans each change out to every live stream. A
// change is encoded once, whatever the number of streams, and handed to
// each without blocking: a stream that cannot keep up is closed rather
// than allowed to slow the others or grow memory.
type hub struct {
	mu      sync.Mutex
	st      *state
	seq     uint64
	clients map[*stream]struct{}
	max     int
	// now is the clock of the frames' timestamps (tests replace it).
	now func() time.Time
}

// stream is one live connection's queue of frames.
type stream struct {
	frames chan []byte
	// gone is closed when the hub drops the stream (too slow, or stopping).
	gone chan struct{}
}

func newHub(st *state, maxStreams int) *hub {
	return &hub{st: st, clients: map[*stream]struct{}{}, max: maxStreams, now: time.Now}
}

// update runs fn on the state and broadcasts what it changed.
func (h *hub) update(fn func(*state, *ops)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var o ops
	fn(h.st, &o)
	if len(o) == 0 {
		return
	}
	h.seq++
	frame := deltaFrame(h.seq, h.now(), o)
	for c := range h.clients {
		select {
		case c.frames <- frame:
		default:
			h.dropLocked(c)
		}
	}
}

// subscribe registers a live stream and returns it with the snapshot it
// starts from: no change is lost or doubled between the two.
func (h *hub) subscribe() (*stream, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= h.max {
		return nil, nil, ErrTooManyStreams
	}
	snap, err := json.Marshal(httpapi.Times(h.st.snapshot(h.seq)))
	if err != nil {
		return nil, nil, err
	}
	c := &stream{frames: make(chan []byte, clientBuffer), gone: make(chan struct{})}
	h.clients[c] = struct{}{}
	return c, sseFrame("state", h.seq, snap), nil
}

func (h *hub) unsubscribe(c *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(c)
}

func (h *hub) dropLocked(c *stream) {
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.gone)
	}
}

// closeAll ends every live stream (shutdown).
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		h.dropLocked(c)
	}
}

// streams is the number of live streams.
func (h *hub) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// snapshotJSON is the whole state as JSON.
func (h *hub) snapshotJSON() ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return json.Marshal(httpapi.Times(h.st.snapshot(h.seq)))
}

// delta is the body of a "d" event: the changes of one fact on the bus.
// T is when the console sent it (Unix milliseconds), so a client can
// measure the delivery delay.
type delta struct {
	Seq uint64 `json:"seq"`
	T   int64  `json:"t"`
	Ops ops    `json:"ops"`
}

func deltaFrame(seq uint64, now time.Time, o ops) []byte {
	// Times as every kefu HTTP answer writes them: UTC, whole seconds.
	b, err := json.Marshal(httpapi.Times(delta{Seq: seq, T: now.UnixMilli(), Ops: o}))
	if err != nil {
		// Every value is a plain struct of strings, numbers and times.
		b = []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `,"ops":[]}`)
	}
	return sseFrame("d", seq, b)
}

// sseFrame is one server-sent event. JSON has no raw newline, so the data
// fits one data: line.
func sseFrame(event string, seq uint64, data []byte) []byte {
	b := make([]byte, 0, len(data)+48)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\nevent: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
