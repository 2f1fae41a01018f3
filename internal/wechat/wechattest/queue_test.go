package wechattest

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// kfEvents lists the recorded session events as "event openid accounts".
func kfEvents(f *fake) []string {
	var out []string
	for _, d := range f.srv.Deliveries() {
		if !strings.HasPrefix(d.Event, "kf_") {
			continue
		}
		e := d.Event + " " + d.OpenID
		for _, tag := range []string{"KfAccount", "FromKfAccount", "ToKfAccount"} {
			if _, rest, ok := strings.Cut(d.Body, "<"+tag+"><![CDATA["); ok {
				v, _, _ := strings.Cut(rest, "]]>")
				e += " " + v
			}
		}
		out = append(out, e)
	}
	return out
}

func TestAutoAssignment(t *testing.T) {
	t.Run("an agent takes no more customers than auto_accept", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 2)
		for _, id := range []string{"o1", "o2", "o3"} {
			f.transfer(id, "")
		}
		st := f.srv.Snapshot()
		if got := servedBy(st); len(got) != 2 || got["o1"] != "alice@shop" || got["o2"] != "alice@shop" {
			t.Fatalf("served = %v, want o1 and o2 by alice", got)
		}
		if got := waitingIDs(st); !slices.Equal(got, []string{"o3"}) {
			t.Fatalf("waiting = %v, want [o3]", got)
		}
		if err := f.srv.SetAutoAccept("alice@shop", 3); err != nil {
			t.Fatal(err)
		}
		if got := servedBy(f.srv.Snapshot())["o3"]; got != "alice@shop" {
			t.Fatalf("after raising auto_accept o3 is served by %q", got)
		}
	})
	t.Run("a closed session frees the slot for the earliest waiting customer", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		for _, id := range []string{"o1", "o2", "o3"} {
			f.transfer(id, "")
		}
		f.mustOK(f.post(MethodSessionClose, nil, map[string]string{"kf_account": "alice@shop", "openid": "o1"}))
		st := f.srv.Snapshot()
		if servedBy(st)["o2"] != "alice@shop" || !slices.Equal(waitingIDs(st), []string{"o3"}) {
			t.Fatalf("after close: served %v, waiting %v", servedBy(st), waitingIDs(st))
		}
		want := []string{
			"kf_create_session o1 alice@shop",
			"kf_close_session o1 alice@shop",
			"kf_create_session o2 alice@shop",
		}
		if got := kfEvents(f); !slices.Equal(got, want) {
			t.Fatalf("events = %q\nwant %q", got, want)
		}
	})
	t.Run("customers go to the least busy agent", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 5)
		f.agent("bob@shop", 5)
		for i := range 4 {
			f.transfer(fmt.Sprintf("o%d", i), "")
		}
		for _, a := range f.srv.Snapshot().Agents {
			if a.Accepted != 2 {
				t.Fatalf("%s serves %d, want 2", a.Account, a.Accepted)
			}
		}
	})
	t.Run("agents offline or with auto_accept 0 get nobody until that changes", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 0)
		if err := f.srv.AddAgent("bob@shop", "Bob"); err != nil {
			t.Fatal(err)
		}
		if err := f.srv.SetAutoAccept("bob@shop", 3); err != nil {
			t.Fatal(err)
		}
		f.transfer("o1", "")
		if st := f.srv.Snapshot(); len(st.Sessions) != 0 {
			t.Fatalf("sessions = %v, want none", st.Sessions)
		}
		if err := f.srv.SetAgentStatus("bob@shop", StatusMobile); err != nil {
			t.Fatal(err)
		}
		if got := servedBy(f.srv.Snapshot())["o1"]; got != "bob@shop" {
			t.Fatalf("o1 served by %q after bob came online", got)
		}
	})
	t.Run("a customer waiting for one agent waits only for that agent and holds nobody up", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		f.agent("bob@shop", 5)
		f.transfer("o1", "alice@shop") // alice is now full
		f.transfer("o2", "alice@shop")
		f.transfer("o3", "")
		st := f.srv.Snapshot()
		if got := servedBy(st); got["o1"] != "alice@shop" || got["o3"] != "bob@shop" || got["o2"] != "" {
			t.Fatalf("served = %v", got)
		}
		if len(st.Waiting) != 1 || st.Waiting[0].OpenID != "o2" || st.Waiting[0].KfAccount != "alice@shop" {
			t.Fatalf("waiting = %+v, want o2 for alice", st.Waiting)
		}
		f.mustOK(f.post(MethodSessionClose, nil, map[string]string{"kf_account": "alice@shop", "openid": "o1"}))
		if got := servedBy(f.srv.Snapshot())["o2"]; got != "alice@shop" {
			t.Fatalf("o2 served by %q after alice freed up", got)
		}
	})
	t.Run("transferring a waiting or served customer again changes nothing", func(t *testing.T) {
		f := newFake(t, nil)
		f.agent("alice@shop", 1)
		f.transfer("o1", "")
		f.transfer("o2", "")
		f.transfer("o1", "")
		f.transfer("o2", "alice@shop")
		st := f.srv.Snapshot()
		if len(st.Sessions) != 1 || len(st.Waiting) != 1 || st.Waiting[0].KfAccount != "" {
			t.Fatalf("state = %+v", st)
		}
	})
	t.Run("a waiting customer can abandon the queue", func(t *testing.T) {
		f := newFake(t, nil)
		f.transfer("o1", "")
		if err := f.srv.AbandonWaiting("o1"); err != nil {
			t.Fatal(err)
		}
		var apiE *APIError
		if err := f.srv.AbandonWaiting("o1"); !errors.As(err, &apiE) || apiE.Code != CodeNoSession {
			t.Fatalf("second abandon: %v, want 65413", err)
		}
		if n := len(f.srv.Snapshot().Waiting); n != 0 {
			t.Fatalf("%d waiting", n)
		}
	})
}

