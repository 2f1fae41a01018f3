package events

import (
	"encoding/json"
	"time"
)

// Event is implemented by every event type: it knows its subject.
type Event interface {
	// EventSubject is the NATS subject the event is published on.
	EventSubject() string
}

// Meta is carried by every event.
type Meta struct {
	// AppID is the WeChat official account's appid (WeChat and kf events).
	AppID string `json:"app_id,omitempty"`
	// ProductID is the Tucao product id (Tucao events).
	ProductID string `json:"product_id,omitempty"`
	// OccurredAt is the source's time of the fact (WeChat CreateTime, Tucao updated_at, poll time).
	OccurredAt time.Time `json:"occurred_at"`
	// ReceivedAt is when kefu received or produced it.
	ReceivedAt time.Time `json:"received_at"`
}

// WeChatSource is carried by every event that comes from a WeChat callback.
type WeChatSource struct {
	// OpenID is the customer (the callback's FromUserName).
	OpenID string `json:"openid"`
	// ToUserName is the official account's original id (gh_…).
	ToUserName string `json:"to_user_name"`
	// CreateTime is the callback's CreateTime (unix seconds), untouched.
	CreateTime int64 `json:"create_time"`
	// Raw holds every element of the callback XML, untouched: leaves as
	// strings, nested elements as objects, repeated elements as arrays.
	Raw map[string]any `json:"raw"`
}

// SessionCreated: a 多客服 agent started serving a customer (kf_create_session).
type SessionCreated struct {
	Meta
	WeChatSource
	KfAccount string `json:"kf_account"`
}

// SessionSwitched: the customer was transferred between agents (kf_switch_session).
type SessionSwitched struct {
	Meta
	WeChatSource
	FromKfAccount string `json:"from_kf_account"`
	ToKfAccount   string `json:"to_kf_account"`
}

// SessionClosed: the session ended (kf_close_session).
type SessionClosed struct {
	Meta
	WeChatSource
	KfAccount string `json:"kf_account"`
}

// MessageReceived is a customer's message (text, image, voice, video,
// shortvideo, location, link, file, …). Fields that do not apply to the
// message type are empty; Raw always has everything.
type MessageReceived struct {
	Meta
	WeChatSource
	MsgType string `json:"msg_type"`
	// MsgID is WeChat's MsgId as a decimal string (it does not fit a JSON double).
	MsgID        string `json:"msg_id"`
	Content      string `json:"content,omitempty"`
	PicURL       string `json:"pic_url,omitempty"`
	MediaID      string `json:"media_id,omitempty"`
	Format       string `json:"format,omitempty"`
	Recognition  string `json:"recognition,omitempty"`
	ThumbMediaID string `json:"thumb_media_id,omitempty"`
	LocationX    string `json:"location_x,omitempty"`
	LocationY    string `json:"location_y,omitempty"`
	Scale        string `json:"scale,omitempty"`
	Label        string `json:"label,omitempty"`
	Title        string `json:"title,omitempty"`
	Description  string `json:"description,omitempty"`
	URL          string `json:"url,omitempty"`
}

// EventReceived is any other WeChat event (subscribe, unsubscribe, scan,
// location, click, view, …), with the event name lower-cased.
type EventReceived struct {
	Meta
	WeChatSource
	Event     string `json:"event"`
	EventKey  string `json:"event_key,omitempty"`
	Ticket    string `json:"ticket,omitempty"`
	Latitude  string `json:"latitude,omitempty"`
	Longitude string `json:"longitude,omitempty"`
	Precision string `json:"precision,omitempty"`
}

// WaitingCustomer is one case of the 多客服 waiting queue.
type WaitingCustomer struct {
	OpenID string `json:"openid"`
	// Since is when the customer entered the queue.
	Since time.Time `json:"since"`
	// KfAccount is set when the customer waits for one specific agent.
	KfAccount string `json:"kf_account,omitempty"`
	// Position is the 1-based place in the queue the customer is in.
	Position int `json:"position"`
}

// AgentSession is one session an agent serves.
type AgentSession struct {
	OpenID string    `json:"openid"`
	Since  time.Time `json:"since"`
}

