package tucao

import "testing"

func TestSign(t *testing.T) {
	tests := []struct {
		name      string
		timestamp string
		secret    string
		want      string
	}{
		{"documented example: md5 of timestamp followed by secret", "1539854769", "tucao123", "ad22dba05d9cdf7876a15ecf58861d1c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sign(tt.timestamp, tt.secret); got != tt.want {
				t.Errorf("Sign(%q, %q) = %q, want %q", tt.timestamp, tt.secret, got, tt.want)
			}
		})
	}
}

func TestSignChangesWithTimestampAndSecret(t *testing.T) {
	base := Sign("1539854769", "tucao123")
	for name, got := range map[string]string{
		"a later timestamp gives another signature": Sign("1539854770", "tucao123"),
		"another secret gives another signature":    Sign("1539854769", "tucao124"),
		"the order of the parts matters":            Sign("tucao123", "1539854769"),
	} {
		if got == base {
			t.Errorf("%s: both are %s", name, got)
		}
	}
}
