package config

import (
	"slices"
	"testing"
)

func TestChooseKeywords(t *testing.T) {
	tests := []struct {
		value   string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"人工， 选择客服 ,,", []string{"人工", "选择客服"}, false},
		{"off", nil, false},
		{"1", nil, true},
		{" , ", nil, true},
		{"这是一个非常非常非常非常非常非常非常非常非常长的关键词超过三十二个字符了吧", nil, true},
	}
	for _, tt := range tests {
		c, err := Load(func(name string) string {
			if name == "KEFU_KF_CHOOSE_KEYWORDS" {
				return tt.value
			}
			return ""
		})
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v, want error %v", tt.value, err, tt.wantErr)
			continue
		}
		if err == nil && !slices.Equal(c.ChooseKeywords, tt.want) {
			t.Errorf("%q: keywords %q, want %q", tt.value, c.ChooseKeywords, tt.want)
		}
	}
}
