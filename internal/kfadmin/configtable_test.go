package kfadmin_test

import (
	"testing"

	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/kfadmin"
)

// TestServerTimeoutDefaultIsTheTables: `kefu help` prints the table's
// default of KEFU_SERVER_TIMEOUT; kefu kf --server waits that long.
func TestServerTimeoutDefaultIsTheTables(t *testing.T) {
	v, ok := config.Lookup("KEFU_SERVER_TIMEOUT")
	if !ok {
		t.Fatal("KEFU_SERVER_TIMEOUT is not in config.Vars")
	}
	if got := kfadmin.DefaultServerTimeout.String(); got != v.Default {
		t.Errorf("kefu kf waits %s, kefu help prints %s", got, v.Default)
	}
	cfg, remote, err := kfadmin.ResolveRemote("http://127.0.0.1:1", true, func(name string) string {
		return map[string]string{"KEFU_ADMIN_TOKEN": "an-admin-token", "HOME": t.TempDir()}[name]
	})
	if err != nil || !remote || cfg.Timeout != kfadmin.DefaultServerTimeout {
		t.Errorf("with KEFU_SERVER_TIMEOUT unset: timeout %v, remote %v, err %v", cfg.Timeout, remote, err)
	}
}
