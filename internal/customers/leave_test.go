package customers_test

import (
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/customers"
)

func TestLeaveDetector(t *testing.T) {
	d, err := customers.NewLeaveDetector(customers.DefaultLeavePhrases)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		text string
		want bool
	}{
		{"a default phrase matches", "不等了", true},
		{"every default phrase matches", "退出排队", true},
		{"surrounding space is ignored", "  取消排队\n", true},
		{"an ideographic space is ignored", "\u3000不等了\u3000", true},
		{"full-width punctuation is ignored", "不等了！！", true},
		{"half-width punctuation is ignored", "不等了!", true},
		{"Chinese full stop and ellipsis are ignored", "取消排队。。。…", true},
		{"a tilde in either width is ignored", "不等了~～", true},
		{"an emoji is ignored", "不等了😡", true},
		{"an emoji with a variation selector is ignored", "不等了☹️", true},
		{"a zero-width space is ignored", "不\u200b等了", true},
		{"inner space is ignored", "取消 排队", true},
		{"a longer sentence is not a leave request", "我不等了，先去吃饭", false},
		{"a question about leaving is not a leave request", "怎么取消排队", false},
		{"a negation is not a leave request", "不要取消排队", false},
		{"an unrelated message is not a leave request", "你好", false},
		{"an empty message is not a leave request", "", false},
		{"punctuation alone is not a leave request", "！！！", false},
		{"a very long message is not a leave request", "不等了" + strings.Repeat(" ", 300), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.IsLeave(tt.text); got != tt.want {
				t.Errorf("IsLeave(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestLeaveDetectorWithConfiguredPhrases(t *testing.T) {
	d, err := customers.NewLeaveDetector([]string{"ＳＴＯＰ", "算了"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		text string
		want bool
	}{
		{"a full-width phrase matches half-width text of any case", "stop", true},
		{"a configured Chinese phrase matches", "算了。", true},
		{"a default phrase no longer matches", "不等了", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.IsLeave(tt.text); got != tt.want {
				t.Errorf("IsLeave(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestLeaveDetectorRefusesPhrasesWithoutLetters(t *testing.T) {
	for _, phrases := range [][]string{nil, {"。。"}, {"不等了", " "}} {
		if _, err := customers.NewLeaveDetector(phrases); err == nil {
			t.Errorf("NewLeaveDetector(%q) accepted", phrases)
		}
	}
}

func TestNilLeaveDetectorMatchesNothing(t *testing.T) {
	var d *customers.LeaveDetector
	if d.IsLeave("不等了") {
		t.Fatal("a nil detector matched")
	}
}