func TestGetWaitCase(t *testing.T) {
	for _, field := range []string{"createtime", "latest_time"} {
		t.Run("lists the 100 earliest of 150 with count 150 using "+field, func(t *testing.T) {
			f := newFake(t, func(c *Config) { c.WaitCaseTimeField = field })
			for i := range 150 {
				f.transfer(fmt.Sprintf("o%03d", i), "")
				f.clock.Advance(time.Second)
			}
			// o000 writes again: latest_time moves, createtime and order do not.
			if _, err := f.srv.CustomerMessage(t.Context(), "o000", "还在吗？"); err != nil {
				t.Fatal(err)
			}
			resp := f.get(MethodWaitCase, nil, true)
			if got := int(resp["count"].(float64)); got != 150 {
				t.Fatalf("count = %d, want 150", got)
			}
			list := resp["waitcaselist"].([]any)
			if len(list) != 100 {
				t.Fatalf("%d cases listed, want 100", len(list))
			}
			for i, c := range list {
				m := c.(map[string]any)
				if m["openid"] != fmt.Sprintf("o%03d", i) {
					t.Fatalf("case %d is %v, want the %d-th earliest", i, m["openid"], i)
				}
				other := map[string]string{"createtime": "latest_time", "latest_time": "createtime"}[field]
				if _, ok := m[other]; ok {
					t.Fatalf("case has %s in %s mode", other, field)
				}
				if _, ok := m["kf_account"]; !ok {
					t.Fatal("case without kf_account")
				}
			}
			first := int64(list[0].(map[string]any)[field].(float64))
			want := testStart.Unix()
			if field == "latest_time" {
				want = testStart.Add(150 * time.Second).Unix()
			}
			if first != want {
				t.Fatalf("first case %s = %d, want %d", field, first, want)
			}
		})
	}
}

func TestSessionCreate(t *testing.T) {
	tests := []struct {
		name    string
		account string
		openid  string
		want    int
		served  string // who serves openid afterwards
	}{
		{"an offline agent cannot get a session", "carol@shop", "o9", CodeKFOffline, ""},
		{"an unknown agent is 65401", "zed@shop", "o9", CodeInvalidKFAccount, ""},
		{"an unknown customer is 40003", "alice@shop", "nobody", CodeInvalidOpenID, ""},
		{"a customer served by another agent is 65414", "bob@shop", "o1", CodeServedByOtherKF, "alice@shop"},
		{"creating the session an agent already has succeeds", "alice@shop", "o1", 0, "alice@shop"},
		{"create ignores auto_accept and takes the customer off the queue", "bob@shop", "o9", 0, "bob@shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, nil)
			f.agent("alice@shop", 1)
			f.agent("bob@shop", 0)
			if err := f.srv.AddAgent("carol@shop", "Carol"); err != nil {
				t.Fatal(err)
			}
			f.transfer("o1", "")       // alice
			f.transfer("o9", "")       // waits: nobody free
			before := len(kfEvents(f)) // kf_create_session o1
			got := errcode(f.post(MethodSessionCreate, nil, map[string]string{"kf_account": tt.account, "openid": tt.openid, "text": "VIP"}))
			if got != tt.want {
				t.Fatalf("errcode = %d, want %d", got, tt.want)
			}
			st := f.srv.Snapshot()
			if servedBy(st)[tt.openid] != tt.served {
				t.Fatalf("%s served by %q, want %q", tt.openid, servedBy(st)[tt.openid], tt.served)
			}
			events := kfEvents(f)[before:]
			if tt.want == 0 && tt.served != "alice@shop" {
				if !slices.Equal(events, []string{"kf_create_session " + tt.openid + " " + tt.account}) {
					t.Fatalf("events = %q", events)
				}
				if slices.Contains(waitingIDs(st), tt.openid) {
					t.Fatal("customer still waiting after create")
				}
			} else if len(events) != 0 {
				t.Fatalf("unexpected events %q", events)
			}
		})
	}
}

