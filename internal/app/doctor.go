package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/doctor"
)

// doctorOptions are the flags of `kefu doctor`.
type doctorOptions struct {
	roles   []string
	json    bool
	timeout time.Duration
}

// runDoctor is `kefu doctor [--role R]… [--json] [--timeout 5s]`: it loads
// the configuration as the roles do, runs the checks of internal/doctor
// and prints one line per check; it fails (exit 1) when a check failed.
// Help and usage mistakes are answered before anything is dialled.
func runDoctor(ctx context.Context, args []string, stdout, _ io.Writer) error {
	return doctorMain(ctx, args, os.Getenv, stdout, nil)
}

// doctorMain is runDoctor with the environment read through getenv and the
// HTTP calls made by hc (nil: a plain client; each check's deadline bounds
// them).
func doctorMain(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, hc *http.Client) error {
	cfg, loadErr := config.Load(getenv)
	opts, err := parseDoctorFlags(args, &cfg, loadErr == nil, stdout)
	if err != nil {
		return err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	checks := []doctor.Check{doctor.ConfigCheck(cfg, loadErr, doctorNeeds(cfg, opts.roles))}
	if loadErr == nil {
		natsChecks, closeNATS := doctor.NATSChecks(doctorNATSTarget(cfg, getenv))
		defer closeNATS()
		checks = append(checks, natsChecks...)
		checks = append(checks, doctor.PostgresCheck(cfg))
		checks = append(checks, doctor.WeChatChecks(cfg, hc)...)
		checks = append(checks, doctor.CallbackCheck(cfg, hc, nil), doctor.TucaoCheck(cfg, hc))
	}
	total := max(doctor.DefaultTotalTimeout, time.Duration(len(checks))*opts.timeout)
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	results := doctor.Run(ctx, checks, opts.timeout)
	if opts.json {
		err = doctor.WriteJSON(stdout, results)
	} else {
		err = doctor.Write(stdout, results, colourful(stdout, getenv))
	}
	if err != nil {
		return err
	}
	if n := doctor.Count(results, doctor.Fail); n > 0 {
		return fmt.Errorf("doctor: %d %s failed", n, plural(n, "check", "checks"))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func parseDoctorFlags(args []string, cfg *config.Config, apply bool, stdout io.Writer) (doctorOptions, error) {
	opts := doctorOptions{timeout: doctor.DefaultCheckTimeout}
	fs := flag.NewFlagSet("kefu doctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("role", "a role whose settings to check (repeat or comma-separate; default all)", func(s string) error {
		for _, r := range strings.Split(s, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			if _, ok := findRole(r); !ok || r == "demo" {
				return fmt.Errorf("unknown role %q", r)
			}
			opts.roles = append(opts.roles, r)
		}
		return nil
	})
	fs.BoolVar(&opts.json, "json", false, "print the results as JSON")
	fs.DurationVar(&opts.timeout, "timeout", doctor.DefaultCheckTimeout, "how long each check may take")
	for _, v := range config.Vars {
		if !v.Flag() {
			continue
		}
		fs.Func(flagName(v.Name), v.Usage(), func(s string) error {
			if !apply {
				return nil // the configuration does not load; the report says why
			}
			return cfg.Set(v.Name, s)
		})
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kefu doctor [--role R] [--json] [--timeout 5s] [--<setting> value]\n\n"+
			"Checks the configuration, NATS and JetStream, PostgreSQL, the WeChat credentials and 多客服, the callback URL\n"+
			"as WeChat calls it, and Tucao; prints ok, FAIL, warn or skip per check with the fix for each failure.\n"+
			"Exit 0 when nothing failed, 1 otherwise. It never starts a NATS server nor creates KEFU_DATA_DIR.\n\n"+
			"Flags (the settings' flags override the environment, as for the roles):\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return opts, err
		}
		return opts, usageError{"doctor: " + err.Error()}
	}
	if fs.NArg() == 1 && fs.Arg(0) == "help" {
		fs.SetOutput(stdout)
		fs.Usage()
		return opts, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return opts, usageError{fmt.Sprintf("doctor: unexpected argument %q", fs.Arg(0))}
	}
	if opts.timeout <= 0 {
		return opts, usageError{"doctor: --timeout must be positive"}
	}
	if len(opts.roles) == 0 {
		opts.roles = []string{"all"}
	}
	return opts, nil
}

// doctorNeeds are the settings the roles need, as runRole checks them: a
// lenient role (all) runs without a missing integration, a single role
// refuses to start, except for an optional module none of whose settings
// is set.
func doctorNeeds(cfg config.Config, roles []string) []doctor.Need {
	var out []doctor.Need
	for _, name := range roles {
		r, _ := findRole(name)
		for _, m := range r.modules {
			need, ok := moduleNeeds[m]
			if !ok || slices.ContainsFunc(out, func(n doctor.Need) bool { return n.Role == r.name && n.Need.Integration == need.Integration }) {
				continue
			}
			out = append(out, doctor.Need{Role: r.name, Need: need, Lenient: r.lenient || skipModule(cfg, m)})
		}
	}
	return out
}

// doctorNATSTarget is the NATS of the command-line tools (resolveToolTarget),
// opened as they open it: never an embedded server, never a data directory.
func doctorNATSTarget(cfg config.Config, getenv func(string) string) doctor.NATSTarget {
	t, err := resolveToolTarget(cfg, getenv)
	if err != nil {
		return doctor.NATSTarget{URLs: "(none)", Source: "the nats context", Open: func(context.Context) (*doctor.NATS, error) {
			return nil, err
		}}
	}
	return doctor.NATSTarget{URLs: redactURLs(t.urls), Source: t.source, Open: func(ctx context.Context) (*doctor.NATS, error) {
		b, err := openToolBus(ctx, cfg, "kefu-doctor", getenv, nil)
		if err != nil {
			return nil, err
		}
		return &doctor.NATS{JS: doctorNATS{b}, Close: b.Close}, nil
	}}
}

// doctorNATS is the bus as the doctor reads it: buckets are opened, never
// created.
type doctorNATS struct{ *bus.Bus }

func (d doctorNATS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return d.OpenKeyValue(ctx, bucket)
}

// colourful reports whether w is a terminal that wants colours.
func colourful(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok || getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false
	}
	return isatty.IsTerminal(f.Fd())
}
