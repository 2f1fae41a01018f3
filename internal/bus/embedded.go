package bus

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
)

// ErrListenInUse is returned when the embedded server's address is taken.
var ErrListenInUse = errors.New("address in use")

// credentials are how kefu authenticates: the client options, and what
// an embedded server requires.
type credentials struct {
	options []nats.Option
	users   []*server.User
	nkeys   []*server.NkeyUser
}

// credentials checks the configured credentials. Errors name the variable
// at fault and never quote a value.
func (c *Config) credentials() (credentials, error) {
	var cr credentials
	set := 0
	for _, v := range []string{c.CredsFile, c.User + c.Password, c.NKeySeed} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return cr, errors.New("set one of KEFU_NATS_CREDS, KEFU_NATS_USER (with KEFU_NATS_PASSWORD) and KEFU_NATS_NKEY_SEED, not several")
	}
	switch {
	case c.CredsFile != "":
		cr.options = append(cr.options, nats.UserCredentials(c.CredsFile))
	case c.User != "" || c.Password != "":
		if c.User == "" || c.Password == "" {
			return cr, errors.New("KEFU_NATS_USER and KEFU_NATS_PASSWORD go together: set both or neither")
		}
		cr.options = append(cr.options, nats.UserInfo(c.User, c.Password))
		// No Permissions: kefu's own user may do everything.
		cr.users = []*server.User{{Username: c.User, Password: c.Password}}
	case c.NKeySeed != "":
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(c.NKeySeed)))
		if err != nil {
			return cr, errors.New("KEFU_NATS_NKEY_SEED is not a valid nkey seed (want a user seed, SU…, e.g. from `nk -gen user`)")
		}
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return cr, errors.New("KEFU_NATS_NKEY_SEED is not the seed of a user nkey (want SU…, e.g. from `nk -gen user`)")
		}
		cr.options = append(cr.options, nats.Nkey(pub, kp.Sign))
		cr.nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	return cr, nil
}

// isLoopback reports whether host (of KEFU_NATS_LISTEN) is reachable only
// from this machine. "" and 0.0.0.0 are every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withLastError adds why the last connection attempt failed (a refused
// password reads "authorization violation", not just a timeout). The
// server's errors name no credentials.
func withLastError(err error, nc *nats.Conn) error {
	if last := nc.LastError(); last != nil {
		return fmt.Errorf("%w (last error: %w)", err, last)
	}
	return err
}

func startEmbedded(cfg Config, auth credentials) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("KEFU_NATS_LISTEN %q: %w", cfg.Listen, err)
	}
	var port int
	if _, err := fmt.Sscanf(portStr, "%d", &port); err != nil {
		return nil, fmt.Errorf("KEFU_NATS_LISTEN %q: bad port", cfg.Listen)
	}
	if port != 0 {
		// nats-server logs and exits on a busy port; ask first for a clear error.
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s (KEFU_NATS_LISTEN): %w; another NATS server may be running there: set KEFU_NATS_URL=nats://%s to use it, or choose another KEFU_NATS_LISTEN", cfg.Listen, ErrListenInUse, cfg.Listen)
		}
		l.Close()
	} else {
		port = server.RANDOM_PORT
	}
	storeDir := filepath.Join(cfg.DataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("create KEFU_DATA_DIR: %w", err)
	}
	if len(auth.users) == 0 && len(auth.nkeys) == 0 && !isLoopback(host) {
		cfg.Logger.Warn("embedded NATS listens beyond this machine without credentials: whoever reaches the port can read every event and the WeChat access token in kefu_token, and publish forged events; set KEFU_NATS_USER and KEFU_NATS_PASSWORD (or KEFU_NATS_NKEY_SEED), or listen on 127.0.0.1",
			zap.String("listen", cfg.Listen))
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "kefu-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
		// With credentials configured, every client must present them.
		Users: auth.users,
		Nkeys: auth.nkeys,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s did not start", cfg.Listen)
	}
	return srv, nil
}

// redactURL drops user:password from a NATS URL list for logs and errors.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
