package faulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// Credentials of the fake official account; the roles get the same.
const (
	appID     = "wxfa17fa17fa17fa17"
	appSecret = "faulttest-secret-0123456789abcdef"
	token     = "faulttesttoken"
	aesKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// Agents who take the sessions, round robin.
var agents = []string{"alice@kefufaults", "bob@kefufaults", "carol@kefufaults"}

// run is the state of one run.
type run struct {
	cfg     Config
	start   time.Time // of the load
	cluster *cluster
	procs   map[string]*process
	roles   []string
	obs     *observer
	logMu   sync.Mutex
}

func (r *run) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	at := "setup"
	if !r.start.IsZero() {
		at = fmt.Sprintf("t+%5.1fs", time.Since(r.start).Seconds())
	}
	fmt.Fprintf(r.cfg.Log, "%s  %s\n", at, fmt.Sprintf(format, args...))
}

// Run sets everything up, runs the load with the faults, waits for the
// consumers and verifies. The error is for a run that could not be set
// up or driven; losses and duplicates are in the Report (Report.OK).
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return Report{}, errors.New("faulttest: Config.Dir is required")
	}
	r := &run{cfg: cfg, procs: map[string]*process{}}
	rep := Report{Rate: cfg.Rate, Duration: cfg.Duration, Store: "sqlite"}
	if cfg.FeedbackDSN != "" {
		rep.Store = "postgres"
	}

	bin := cfg.Binary
	if bin == "" {
		r.logf("building kefu")
		var err error
		if bin, err = BuildKefu(ctx, cfg.Dir); err != nil {
			return rep, err
		}
	}
	hasNotifier, err := HasRole(ctx, bin, "notifier")
	if err != nil {
		return rep, err
	}
	rep.Notifier = hasNotifier
	r.roles = []string{"ingest", "feedback"}
	if hasNotifier {
		r.roles = append(r.roles, "notifier")
	} else {
		r.logf("this kefu has no notifier role: checking the stream instead of notifications")
	}

	// The fake WeChat: the roles' API base. It has no callback URL: the
	// generator posts the callbacks itself, to count every attempt.
	fake, err := wechattest.New(wechattest.Config{
		AppID: appID, AppSecret: appSecret, Token: token, EncodingAESKey: aesKey,
		Mode: wechat.ModeSafe, HistoryLimit: 1 << 22,
	})
	if err != nil {
		return rep, err
	}
	defer fake.Close()
	for i, a := range agents {
		if err := fake.AddAgent(a, []string{"小李", "小王", "小张"}[i%3]); err != nil {
			return rep, fmt.Errorf("add agent %s: %w", a, err)
		}
	}
	api := httptest.NewServer(fake)
	defer api.Close()

	if cfg.cluster != nil {
		r.cluster = cfg.cluster
	} else {
		r.logf("starting a 3-node NATS cluster")
		if r.cluster, err = startCluster(filepath.Join(cfg.Dir, "nats"), 3); err != nil {
			return rep, err
		}
		defer r.cluster.shutdown()
	}

	ports, err := freePorts(len(r.roles))
	if err != nil {
		return rep, err
	}
	for i, role := range r.roles {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		env := map[string]string{
			"KEFU_NATS_URL":        r.cluster.URLs(),
			"KEFU_NATS_REPLICAS":   "3",
			"KEFU_HTTP_ADDR":       addr,
			"KEFU_DATA_DIR":        filepath.Join(cfg.Dir, role),
			"KEFU_LOG_LEVEL":       "warn",
			"KEFU_WECHAT_APPID":    appID,
			"KEFU_WECHAT_SECRET":   appSecret,
			"KEFU_WECHAT_TOKEN":    token,
			"KEFU_WECHAT_AES_KEY":  aesKey,
			"KEFU_WECHAT_API_BASE": api.URL,
			"KEFU_WECHAT_TRANSFER": "false",
			// The store is read back through /api/, which answers only
			// to a token.
			"KEFU_API_TOKEN": apiToken,
			// The generator stands for all of WeChat's callback
			// addresses at once: one client, at the load's full rate.
			"KEFU_PUBLIC_RATE_LIMIT": "0",
		}
		switch role {
		case "feedback":
			if cfg.FeedbackDSN != "" {
				env["KEFU_FEEDBACK_DSN"] = cfg.FeedbackDSN
			}
		case "notifier":
			// The generator's rate, not the account's budget, is what
			// is under test. (The role's shared WeChat client keeps a
			// limit of its own, 50 calls/s.)
			env["KEFU_NOTIFY_RATE_LIMIT"] = "off"
		}
		if err := os.MkdirAll(env["KEFU_DATA_DIR"], 0o750); err != nil {
			return rep, err
		}
		r.procs[role] = &process{role: role, bin: bin, env: roleEnv(env), addr: addr,
			logPath: filepath.Join(cfg.Dir, role+".log")}
	}
	defer r.stopAll()
	r.logf("starting kefu %s", strings.Join(r.roles, ", "))
	for _, role := range r.roles {
		if err := r.procs[role].start(); err != nil {
			return rep, err
		}
	}
	for _, role := range r.roles {
		if err := r.procs[role].waitReady(ctx, 90*time.Second); err != nil {
			return rep, err
		}
	}

	runID := make([]byte, 4)
	rand.Read(runID)
	prefix := "oFT" + hex.EncodeToString(runID) + "_"
	obs, err := newObserver(r.cluster.URLs(), "http://"+r.procs["feedback"].addr, fake, prefix, time.Now())
	if err != nil {
		return rep, err
	}
	defer obs.close()
	r.obs = obs

	gen, err := newGenerator(r.procs["ingest"].addr, fake, prefix)
	if err != nil {
		return rep, err
	}

	r.logf("load: %.0f callbacks/s for %s", cfg.Rate, cfg.Duration)
	r.start = time.Now()
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() {
		gen.run(loadCtx, cfg.Rate)
		close(loadDone)
	}()
	rep.Faults = r.injectFaults(ctx, hasNotifier)
	<-loadDone
	r.logf("load over")
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	// Every role must be up for the verification, whatever the faults did.
	for _, role := range r.roles {
		if err := r.procs[role].waitReady(ctx, 60*time.Second); err != nil {
			return rep, err
		}
	}

	sessions, cbs := gen.results()
	rep.Sessions = sessions
	rep.Callbacks = countCallbacks(cbs)

	consumers := []consumerRef{{events.StreamWeChat, "feedback-sessions"}}
	if hasNotifier {
		consumers = append(consumers, consumerRef{events.StreamWeChat, "notifier-sessions"})
	}
	caughtUp := time.Now()
	// The wait ends CatchUpTimeout after the last sign of progress (the
	// pending counts change as the consumers work through a backlog), and
	// in any case after five times that.
	deadline, hardDeadline := caughtUp.Add(cfg.CatchUpTimeout), caughtUp.Add(5*cfg.CatchUpTimeout)
	lastWhy := ""
	for {
		v, why, err := r.verify(ctx, obs, consumers, cbs, hasNotifier)
		if err == nil && why == "" && v.OK() {
			rep = merge(rep, v)
			break
		}
		if err != nil {
			why = err.Error()
		} else if why == "" {
			why = strings.Join(v.failures(), "; ")
		}
		if why != lastWhy {
			r.logf("catching up: %s", why)
			lastWhy = why
			deadline = time.Now().Add(cfg.CatchUpTimeout)
		}
		if time.Now().After(deadline) || time.Now().After(hardDeadline) || ctx.Err() != nil {
			rep = merge(rep, v)
			rep.Problems = append(rep.Problems, fmt.Sprintf("not caught up %s after the load: %s", time.Since(caughtUp).Round(time.Second), why))
			break
		}
		time.Sleep(2 * time.Second)
	}
	rep.CatchUp = time.Since(caughtUp)
	r.logf("verified after %s", rep.CatchUp.Round(100*time.Millisecond))
	return rep, nil
}

// merge copies the verification's counts into the report.
func merge(rep, v Report) Report {
	rep.Stream, rep.StoredSessions, rep.StartUnknown = v.Stream, v.StoredSessions, v.StartUnknown
	rep.Created, rep.Closed = v.Created, v.Closed
	rep.Problems = append(rep.Problems, v.Problems...)
	return rep
}