func TestSessionClose(t *testing.T) {
	tests := []struct {
		name    string
		account string
		openid  string
		want    int
	}{
		{"the serving agent closes the session", "alice@shop", "o1", 0},
		{"another agent cannot close it", "bob@shop", "o1", CodeServedByOtherKF},
		{"a customer still waiting has no session to close", "alice@shop", "o2", CodeNoSession},
		{"a customer in neither state has no session", "alice@shop", "o3", CodeNoSession},
		{"an unknown agent is 65401", "zed@shop", "o1", CodeInvalidKFAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, nil)
			f.agent("alice@shop", 1)
			f.agent("bob@shop", 0)
			f.transfer("o1", "")
			f.transfer("o2", "alice@shop")
			if _, err := f.srv.CustomerMessage(t.Context(), "o3", "hi"); err != nil {
				t.Fatal(err)
			}
			got := errcode(f.post(MethodSessionClose, nil, map[string]string{"kf_account": tt.account, "openid": tt.openid}))
			if got != tt.want {
				t.Fatalf("errcode = %d, want %d", got, tt.want)
			}
			closed := slices.Contains(kfEvents(f), "kf_close_session "+tt.openid+" "+tt.account)
			if closed != (tt.want == 0) {
				t.Fatalf("kf_close_session sent = %v with errcode %d", closed, got)
			}
		})
	}
}

func TestGetSessionAndSessionList(t *testing.T) {
	f := newFake(t, nil)
	f.agent("alice@shop", 2)
	f.transfer("o1", "")
	f.clock.Advance(time.Minute)
	f.transfer("o2", "")
	if err := f.srv.SetAutoAccept("alice@shop", 0); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.transfer("o3", "")
	if _, err := f.srv.CustomerMessage(t.Context(), "o4", "hi"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		openid  string
		code    int
		account string
		created int64
	}{
		{"o1", 0, "alice@shop", testStart.Unix()},
		{"o3", 0, "", testStart.Add(2 * time.Minute).Unix()}, // waiting: when it joined the queue
		{"o4", 0, "", 0},
		{"unknown", CodeInvalidOpenID, "", 0},
	}
	for _, tt := range tests {
		t.Run("getsession "+tt.openid, func(t *testing.T) {
			resp := f.get(MethodSessionGet, url.Values{"openid": {tt.openid}}, true)
			if errcode(resp) != tt.code {
				t.Fatalf("errcode = %d, want %d", errcode(resp), tt.code)
			}
			if tt.code != 0 {
				return
			}
			if resp["kf_account"] != tt.account || int64(resp["createtime"].(float64)) != tt.created || resp["errmsg"] != "ok" {
				t.Fatalf("getsession = %v, want kf_account %q createtime %d", resp, tt.account, tt.created)
			}
		})
	}
	t.Run("getsessionlist lists the agent's sessions by createtime", func(t *testing.T) {
		got := jsonString(t, f.get(MethodSessionList, url.Values{"kf_account": {"alice@shop"}}, true))
		want := fmt.Sprintf(`{"sessionlist":[{"createtime":%d,"openid":"o1"},{"createtime":%d,"openid":"o2"}]}`, testStart.Unix(), testStart.Add(time.Minute).Unix())
		if got != want {
			t.Fatalf("getsessionlist = %s\nwant %s", got, want)
		}
		if c := errcode(f.get(MethodSessionList, url.Values{"kf_account": {"zed@shop"}}, true)); c != CodeInvalidKFAccount {
			t.Fatalf("unknown agent: errcode %d", c)
		}
	})
}

func TestSwitchAndCloseFromTheClient(t *testing.T) {
	f := newFake(t, nil)
	f.agent("alice@shop", 1)
	f.agent("bob@shop", 0)
	if err := f.srv.AddAgent("carol@shop", "Carol"); err != nil {
		t.Fatal(err)
	}
	f.transfer("o1", "")
	f.transfer("o2", "")
	var apiE *APIError
	if err := f.srv.SwitchSession("o1", "carol@shop"); !errors.As(err, &apiE) || apiE.Code != CodeKFOffline {
		t.Fatalf("switch to an offline agent: %v, want 65415", err)
	}
	if err := f.srv.SwitchSession("o1", "bob@shop"); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.CloseSession("o1"); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.CloseSession("o1"); !errors.As(err, &apiE) || apiE.Code != CodeNoSession {
		t.Fatalf("second close: %v, want 65413", err)
	}
	want := []string{
		"kf_create_session o1 alice@shop",
		"kf_switch_session o1 alice@shop bob@shop", // alice is free again: o2 is hers
		"kf_create_session o2 alice@shop",
		"kf_close_session o1 bob@shop",
	}
	if got := kfEvents(f); !slices.Equal(got, want) {
		t.Fatalf("events = %q\nwant %q", got, want)
	}
}
