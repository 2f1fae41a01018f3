package ingest

import (
	"strconv"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Event turns a parsed callback into its contract event and the
// deterministic id that makes JetStream drop WeChat's retries.
func Event(cb *wechat.Callback, appID string, received time.Time) (events.Event, string) {
	meta := events.Meta{AppID: appID, OccurredAt: time.Unix(cb.CreateTime, 0).UTC(), ReceivedAt: received.UTC()}
	src := events.WeChatSource{OpenID: cb.FromUserName, ToUserName: cb.ToUserName, CreateTime: cb.CreateTime, Raw: cb.Fields}
	if cb.MsgType != "event" {
		m := events.MessageReceived{Meta: meta, WeChatSource: src, MsgType: cb.MsgType}
		if cb.MsgID != 0 {
			m.MsgID = strconv.FormatUint(cb.MsgID, 10)
		}
		m.Content = cb.Content
		m.PicURL = text(cb, "PicUrl")
		m.MediaID = text(cb, "MediaId")
		m.Format = text(cb, "Format")
		m.Recognition = text(cb, "Recognition")
		m.ThumbMediaID = text(cb, "ThumbMediaId")
		m.LocationX = text(cb, "Location_X")
		m.LocationY = text(cb, "Location_Y")
		m.Scale = text(cb, "Scale")
		m.Label = text(cb, "Label")
		m.Title = text(cb, "Title")
		m.Description = text(cb, "Description")
		m.URL = text(cb, "Url")
		if m.MsgID == "" {
			// Only messages without a MsgId (rare) fall back to the
			// event-style id, which is just as stable across retries.
			return m, events.WeChatEventID(cb.FromUserName, cb.CreateTime, "msg-"+cb.MsgType)
		}
		return m, events.WeChatMessageID(m.MsgID)
	}
	switch cb.Event {
	case "kf_create_session":
		return events.SessionCreated{Meta: meta, WeChatSource: src, KfAccount: cb.KfAccount},
			events.WeChatEventID(cb.FromUserName, cb.CreateTime, cb.Event, cb.KfAccount)
	case "kf_switch_session":
		return events.SessionSwitched{Meta: meta, WeChatSource: src, FromKfAccount: cb.FromKfAccount, ToKfAccount: cb.ToKfAccount},
			events.WeChatEventID(cb.FromUserName, cb.CreateTime, cb.Event, cb.FromKfAccount, cb.ToKfAccount)
	case "kf_close_session":
		return events.SessionClosed{Meta: meta, WeChatSource: src, KfAccount: cb.KfAccount},
			events.WeChatEventID(cb.FromUserName, cb.CreateTime, cb.Event, cb.KfAccount)
	}
	e := events.EventReceived{Meta: meta, WeChatSource: src, Event: cb.Event,
		EventKey: text(cb, "EventKey"), Ticket: text(cb, "Ticket"),
		Latitude: text(cb, "Latitude"), Longitude: text(cb, "Longitude"), Precision: text(cb, "Precision")}
	return e, events.WeChatEventID(cb.FromUserName, cb.CreateTime, cb.Event)
}

func text(cb *wechat.Callback, name string) string {
	s, _ := cb.Fields[name].(string)
	return s
}
