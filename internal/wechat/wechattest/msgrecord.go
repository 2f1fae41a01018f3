package wechattest

import (
	"errors"
	"net/http"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// The message record (customservice/msgrecord/getmsglist).
//
// WeChat keeps what agents and customers said in a session: opercode 2002
// for a message the agent sent (typed in the 多客服 client, or sent by
// custom/send with customservice.kf_account) and 2003 for a customer's
// message the agent received. WeChat pushes no callback for what an agent
// types; the record is the only place it shows. The fake records:
//
//   - 2002 for every accepted custom/send that names a kf_account, and for
//     [Server.AgentMessage] (an agent typing in the client; no callback);
//   - 2003 for every customer message callback sent while the customer is
//     in a session, the worker being the serving agent.
//
// POST getmsglist {starttime, endtime, msgid, number} answers the records
// whose time lies in [starttime, endtime] and whose id is at least msgid,
// oldest first, at most number of them, with number the count returned and
// msgid the id to ask for next. endtime before starttime, number outside
// 1..10000 or msgid below 1: 65416; endtime−starttime over 24 h: 65417.
// Records beyond Config.HistoryLimit are dropped, oldest first.

// MethodMsgRecord is getmsglist's path, for SetLatency and CallCount.
const MethodMsgRecord = "customservice/msgrecord/getmsglist"

// MsgRecord is one entry of the message record, as getmsglist answers it.
type MsgRecord struct {
	ID       int64  `json:"-"`
	OpenID   string `json:"openid"`
	OperCode int    `json:"opercode"`
	Text     string `json:"text"`
	Time     int64  `json:"time"`
	Worker   string `json:"worker"`
}

// msgRecordLog is the server's message record.
type msgRecordLog struct {
	records []MsgRecord // ascending ID
	lastID  int64
}

// recordMsgLocked appends a record; the caller holds s.mu.
func (s *Server) recordMsgLocked(openid string, opercode int, text, worker string, at time.Time) {
	s.msgRecords.lastID++
	rec := MsgRecord{ID: s.msgRecords.lastID, OpenID: openid, OperCode: opercode, Text: text, Time: at.Unix(), Worker: worker}
	s.msgRecords.records = appendBounded(s.msgRecords.records, rec, s.cfg.HistoryLimit)
}

// recordAgentSentLocked records a message sent as agent worker.
func (s *Server) recordAgentSentLocked(openid, text, worker string, at time.Time) {
	s.recordMsgLocked(openid, wechat.OperCodeAgentSent, text, worker, at)
}

// recordCustomerMsgLocked records a customer's message as received by the
// agent serving them, if one does.
func (s *Server) recordCustomerMsgLocked(openid, text string, at time.Time) {
	if sess, ok := s.sessions[openid]; ok {
		s.recordMsgLocked(openid, wechat.OperCodeAgentReceived, text, sess.account, at)
	}
}

// AgentMessage is the agent serving openid typing text in the 多客服
// client: it reaches the customer and the message record, and WeChat sends
// kefu no callback for it. 65413 when nobody serves the customer.
func (s *Server) AgentMessage(openid, text string) error {
	if text == "" {
		return asError(apiErr(CodeEmptyContent, ""))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[openid]
	if !ok {
		return asError(apiErr(CodeNoSession, ""))
	}
	s.recordMsgLocked(openid, wechat.OperCodeAgentSent, text, sess.account, s.clock.Now())
	return nil
}

// MsgRecords returns the message record, oldest first.
func (s *Server) MsgRecords() []MsgRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MsgRecord(nil), s.msgRecords.records...)
}

type msgListRequest struct {
	StartTime *int64 `json:"starttime"`
	EndTime   *int64 `json:"endtime"`
	MsgID     *int64 `json:"msgid"`
	Number    *int   `json:"number"`
}

type msgListResponse struct {
	RecordList []MsgRecord `json:"recordlist"`
	Number     int         `json:"number"`
	MsgID      int64       `json:"msgid"`
}

func (s *Server) handleMsgList(_ *http.Request, body []byte) (any, *APIError) {
	var req msgListRequest
	if e := decodeJSONBody(body, &req); e != nil {
		return nil, e
	}
	if err := req.check(); err != nil {
		return nil, apiErr(CodeInvalidQueryParams, err.Error())
	}
	if *req.EndTime-*req.StartTime > int64(wechat.MsgListMaxSpan/time.Second) {
		return nil, apiErr(CodeMsgRecordSpan, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := msgListResponse{RecordList: []MsgRecord{}, MsgID: *req.MsgID}
	for _, r := range s.msgRecords.records {
		if r.ID < *req.MsgID || r.Time < *req.StartTime || r.Time > *req.EndTime {
			continue
		}
		resp.RecordList = append(resp.RecordList, r)
		resp.MsgID = r.ID + 1
		if len(resp.RecordList) == *req.Number {
			break
		}
	}
	resp.Number = len(resp.RecordList)
	return resp, nil
}

func (r msgListRequest) check() error {
	switch {
	case r.StartTime == nil || r.EndTime == nil || r.MsgID == nil || r.Number == nil:
		return errors.New("starttime, endtime, msgid and number are required")
	case *r.EndTime < *r.StartTime:
		return errors.New("endtime before starttime")
	case *r.Number < 1 || *r.Number > wechat.MsgListMaxNumber:
		return errors.New("number outside 1..10000")
	case *r.MsgID < 1:
		return errors.New("msgid below 1")
	}
	return nil
}
