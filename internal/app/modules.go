package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/tucao"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/estimator"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/ingest"
	"github.com/kefu-io/kefu/services/notifier"
	"github.com/kefu-io/kefu/services/queuecare"
)

// noopModule is a module whose work is all in its HTTP handlers.
type noopModule struct{}

func (noopModule) Start(context.Context) error { return nil }
func (noopModule) Stop(context.Context) error  { return nil }

// ingestModule runs the keyword router and the callback IP allow-list
// refresher beside the callback handler.
type ingestModule struct {
	svc    *ingest.Service
	router *kfadmin.Router
	leaf   *bus.Leaf // store and forward (KEFU_INGEST_STORE_FORWARD)
}

func (m ingestModule) Start(ctx context.Context) error {
	if err := m.svc.Start(ctx); err != nil {
		return err
	}
	if m.router == nil {
		return nil
	}
	return m.router.Start(ctx)
}

func (m ingestModule) Stop(ctx context.Context) error {
	err := m.svc.Stop(ctx)
	if m.router != nil {
		if rerr := m.router.Stop(ctx); err == nil {
			err = rerr
		}
	}
	if m.leaf != nil {
		// What the hub has not taken yet stays in the spool on disk.
		m.leaf.Close()
	}
	return err
}

// Ready reports whether the store-and-forward spool accepts callbacks
// (always, without store and forward).
func (m ingestModule) Ready(ctx context.Context) error {
	if m.leaf == nil {
		return nil
	}
	return m.leaf.Ready(ctx)
}

// Warnings are the callback endpoint's notes about an unsafe
// configuration (plain mode, the plaintext migration setting).
func (m ingestModule) Warnings() []string { return m.svc.Warnings() }

func buildIngest(ctx context.Context, rt *runtime) (module, error) {
	if err := rt.bus.EnsureStreams(ctx, events.StreamWeChat); err != nil {
		return nil, err
	}
	deps := ingest.Deps{Publisher: rt.bus, Logger: rt.log.Named("ingest"), Registerer: rt.registry}
	var mod ingestModule
	if rt.cfg.IngestStoreForward {
		// Callbacks go to a local spool the cluster's KEFU_WECHAT sources
		// over a leaf node connection (docs/operations.md).
		if rt.bus.Embedded() {
			return nil, errors.New("KEFU_INGEST_STORE_FORWARD needs a NATS cluster (KEFU_NATS_URL); the embedded server cannot be cut off from ingest")
		}
		hubs, err := bus.LeafURLs(rt.cfg.NATSURLs, bus.DefaultLeafPort)
		if err != nil {
			return nil, err
		}
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("KEFU_INGEST_STORE_FORWARD: the spool's domain is named after the host: %w", err)
		}
		leaf, err := bus.OpenLeaf(ctx, rt.bus, bus.LeafConfig{HubURLs: hubs, Domain: bus.DomainFromHost("kefu-ingest-", host),
			DataDir: rt.cfg.DataDir, MaxBytes: rt.cfg.IngestSpoolBytes, Stream: events.StreamWeChat})
		if err != nil {
			return nil, err
		}
		rt.log.Info("store and forward on: callbacks are kept in a local spool while the NATS cluster is unreachable",
			zap.String("domain", leaf.Domain()), zap.Int64("spool_max_bytes", rt.cfg.IngestSpoolBytes))
		if rt.registry != nil {
			rt.registry.MustRegister(leaf.Collector())
		}
		deps.Publisher, mod.leaf = leaf, leaf
		defer func() {
			if mod.svc == nil {
				leaf.Close() // the module was not built
			}
		}()
	}
	if rt.cfg.WeChatTransfer && rt.cfg.WeChatSecret == "" {
		rt.log.Info("keyword routing off: KEFU_WECHAT_SECRET is not set, customers go to any agent")
	} else if rt.cfg.WeChatTransfer {
		router, err := buildRouter(ctx, rt)
		if err != nil {
			return nil, fmt.Errorf("keyword routing: %w", err)
		}
		deps.Router, deps.Chooser, mod.router = router, router, router
		states, err := rt.customerStates(ctx)
		if err != nil {
			return nil, err
		}
		leave, err := customers.NewLeaveDetector(rt.cfg.LeavePhrases)
		if err != nil {
			return nil, fmt.Errorf("KEFU_QUEUE_LEAVE_PHRASES: %w", err)
		}
		deps.Gate = customers.LeaveGate{Leave: leave, Customers: states}
	}
	if rt.cfg.WeChatIPAllowlist {
		// getcallbackip is an API call. A missing setting must stop the
		// role, not quietly drop the callback endpoint as a lenient role
		// drops an unconfigured integration: hence no *MissingError here.
		if rt.cfg.WeChatSecret == "" {
			return nil, errors.New("KEFU_WECHAT_IP_ALLOWLIST needs KEFU_WECHAT_SECRET: the allow-list is fetched with cgi-bin/getcallbackip")
		}
		client, err := rt.wechatClient(ctx)
		if err != nil {
			return nil, fmt.Errorf("KEFU_WECHAT_IP_ALLOWLIST: %v", err)
		}
		deps.CallbackIPs = client
	}
	if rt.cfg.WeChatAESKey == "" || rt.cfg.WeChatAllowPlaintext {
		// Plaintext is accepted: its signatures are spent across replicas.
		sigs, err := rt.bus.KeyValue(ctx, bus.BucketCallbackSigs)
		if err != nil {
			return nil, err
		}
		deps.Signatures = sigs
	}
	trusted := rt.cfg.TrustedProxies
	svc, err := ingest.New(ingest.Config{
		AppID:          rt.cfg.WeChatAppID,
		Token:          rt.cfg.WeChatToken.Value(),
		AESKey:         rt.cfg.WeChatAESKey.Value(),
		AllowPlaintext: rt.cfg.WeChatAllowPlaintext,
		Window:         rt.cfg.CallbackWindow,
		Transfer:       rt.cfg.WeChatTransfer,
		IPAllowlist:    rt.cfg.WeChatIPAllowlist,
		ClientIP:       func(r *http.Request) netip.Addr { return httpedge.ClientIP(r, trusted) },
	}, deps)
	if err != nil {
		return nil, err
	}
	svc.Routes(rt.mux)
	mod.svc = svc
	return mod, nil
}

