package ingest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// Every callback sample, mapped as ingest maps it, is published with the
// bytes encoding/json gives: events.Encode writes the WeChat events without
// reflection, and consumers must not see the difference.
func TestEveryCallbackEncodesAsEncodingJSON(t *testing.T) {
	files, _ := filepath.Glob("../../internal/wechat/testdata/callbacks/*.xml")
	if len(files) < 20 {
		t.Fatalf("only %d callback samples found", len(files))
	}
	received := time.Date(2026, 11, 25, 18, 0, 1, 500_000_000, time.FixedZone("CST", 8*3600))
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			plain, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cb, err := wechat.ParseCallback(plain)
			if err != nil {
				t.Fatal(err)
			}
			ev, _ := ingest.Event(cb, appID, received)
			want, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := events.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%T encodes differently from encoding/json\n got: %s\nwant: %s", ev, got, want)
			}
		})
	}
}
