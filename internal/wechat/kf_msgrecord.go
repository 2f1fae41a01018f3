package wechat

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// MethodGetMsgList is customservice/msgrecord/getmsglist's name in metrics
// and errors.
const MethodGetMsgList = "getmsglist"

// Operation codes of a message record (opercode).
const (
	OperCodeAgentSent     = 2002 // the agent sent the customer a message
	OperCodeAgentReceived = 2003 // the agent received the customer's message
)

// Limits of getmsglist.
const (
	// MsgListMaxSpan is the longest time range one query may cover.
	MsgListMaxSpan = 24 * time.Hour
	// MsgListMaxNumber is the most records one page may ask for.
	MsgListMaxNumber = 10000
)

// Errcodes of getmsglist (WeChat's documented list).
const (
	ErrCodeMsgListInvalidQuery = 65416 // invalid query parameters
	ErrCodeMsgListSpanTooLong  = 65417 // the time range exceeds the limit
)

// MsgRecord is one entry of the 多客服 message record: something an agent
// sent to or received from a customer.
type MsgRecord struct {
	OpenID   string `json:"openid"`
	OperCode int    `json:"opercode"`
	Text     string `json:"text"`
	// Time is when it happened, unix seconds.
	Time int64 `json:"time"`
	// Worker is the agent's kf_account.
	Worker string `json:"worker"`
}

// MsgListPage is one page of getmsglist.
type MsgListPage struct {
	Records []MsgRecord
	// Next is the msgid to ask for next; the walk is over when fewer
	// records came back than were asked for.
	Next int64
}

// GetMsgList reads one page of the message records between start and end
// (customservice/msgrecord/getmsglist): at most number records (1..10000)
// from msgid on (1 for the first page). end-start may not exceed
// MsgListMaxSpan.
func (c *Client) GetMsgList(ctx context.Context, start, end time.Time, msgID int64, number int) (MsgListPage, error) {
	switch {
	case !end.After(start) && !end.Equal(start):
		return MsgListPage{}, fmt.Errorf("wechat %s: end %v before start %v: %w", MethodGetMsgList, end, start, ErrInvalidRequest)
	case end.Sub(start) > MsgListMaxSpan:
		return MsgListPage{}, fmt.Errorf("wechat %s: range %v exceeds %v: %w", MethodGetMsgList, end.Sub(start), MsgListMaxSpan, ErrInvalidRequest)
	case number < 1 || number > MsgListMaxNumber:
		return MsgListPage{}, fmt.Errorf("wechat %s: number %d outside 1..%d: %w", MethodGetMsgList, number, MsgListMaxNumber, ErrInvalidRequest)
	case msgID < 1:
		return MsgListPage{}, fmt.Errorf("wechat %s: msgid %d must be at least 1: %w", MethodGetMsgList, msgID, ErrInvalidRequest)
	}
	body, err := apiJSON(struct {
		StartTime int64 `json:"starttime"`
		EndTime   int64 `json:"endtime"`
		MsgID     int64 `json:"msgid"`
		Number    int   `json:"number"`
	}{start.Unix(), end.Unix(), msgID, number})
	if err != nil {
		return MsgListPage{}, err
	}
	var out struct {
		RecordList []MsgRecord `json:"recordlist"`
		Number     int         `json:"number"`
		MsgID      int64       `json:"msgid"`
	}
	// A read: repeating it after an ambiguous failure does no harm.
	err = c.do(ctx, apiCall{
		method: MethodGetMsgList, httpMethod: http.MethodPost, path: "customservice/msgrecord/getmsglist",
		body: body, contentType: apiJSONContentType, idempotent: true,
	}, &out)
	if err != nil {
		return MsgListPage{}, err
	}
	return MsgListPage{Records: out.RecordList, Next: out.MsgID}, nil
}