func newTucaoPoller(ctx context.Context, rt *runtime) (*ingest.TucaoPoller, error) {
	if err := rt.bus.EnsureStreams(ctx, events.StreamTucao); err != nil {
		return nil, err
	}
	client, err := tucao.New(tucao.Config{BaseURL: rt.cfg.TucaoAPIBase, ProductID: rt.cfg.TucaoProductID, Secret: rt.cfg.TucaoSecret.Value(),
		OnClockSkew: logTucaoSkew(rt.log.Named("tucao"))})
	if err != nil {
		return nil, err
	}
	cursors, err := rt.bus.KeyValue(ctx, bus.BucketCursors)
	if err != nil {
		return nil, err
	}
	locks, err := rt.bus.KeyValue(ctx, bus.BucketLocks)
	if err != nil {
		return nil, err
	}
	return ingest.NewTucaoPoller(ingest.TucaoConfig{
		ProductID: rt.cfg.TucaoProductID, Interval: rt.cfg.TucaoPollInterval,
		RescanWindow: rt.cfg.TucaoRescanWindow,
		Holder:       holderName("tucao"),
	}, client, rt.bus, cursors, locks, rt.log.Named("tucao"), rt.registry)
}

// logTucaoSkew logs each change of the correction the Tucao client applies
// to its timestamps: a warning past tucao.SkewWarning, since the host's
// clock (NTP) needs fixing even though polls keep working.
func logTucaoSkew(log *zap.Logger) func(time.Duration) {
	return func(skew time.Duration) {
		level := zap.InfoLevel
		if skew > tucao.SkewWarning || skew < -tucao.SkewWarning {
			level = zap.WarnLevel
		}
		log.Log(level, "tucao clock skew corrected: the server's clock is ahead of this host's by skew (negative: behind)",
			zap.Duration("skew", skew))
	}
}

func buildTucao(ctx context.Context, rt *runtime) (module, error) {
	p, err := newTucaoPoller(ctx, rt)
	if err != nil {
		return nil, err
	}
	secret := rt.cfg.TucaoWebhookSecret.Value()
	p.RegisterWebhook(rt.mux, secret)
	// Say which form is served (a webhook still posted to the plain path
	// after the secret was set is answered 404), never the secret itself.
	if secret != "" {
		rt.log.Info("tucao webhook served at " + ingest.WebhookPath + "/<KEFU_TUCAO_WEBHOOK_SECRET> only; " + ingest.WebhookPath + " answers 404")
	} else {
		rt.log.Info("tucao webhook served at " + ingest.WebhookPath + " (KEFU_TUCAO_WEBHOOK_SECRET unset: anyone can make kefu poll, at most once every 10 s)")
	}
	return p, nil
}

func holderName(module string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d", module, host, os.Getpid())
}

func buildEstimator(ctx context.Context, rt *runtime) (module, error) {
	client, err := rt.wechatClient(ctx)
	if err != nil {
		return nil, err
	}
	states, err := rt.customerStates(ctx)
	if err != nil {
		return nil, err
	}
	svc, err := estimator.New(estimator.Config{AppID: rt.cfg.WeChatAppID, PollInterval: rt.cfg.QueuePollInterval, Holder: holderName("estimator")},
		estimator.Deps{Bus: rt.bus, API: client, Logger: rt.log.Named("estimator"), Registerer: rt.registry, Left: states.Left})
	if err != nil {
		return nil, err
	}
	svc.Routes(rt.mux)
	return svc, nil
}

// feedbackModule owns its store: it closes it after the consumers stop.
type feedbackModule struct {
	*feedback.Service
	store store.Store
}

func (m feedbackModule) Stop(ctx context.Context) error {
	err := m.Service.Stop(ctx)
	if cerr := m.store.Close(); err == nil {
		err = cerr
	}
	return err
}

