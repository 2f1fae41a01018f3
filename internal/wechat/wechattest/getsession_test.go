package wechattest

import (
	"net/http/httptest"
	"testing"
)

// getsession answers a waiting customer's queue time, or 0 with
// GetSessionWaitingZero; a served customer's session either way.
func TestGetSessionForAWaitingCustomerBothWays(t *testing.T) {
	for _, zero := range []bool{false, true} {
		s, err := New(Config{AppID: "wxgetsession00001", AppSecret: "secret", Token: "tok", GetSessionWaitingZero: zero})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.TransferToQueue("o-wait", ""); err != nil {
			t.Fatal(err)
		}
		resp, _ := s.handleSessionGet(httptest.NewRequest("GET", "/?openid=o-wait", nil), nil)
		got := resp.(getSessionResponse)
		if got.KfAccount != "" || (got.CreateTime == 0) != zero {
			t.Errorf("zero=%v: getsession for a waiting customer %+v", zero, got)
		}
	}
}
