package estimator

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/waitmodel"
	"github.com/kefu-io/kefu/pkg/events"
)

// QueueView is the body of GET /api/kf/queue.
type QueueView struct {
	At           time.Time            `json:"at"`
	WaitingCount int                  `json:"waiting_count"`
	Waiting      []WaitingView        `json:"waiting"`
	Unlisted     int                  `json:"unlisted"`
	Omitted      int                  `json:"omitted,omitempty"`
	Tail         *WaitingView         `json:"tail,omitempty"`
	Agents       []events.AgentStatus `json:"agents"`
	ServiceMean  int64                `json:"mean_session_seconds"`
}

// WaitingView is one waiting customer with its estimate.
type WaitingView struct {
	OpenID         string    `json:"openid,omitempty"`
	Since          time.Time `json:"since,omitzero"`
	KfAccount      string    `json:"kf_account,omitempty"`
	Position       int       `json:"position"`
	WaitSeconds    int64     `json:"wait_seconds"`
	WaitP90Seconds int64     `json:"wait_p90_seconds"`
	// Unknown: nobody online can take this customer; no estimate.
	Unknown bool   `json:"unknown,omitempty"`
	Model   string `json:"model,omitempty"`
	// Inferred: not listed by getwaitcase; the place comes from the order
	// of the joins kefu saw.
	Inferred bool `json:"position_inferred,omitempty"`
}

// maxViewWaiting bounds the customers GET /api/kf/queue lists (the view
// is one KV value); Omitted counts the rest.
const maxViewWaiting = 1000

func queueView(snap waitmodel.Snapshot, res waitmodel.Result) QueueView {
	v := QueueView{At: snap.At.UTC(), WaitingCount: res.Count, Unlisted: res.Unlisted, Waiting: []WaitingView{}, Agents: []events.AgentStatus{},
		ServiceMean: seconds(res.ServiceFor)}
	since := make(map[string]time.Time, len(snap.Waiting))
	for _, w := range snap.Waiting {
		since[w.OpenID] = w.Since.UTC()
	}
	for i, e := range res.Estimates {
		if i == maxViewWaiting {
			v.Omitted = len(res.Estimates) - i
			break
		}
		v.Waiting = append(v.Waiting, WaitingView{OpenID: e.OpenID, Since: since[e.OpenID], KfAccount: e.KfAccount, Position: e.Position,
			WaitSeconds: seconds(e.Wait), WaitP90Seconds: seconds(e.WaitP90), Unknown: e.Unknown, Model: e.Model, Inferred: e.Inferred})
	}
	if res.Unlisted > 0 {
		t := res.Tail
		v.Tail = &WaitingView{Position: t.Position, WaitSeconds: seconds(t.Wait), WaitP90Seconds: seconds(t.WaitP90), Unknown: t.Unknown, Model: t.Model}
	}
	for _, a := range snap.Agents {
		st := events.AgentStatus{KfAccount: a.Account, Status: a.Status, AutoAccept: a.AutoAccept, AcceptedCase: a.Accepted, Sessions: []events.AgentSession{}}
		for _, ss := range a.Sessions {
			st.Sessions = append(st.Sessions, events.AgentSession{OpenID: ss.OpenID, Since: ss.Since.UTC()})
		}
		v.Agents = append(v.Agents, st)
	}
	return v
}

// Routes registers GET /api/kf/queue. Every replica serves it from the
// view the active poller saved last.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("/api/kf/queue", s.serveQueue)
}

func (s *Service) serveQueue(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpapi.WriteProblem(w, http.StatusMethodNotAllowed, "GET or HEAD only")
		return
	}
	// The view appears at the first poll and is replaced at every poll:
	// one poll interval is when it is worth asking again.
	notYet := httpapi.RetryAfter(s.cfg.PollInterval)
	if s.state == nil {
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "estimator not started", httpapi.Type(httpapi.NotReady), notYet)
		return
	}
	entry, err := s.state.Get(r.Context(), s.queueKey())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "no queue snapshot yet", httpapi.Type(httpapi.NotReady), notYet)
		return
	case err != nil:
		s.log.Error("read queue view", zap.Error(err))
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "queue view unavailable", notYet)
		return
	}
	// The saved view is re-encoded rather than passed on, so that every
	// time is written as httpapi writes times (UTC, whole seconds) and a
	// view saved by an older version, with a zero time in it, is answered
	// without it.
	var view QueueView
	if err := json.Unmarshal(entry.Value(), &view); err != nil {
		s.log.Error("decode queue view", zap.Error(err))
		httpapi.WriteProblem(w, http.StatusInternalServerError, "queue view unreadable")
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, view)
}