func buildFeedback(ctx context.Context, rt *runtime) (module, error) {
	st, err := store.Open(ctx, rt.cfg.FeedbackDSN.Value(), rt.cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("KEFU_FEEDBACK_DSN: %w", err)
	}
	deps := feedback.Deps{Bus: rt.bus, Store: st, Logger: rt.log.Named("feedback"), Registerer: rt.registry}
	// The notifier's key: posts made through its feedback link carry the
	// customer's pseudonym, not the openid.
	keys, err := feedbacklink.NewKeys(rt.cfg.FeedbackLinkSecret.Value(), rt.cfg.WeChatSecret.Value())
	switch {
	case err == nil:
		deps.Pseudonym = keys.Pseudonym
	case errors.Is(err, feedbacklink.ErrNoSecret):
		rt.log.Warn("feedback: neither KEFU_FEEDBACK_LINK_SECRET nor KEFU_WECHAT_SECRET is set; posts made through the feedback link (under the customer's pseudonym) are not linked to their sessions, posts are linked by openid only")
	default:
		st.Close()
		return nil, fmt.Errorf("feedback: %w", err)
	}
	svc, err := feedback.New(feedback.Config{MaxBackoff: rt.cfg.RetryMaxBackoff}, deps)
	if err != nil {
		st.Close()
		return nil, err
	}
	svc.Routes(rt.mux)
	rt.feedbackStore = st
	return feedbackModule{Service: svc, store: st}, nil
}

// customerStates opens the customer read model, once.
func (rt *runtime) customerStates(ctx context.Context) (*customers.Store, error) {
	if rt.states != nil {
		return rt.states, nil
	}
	st, err := customers.Open(ctx, rt.bus)
	if err != nil {
		return nil, err
	}
	rt.states = st
	return st, nil
}

// notifierConfig is the notifier's configuration: its own settings, the
// account's, and in the demo the demo's public URL and simulated Tucao.
func (rt *runtime) notifierConfig() (notifier.Config, error) {
	ncfg, err := notifier.FromConfig(rt.cfg)
	if err != nil {
		return ncfg, err
	}
	if ncfg.PublicURL == "" && rt.demo != nil {
		ncfg.PublicURL = rt.httpURL
	}
	if tucaoURL := rt.demo.TucaoURL(); tucaoURL != "" {
		// The simulated Tucao serves the feedback page and its login;
		// it takes only an https avatar, which the demo's own http page
		// cannot give.
		ncfg.TucaoURL = tucaoURL + "/product/"
		if ncfg.FeedbackAvatarURL == "" {
			ncfg.FeedbackAvatarURL = "https://txc.qq.com/static/desktop/img/products/def-product-logo.png"
		}
	}
	return ncfg, nil
}

// feedbackLinks makes the feedback links, once: the notifier's closed
// session messages and queue care's stale goodbyes carry the same links,
// which the notifier's page serves.
func (rt *runtime) feedbackLinks() (*feedbacklink.Links, error) {
	if rt.links != nil {
		return rt.links, nil
	}
	ncfg, err := rt.notifierConfig()
	if err != nil {
		return nil, err
	}
	links, err := feedbacklink.NewLinks(notifier.LinksConfig(ncfg, time.Now))
	if err != nil {
		return nil, fmt.Errorf("notifier: %w", err)
	}
	rt.links = links
	return links, nil
}

func buildNotifier(ctx context.Context, rt *runtime) (module, error) {
	client, err := rt.wechatClient(ctx)
	if err != nil {
		return nil, err
	}
	ncfg, err := rt.notifierConfig()
	if err != nil {
		return nil, err
	}
	links, err := rt.feedbackLinks()
	if err != nil {
		return nil, err
	}
	states, err := rt.customerStates(ctx)
	if err != nil {
		return nil, err
	}
	svc, err := notifier.New(ncfg, notifier.Deps{Bus: rt.bus, Sender: client, Logger: rt.log.Named("notifier"), Registerer: rt.registry,
		Suppress: states.SuppressNotice, Customers: states, Links: links})
	if err != nil {
		return nil, err
	}
	svc.Routes(rt.mux)
	return svc, nil
}

func buildQueuecare(ctx context.Context, rt *runtime) (module, error) {
	client, err := rt.wechatClient(ctx)
	if err != nil {
		return nil, err
	}
	links, err := rt.feedbackLinks()
	if err != nil {
		return nil, err
	}
	deps := queuecare.Deps{Bus: rt.bus, API: client, Logger: rt.log.Named("queuecare"), Registerer: rt.registry, FeedbackLink: links.Link}
	svc, err := queuecare.New(queuecare.Config{
		AppID: rt.cfg.WeChatAppID, Holder: holderName("queuecare"), LeavePhrases: rt.cfg.LeavePhrases,
		StaleAfter: rt.cfg.StaleAfter, StaleDryRun: rt.cfg.StaleDryRun, ReconcileCallsPerMinute: rt.cfg.ReconcileCallsPerMinute,
	}, deps)
	if err != nil {
		return nil, err
	}
	svc.Routes(rt.mux)
	return svc, nil
}