// AgentStatus is one online agent (getonlinekflist + getsessionlist).
type AgentStatus struct {
	KfAccount string `json:"kf_account"`
	KfID      string `json:"kf_id,omitempty"`
	// Status: 1 PC online, 2 mobile online, 3 both.
	Status       int            `json:"status"`
	AutoAccept   int            `json:"auto_accept"`
	AcceptedCase int            `json:"accepted_case"`
	Sessions     []AgentSession `json:"sessions"`
}

// QueueSnapshot is one poll of the 多客服 queue.
type QueueSnapshot struct {
	Meta
	// WaitingCount is getwaitcase's count: it may exceed len(Waiting),
	// which lists at most the 100 earliest cases.
	WaitingCount int               `json:"waiting_count"`
	Waiting      []WaitingCustomer `json:"waiting"`
	Agents       []AgentStatus     `json:"agents"`
}

// WaitEstimated is a waiting customer's estimated wait.
type WaitEstimated struct {
	Meta
	OpenID   string `json:"openid"`
	Position int    `json:"position"`
	// WaitSeconds is the expected remaining wait; WaitP90Seconds the wait
	// that 90 % of such customers do not exceed.
	WaitSeconds    int64  `json:"wait_seconds"`
	WaitP90Seconds int64  `json:"wait_p90_seconds"`
	Model          string `json:"model"`
	KfAccount      string `json:"kf_account,omitempty"`
	// PositionInferred is true when the customer is beyond the 100 that
	// getwaitcase lists: the place comes from the order in which kefu saw
	// customers join (QueueJoined), and the band is wider accordingly.
	PositionInferred bool `json:"position_inferred,omitempty"`
}

// QueueJoined: ingest answered a customer's message with
// transfer_customer_service, handing the customer to 多客服. Unless they
// already wait or are served, they joined the queue at OccurredAt (the
// message's CreateTime). Published once per message, after the message.
type QueueJoined struct {
	Meta
	OpenID string `json:"openid"`
	// KfAccount is the agent the message was routed to; absent when
	// 多客服 assigns any agent.
	KfAccount string `json:"kf_account,omitempty"`
	// MsgID is the MsgId of the message that was transferred.
	MsgID string `json:"msg_id,omitempty"`
}

// Reasons of a SessionAbandoned.
const (
	AbandonLeft     = "left"     // the customer asked to leave the queue
	AbandonVanished = "vanished" // the case left the queue with no session created
)

// SessionAbandoned: a customer left the queue before being served.
type SessionAbandoned struct {
	Meta
	OpenID        string `json:"openid"`
	WaitedSeconds int64  `json:"waited_seconds"`
	Reason        string `json:"reason"`
}

// Outcomes of an AgentChosen.
const (
	ChoiceTransferred  = "transferred"   // transferred to the chosen agent, or to the chosen group's least-loaded member
	ChoiceAny          = "any"           // the customer chose any agent (0), or kefu could not tell who is online
	ChoiceOffline      = "offline"       // the chosen agent is not online; the customer was told and may choose again
	ChoiceFull         = "full"          // the chosen agent serves as many customers as they accept; told, may choose again
	ChoiceNobodyOnline = "nobody_online" // nobody of the chosen group is online; told, may choose again
)

// Kinds of an AgentChosen.
const (
	ChosenKindAgent = "agent"
	ChosenKindGroup = "group"
	ChosenKindAny   = "any"
)

// AgentChosen: a customer answered the menu of agents (or of groups)
// with a number.
type AgentChosen struct {
	Meta
	OpenID string `json:"openid"`
	// Choice is the number the customer sent; 0 is "any agent".
	Choice int `json:"choice"`
	// Kind is what the number named: ChosenKindAgent, ChosenKindGroup or
	// ChosenKindAny.
	Kind string `json:"kind"`
	// Group is the chosen group (Kind group).
	Group string `json:"group,omitempty"`
	// KfAccount and KfID are the chosen agent, or the group member the
	// customer was transferred to; empty when nobody was.
	KfAccount string `json:"kf_account,omitempty"`
	KfID      string `json:"kf_id,omitempty"`
	// Outcome is one of the Choice* outcomes.
	Outcome string `json:"outcome"`
}

