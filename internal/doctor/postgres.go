package doctor

import (
	"context"
	"fmt"
	"strings"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// PostgresCheck connects to KEFU_FEEDBACK_DSN when it is a PostgreSQL DSN,
// runs SELECT 1 and compares the applied schema migrations with this
// kefu's, changing nothing.
func PostgresCheck(cfg config.Config) Check {
	return Check{Name: "PostgreSQL", Run: func(ctx context.Context) []Result {
		dsn := cfg.FeedbackDSN.Value()
		switch {
		case dsn == "":
			return []Result{{Status: Skip, Found: "KEFU_FEEDBACK_DSN is not set: feedback uses SQLite in KEFU_DATA_DIR"}}
		case !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://"):
			return []Result{{Status: Fail, Found: "KEFU_FEEDBACK_DSN is not a postgres:// or postgresql:// URL",
				Fix: "set KEFU_FEEDBACK_DSN=postgres://user:password@host:5432/db, or unset it for SQLite"}}
		}
		st, err := store.PostgresStatus(ctx, dsn)
		if err != nil {
			return []Result{{Status: Fail, Found: "KEFU_FEEDBACK_DSN: " + redactDSN(err.Error(), dsn),
				Fix: "correct KEFU_FEEDBACK_DSN (host, port, user, password, database, sslmode) or start PostgreSQL"}}
		}
		switch {
		case st.Applied == 0:
			return []Result{{Status: Warn, Found: fmt.Sprintf("connected; no schema yet (this kefu's is version %d)", st.Latest),
				Fix: "start the feedback role once: it applies the migrations"}}
		case st.Applied < st.Latest:
			return []Result{{Status: Warn, Found: fmt.Sprintf("connected; schema at version %d of %d", st.Applied, st.Latest),
				Fix: "start the feedback role of this version: it applies the missing migrations"}}
		case st.Applied > st.Latest:
			return []Result{{Status: Fail, Found: fmt.Sprintf("connected; schema at version %d, newer than this kefu's %d", st.Applied, st.Latest),
				Fix: "run the kefu version that migrated the database, or a newer one"}}
		}
		return []Result{{Status: OK, Found: fmt.Sprintf("connected; SELECT 1 answers; schema at version %d (current)", st.Applied)}}
	}}
}

// redactDSN keeps the DSN's password out of an error text.
func redactDSN(msg, dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "***")
			}
		}
	}
	return msg
}
