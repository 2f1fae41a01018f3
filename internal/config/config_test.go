package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsFollowTheContract(t *testing.T) {
	c, err := config.Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURLs != nil || c.NATSListen != "127.0.0.1:4222" || c.DataDir != "./kefu-data" || c.HTTPAddr != ":8080" ||
		c.LogFormat != "" || c.LogLevel != "info" || c.WeChatAPIBase != "https://api.weixin.qq.com" ||
		c.TucaoAPIBase != "https://txc.qq.com" || c.TucaoPollInterval != time.Minute || c.QueuePollInterval != 15*time.Second ||
		c.StreamMaxAge != 720*time.Hour || !c.WeChatTransfer || c.NATSReplicas != 1 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	tests := []struct{ name, value string }{
		{"KEFU_LOG_FORMAT", "xml"},
		{"KEFU_LOG_LEVEL", "loud"},
		{"KEFU_TUCAO_POLL_INTERVAL", "soon"},
		{"KEFU_QUEUE_POLL_INTERVAL", "-5s"},
		{"KEFU_WECHAT_AES_KEY", "short"},
		{"KEFU_WECHAT_TRANSFER", "maybe"},
		{"KEFU_NATS_REPLICAS", "7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(env(map[string]string{tt.name: tt.value}))
			if err == nil || !strings.HasPrefix(err.Error(), tt.name+":") {
				t.Fatalf("err = %v; want it to start with %s", err, tt.name)
			}
		})
	}
}

func TestNATSURLsAreSplit(t *testing.T) {
	c, err := config.Load(env(map[string]string{"KEFU_NATS_URL": "nats://a:4222, nats://b:4222,"}))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.NATSURLs) != "[nats://a:4222 nats://b:4222]" {
		t.Fatalf("urls %v", c.NATSURLs)
	}
}

func TestMissingSettingsAreNamed(t *testing.T) {
	c, _ := config.Load(env(map[string]string{"KEFU_WECHAT_APPID": "wx1"}))
	err := c.Check("ingest", config.NeedCallback)
	var missing *config.MissingError
	if !errors.As(err, &missing) || missing.Var != "KEFU_WECHAT_TOKEN" || !strings.Contains(err.Error(), "KEFU_WECHAT_TOKEN is required by ingest") {
		t.Fatalf("err = %v", err)
	}
	c.WeChatToken = "t"
	if err := c.Check("ingest", config.NeedCallback); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	c, _ := config.Load(env(map[string]string{"KEFU_WECHAT_SECRET": "s3cr3t-value", "KEFU_TUCAO_SECRET": "tucao123", "KEFU_ADMIN_TOKEN": "adm1n"}))
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, c)
		for _, secret := range []string{"s3cr3t-value", "tucao123", "adm1n"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s prints the secret %q: %s", format, secret, out)
			}
		}
	}
	if c.WeChatSecret.Value() != "s3cr3t-value" {
		t.Error("the value itself must stay available")
	}
}
