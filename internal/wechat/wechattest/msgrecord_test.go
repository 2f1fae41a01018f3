package wechattest

import (
	"strconv"
	"testing"
	"time"
)

// The fake's own checks of getmsglist, as WeChat's errcodes.
func TestMsgListErrors(t *testing.T) {
	f := newFake(t, nil)
	now := testStart.Unix()
	day := int64(24 * time.Hour / time.Second)
	tests := []struct {
		name string
		body string
		want int
	}{
		{"24 hours exactly is allowed", `{"starttime":` + itoa(now-day) + `,"endtime":` + itoa(now) + `,"msgid":1,"number":10}`, 0},
		{"over 24 hours is 65417", `{"starttime":` + itoa(now-day-1) + `,"endtime":` + itoa(now) + `,"msgid":1,"number":10}`, CodeMsgRecordSpan},
		{"number over 10000 is 65416", `{"starttime":` + itoa(now-60) + `,"endtime":` + itoa(now) + `,"msgid":1,"number":10001}`, CodeInvalidQueryParams},
		{"endtime before starttime is 65416", `{"starttime":` + itoa(now) + `,"endtime":` + itoa(now-60) + `,"msgid":1,"number":10}`, CodeInvalidQueryParams},
		{"a missing field is 65416", `{"starttime":` + itoa(now-60) + `,"endtime":` + itoa(now) + `,"number":10}`, CodeInvalidQueryParams},
		{"not JSON is 47001", `{"starttime":`, CodeDataFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.postRaw(MethodMsgRecord, tt.body)
			if code, _ := resp["errcode"].(float64); int(code) != tt.want {
				t.Errorf("errcode %v, want %d (%v)", resp["errcode"], tt.want, resp)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