// FeedbackPost is a Tucao post with its replies, as the Tucao API returns
// it; times are RFC 3339 (the API's Asia/Shanghai wall time, +08:00).
type FeedbackPost struct {
	Meta
	ID            string          `json:"id"`
	OpenID        string          `json:"openid"`
	NickName      string          `json:"nick_name"`
	AvatarURL     string          `json:"avatar_url"`
	Content       string          `json:"content"`
	UserID        int64           `json:"user_id"`
	HasAdminReply bool            `json:"has_admin_reply"`
	IsAdmin       bool            `json:"is_admin"`
	IsTop         bool            `json:"is_top"`
	IsGood        bool            `json:"is_good"`
	IsSpam        bool            `json:"is_spam"`
	IsTodo        bool            `json:"is_todo"`
	IsLocked      bool            `json:"is_locked"`
	IsHidden      bool            `json:"is_hidden"`
	IsNotice      bool            `json:"is_notice"`
	IsLiked       bool            `json:"is_liked"`
	IsAbuse       bool            `json:"is_abuse"`
	ReplyCount    int             `json:"reply_count"`
	LikeCount     int             `json:"like_count"`
	ImagesCount   int             `json:"images_count"`
	FaqID         int64           `json:"faq_id"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	LastReplyAt   time.Time       `json:"last_reply_at"`
	User          json.RawMessage `json:"user,omitempty"`
	Images        json.RawMessage `json:"images,omitempty"`
	Replies       json.RawMessage `json:"replies,omitempty"`
	RepliesAll    json.RawMessage `json:"replies_all,omitempty"`
	Categories    json.RawMessage `json:"categories,omitempty"`
	Extra         json.RawMessage `json:"extra,omitempty"`
	FieldValues   json.RawMessage `json:"field_values,omitempty"`
	// Raw keeps the post's fields this version does not know, untouched.
	Raw map[string]json.RawMessage `json:"raw,omitempty"`
	// Updated is false for the first version kefu saw, true afterwards;
	// it decides the subject (post.created or post.updated).
	Updated bool `json:"updated"`
}

// Kinds of a Notification.
const (
	NotifySessionCreated  = "session_created"
	NotifySessionSwitched = "session_switched"
	NotifySessionClosed   = "session_closed"
	NotifyWaitEstimated   = "wait_estimated"
	NotifyLeftQueue       = "left_queue"
	NotifyStaleClosed     = "stale_closed"
)

// Outcomes of a Notification.
const (
	OutcomeSent   = "sent"
	OutcomeFailed = "failed"
)

// Notification is the outcome of one message kefu sent (or failed to send)
// to a customer.
type Notification struct {
	Meta
	OpenID string `json:"openid"`
	Kind   string `json:"kind"`
	// CauseEventID is the ce-id of the event that caused the message.
	CauseEventID string `json:"cause_event_id"`
	// Outcome is OutcomeSent or OutcomeFailed; it decides the subject.
	Outcome string `json:"outcome"`
	// ErrCode is WeChat's errcode (0 on success, and on failures that
	// were not WeChat's answer, such as a timeout); ErrMsg says why.
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg,omitempty"`
	Text    string `json:"text,omitempty"`
}

func (SessionCreated) EventSubject() string    { return SubjectSessionCreated }
func (SessionSwitched) EventSubject() string   { return SubjectSessionSwitched }
func (SessionClosed) EventSubject() string     { return SubjectSessionClosed }
func (m MessageReceived) EventSubject() string { return MessageSubject(m.MsgType) }
func (e EventReceived) EventSubject() string   { return EventSubject(e.Event) }
func (QueueSnapshot) EventSubject() string     { return SubjectQueueSnapshot }
func (WaitEstimated) EventSubject() string     { return SubjectWaitEstimated }
func (SessionAbandoned) EventSubject() string  { return SubjectSessionAbandoned }
func (AgentChosen) EventSubject() string       { return SubjectAgentChosen }
func (QueueJoined) EventSubject() string       { return SubjectQueueJoined }
func (n Notification) EventSubject() string {
	if n.Outcome == OutcomeFailed {
		return SubjectNotifyFailed
	}
	return SubjectNotifySent
}
func (p FeedbackPost) EventSubject() string {
	if p.Updated {
		return SubjectPostUpdated
	}
	return SubjectPostCreated
}
