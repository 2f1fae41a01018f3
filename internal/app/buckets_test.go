package app

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/tucao/tucaotest"
)

// Every KV bucket `kefu all` creates — with the settings that add the
// optional ones and Tucao — is declared in internal/bus (bus.Buckets), and every
// declared bucket is created: the declaration is the one list of them.
// The NATS connections kefu all holds are logged, as the bus's package
// documentation reports them.
func TestEveryBucketIsDeclared(t *testing.T) {
	srv := natstest.Run(t, nil)
	tc := tucaotest.New(tucaotest.Options{RateLimit: -1})
	t.Cleanup(tc.Close)
	r := startAll(t, map[string]string{
		"KEFU_NATS_URL":               srv.ClientURL(),
		"KEFU_TUCAO_PRODUCT_ID":       tc.ProductID(),
		"KEFU_TUCAO_SECRET":           tc.Secret(),
		"KEFU_TUCAO_API_BASE":         tc.URL(),
		"KEFU_WECHAT_ALLOW_PLAINTEXT": "true",
		"KEFU_KF_CHOOSE_KEYWORDS":     "人工",
	})
	_, js := natstest.Connect(t, srv)
	var got []string
	natstest.Eventually(t, 20*time.Second, func() bool {
		got = got[:0]
		names := js.KeyValueStoreNames(context.Background())
		for name := range names.Name() {
			got = append(got, name)
		}
		if names.Error() != nil {
			return false
		}
		slices.Sort(got)
		return len(got) >= len(bus.Buckets)
	}, "every declared bucket; %s", lazy(func() string { return fmt.Sprintf("buckets %q; internal/bus declares %q", got, bus.Buckets) }))
	want := slices.Sorted(slices.Values(bus.Buckets))
	if !slices.Equal(got, want) {
		t.Errorf("kefu all created the buckets %q; internal/bus declares %q", got, want)
	}
	if _, err := srv.Connz(nil); err == nil {
		t.Logf("kefu all holds %d NATS connections", srv.NumClients()-1) // less this test's own
	}
	r.stop()
}
