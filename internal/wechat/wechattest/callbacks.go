package wechattest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DeliveryStatus is where a callback stands.
type DeliveryStatus string

// Delivery statuses.
const (
	DeliveryPending   DeliveryStatus = "pending"   // queued or being sent
	DeliveryDelivered DeliveryStatus = "delivered" // answered with HTTP 200
	DeliveryFailed    DeliveryStatus = "failed"    // every attempt failed
	DeliveryDropped   DeliveryStatus = "dropped"   // lost on purpose (DropNextCallback)
	DeliverySkipped   DeliveryStatus = "skipped"   // no callback URL configured
)

// Delivery records one callback: what was sent and how the receiver answered.
type Delivery struct {
	Seq    int64  `json:"seq"`
	OpenID string `json:"openid"`
	// MsgType is "event" or the message type (text, image, …).
	MsgType string `json:"msgtype"`
	// Event is the event name for MsgType "event".
	Event      string `json:"event,omitempty"`
	CreateTime int64  `json:"createtime"`
	// Body is the plaintext callback XML (before signing and encryption).
	Body     string         `json:"body"`
	Status   DeliveryStatus `json:"status"`
	Attempts int            `json:"attempts"`
	// HTTPStatus is the last attempt's status code, 0 without a response.
	HTTPStatus int `json:"http_status,omitempty"`
	// Error says why the last attempt failed.
	Error string `json:"error,omitempty"`
	// Reply is the receiver's answer, decrypted when it was encrypted.
	Reply string `json:"reply,omitempty"`
	// ReplyMsgType is the MsgType of a reply XML ("" for "success" or an
	// empty body), e.g. "transfer_customer_service".
	ReplyMsgType string `json:"reply_msgtype,omitempty"`
	// ReplyKfAccount is TransInfo.KfAccount of a transfer reply.
	ReplyKfAccount string `json:"reply_kf_account,omitempty"`
	// ReplyError says why the reply is not one WeChat accepts; WeChat then
	// shows the customer "该公众号暂时无法提供服务".
	ReplyError string `json:"reply_error,omitempty"`
}

type field struct{ name, value string }

// numericFields are written without CDATA, as WeChat writes them.
var numericFields = map[string]bool{
	"CreateTime": true, "MsgId": true, "MsgID": true, "Location_X": true, "Location_Y": true,
	"Scale": true, "Latitude": true, "Longitude": true, "Precision": true, "MenuId": true,
}

var xmlNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// interactionEvents open the 48-hour custom/send window, as documented:
// subscribing, scanning a code and the menu clicks that push an event.
var interactionEvents = map[string]bool{
	"subscribe": true, "SCAN": true, "CLICK": true, "scancode_push": true, "scancode_waitmsg": true,
}

// buildXML writes a callback document the way WeChat lays it out.
func buildXML(toUser, fromUser string, createTime int64, msgType string, fields []field) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	all := append([]field{
		{"ToUserName", toUser}, {"FromUserName", fromUser},
		{"CreateTime", strconv.FormatInt(createTime, 10)}, {"MsgType", msgType},
	}, fields...)
	for _, f := range all {
		b.WriteString("\n<" + f.name + ">")
		if numericFields[f.name] {
			b.WriteString(f.value)
		} else {
			b.WriteString("<![CDATA[" + strings.ReplaceAll(f.value, "]]>", "]]]]><![CDATA[>") + "]]>")
		}
		b.WriteString("</" + f.name + ">")
	}
	b.WriteString("\n</xml>")
	return b.Bytes()
}

// sortedFields turns caller-supplied fields into XML children in name order.
func sortedFields(fields map[string]string) ([]field, error) {
	names := make([]string, 0, len(fields))
	for k := range fields {
		if !xmlNameRE.MatchString(k) {
			return nil, fmt.Errorf("field name %q is not an XML element name", k)
		}
		switch k {
		case "ToUserName", "FromUserName", "CreateTime", "MsgType", "Event":
			return nil, fmt.Errorf("field %s is set by the fake", k)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]field, len(names))
	for i, k := range names {
		out[i] = field{k, fields[k]}
	}
	return out, nil
}

// emitLocked queues a 多客服 session event for openid.
func (s *Server) emitLocked(openid string, at time.Time, event string, fields ...field) {
	all := append([]field{{"Event", event}}, fields...)
	body := buildXML(s.cfg.OriginalID, openid, at.Unix(), "event", all)
	s.disp.enqueue(&delivery{rec: Delivery{OpenID: openid, MsgType: "event", Event: event, CreateTime: at.Unix(), Body: string(body)}})
}

// SendCustomerMessage delivers a message callback from customer openid
// (msgtype text, image, voice, video, shortvideo, location, link, …, with
// fields such as Content or PicUrl; MsgId is added unless given) and waits
// for the receiver's answer. The message counts as the customer's
// interaction for custom/send. A transfer_customer_service reply puts the
// customer in the queue, as WeChat does, unless Config.IgnoreTransferReplies.
func (s *Server) SendCustomerMessage(ctx context.Context, openid, msgType string, fields map[string]string) (Delivery, error) {
	if msgType == "" || msgType == "event" {
		return Delivery{}, fmt.Errorf("send customer message: msgtype %q: use SendEvent for events", msgType)
	}
	return s.sendFromCustomer(ctx, openid, msgType, "", fields)
}

// SendEvent delivers an event callback from customer openid (subscribe,
// unsubscribe, SCAN, CLICK, VIEW, LOCATION, …, with fields such as EventKey)
// and waits for the receiver's answer. subscribe, SCAN, CLICK and the
// scancode events count as interactions; unsubscribe closes the custom/send
// window until the customer interacts again.
func (s *Server) SendEvent(ctx context.Context, openid, event string, fields map[string]string) (Delivery, error) {
	if event == "" {
		return Delivery{}, errors.New("send event: empty event")
	}
	return s.sendFromCustomer(ctx, openid, "event", event, fields)
}

// CustomerMessage is SendCustomerMessage for a text message.
func (s *Server) CustomerMessage(ctx context.Context, openid, text string) (Delivery, error) {
	return s.SendCustomerMessage(ctx, openid, "text", map[string]string{"Content": text})
}

func (s *Server) sendFromCustomer(ctx context.Context, openid, msgType, event string, fields map[string]string) (Delivery, error) {
	if openid == "" {
		return Delivery{}, errors.New("send callback: empty openid")
	}
	extra, err := sortedFields(fields)
	if err != nil {
		return Delivery{}, fmt.Errorf("send callback: %w", err)
	}
	s.mu.Lock()
	now := s.clock.Now()
	switch {
	case event == "unsubscribe":
		s.customerLocked(openid).unsubscribed = true
	case event == "" || interactionEvents[event]:
		s.touchLocked(openid, now)
	default:
		s.customerLocked(openid)
	}
	var all []field
	if event != "" {
		all = append(all, field{"Event", event})
	}
	all = append(all, extra...)
	if event == "" && fields["MsgId"] == "" {
		s.nextMsgID++
		all = append(all, field{"MsgId", strconv.FormatInt(s.nextMsgID, 10)})
	}
	if event == "" {
		text := fields["Content"]
		if msgType != "text" {
			text = "[" + msgType + "]"
		}
		s.recordCustomerMsgLocked(openid, text, now)
	}
	d := &delivery{
		rec: Delivery{
			OpenID: openid, MsgType: msgType, Event: event, CreateTime: now.Unix(),
			Body: string(buildXML(s.cfg.OriginalID, openid, now.Unix(), msgType, all)),
		},
		fromCustomer: event != "unsubscribe",
		done:         make(chan struct{}),
	}
	s.disp.enqueue(d)
	s.mu.Unlock()

	select {
	case <-d.done:
	case <-ctx.Done():
		return s.disp.snapshot(d), fmt.Errorf("send callback: %w", ctx.Err())
	}
	return s.disp.snapshot(d), nil
}

// DropNextCallback makes the next callback whose event (for events) or
// msgtype (for messages) is name get lost on its way; "" drops the next
// callback of any kind. Calls add up.
func (s *Server) DropNextCallback(name string) {
	s.disp.mu.Lock()
	defer s.disp.mu.Unlock()
	s.disp.drops[name]++
}

// SetCallbackURL points later callbacks at u ("" records them as skipped).
func (s *Server) SetCallbackURL(u string) {
	s.disp.mu.Lock()
	defer s.disp.mu.Unlock()
	s.disp.url = u
}

// Deliveries returns the recorded callbacks, oldest first.
func (s *Server) Deliveries() []Delivery {
	d := s.disp
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Delivery, len(d.records))
	for i, dl := range d.records {
		out[i] = dl.rec
	}
	return out
}

// WaitCallbacks blocks until no callback is queued or being sent.
func (s *Server) WaitCallbacks(ctx context.Context) error {
	d := s.disp
	for {
		d.mu.Lock()
		if d.pending == 0 {
			d.mu.Unlock()
			return nil
		}
		idle := d.idle
		d.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("wait for callbacks: %w", ctx.Err())
		}
	}
}

// dispatcher posts callbacks: one worker goroutine per customer with
// something to send, so each customer's callbacks arrive in order while
// customers do not wait for each other.
type dispatcher struct {
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	url     string
	seq     int64
	records []*delivery
	queues  map[string][]*delivery // by openid; present while a worker runs
	drops   map[string]int
	pending int
	idle    chan struct{} // closed when pending drops to zero
	closed  bool
}

type delivery struct {
	rec          Delivery // guarded by dispatcher.mu once queued
	url          string
	fromCustomer bool // a transfer_customer_service reply queues the customer
	done         chan struct{}
}

func newDispatcher(s *Server) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &dispatcher{
		s: s, ctx: ctx, cancel: cancel,
		url:    s.cfg.CallbackURL,
		queues: map[string][]*delivery{},
		drops:  map[string]int{},
	}
}

func (d *dispatcher) snapshot(dl *delivery) Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return dl.rec
}

func (d *dispatcher) enqueue(dl *delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	dl.rec.Seq = d.seq
	dl.rec.Status = DeliveryPending
	dl.url = d.url
	d.records = appendBounded(d.records, dl, d.s.cfg.HistoryLimit)
	name := dl.rec.MsgType
	if dl.rec.MsgType == "event" {
		name = dl.rec.Event
	}
	finish := func(status DeliveryStatus, why string) {
		dl.rec.Status, dl.rec.Error = status, why
		if dl.done != nil {
			close(dl.done)
		}
	}
	switch {
	case d.drops[name] > 0:
		d.drops[name]--
		finish(DeliveryDropped, "dropped by DropNextCallback")
		return
	case d.drops[""] > 0:
		d.drops[""]--
		finish(DeliveryDropped, "dropped by DropNextCallback")
		return
	case d.closed:
		finish(DeliveryFailed, "server closed")
		return
	case dl.url == "":
		finish(DeliverySkipped, "no callback URL")
		return
	}
	if d.pending == 0 {
		d.idle = make(chan struct{})
	}
	d.pending++
	q, running := d.queues[dl.rec.OpenID]
	d.queues[dl.rec.OpenID] = append(q, dl)
	if !running {
		d.wg.Add(1)
		go d.run(dl.rec.OpenID)
	}
}

func (d *dispatcher) run(openid string) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		q := d.queues[openid]
		if len(q) == 0 {
			delete(d.queues, openid)
			d.mu.Unlock()
			return
		}
		dl := q[0]
		d.queues[openid] = q[1:]
		d.mu.Unlock()

		d.deliver(dl)
		d.afterReply(dl)

		d.mu.Lock()
		d.pending--
		if d.pending == 0 {
			close(d.idle)
		}
		d.mu.Unlock()
		if dl.done != nil {
			close(dl.done)
		}
	}
}

// afterReply acts on a transfer_customer_service reply before the
// customer's next callback goes out, as WeChat does.
func (d *dispatcher) afterReply(dl *delivery) {
	rec := d.snapshot(dl)
	if !dl.fromCustomer || rec.Status != DeliveryDelivered || rec.ReplyError != "" ||
		rec.ReplyMsgType != "transfer_customer_service" || d.s.cfg.IgnoreTransferReplies {
		return
	}
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transferLocked(rec.OpenID, rec.ReplyKfAccount, s.clock.Now())
}

// deliver signs the callback once and posts the same request until the
// receiver answers 200 or the retries run out: the CreateTime in the body
// never changes between attempts, which is what receivers deduplicate on.
func (d *dispatcher) deliver(dl *delivery) {
	s := d.s
	ts := strconv.FormatInt(s.clock.Now().Unix(), 10)
	q, body, err := s.codec.SignCallback(s.cfg.Mode, []byte(dl.rec.Body), dl.rec.OpenID, ts, randomDigits(10))
	if err != nil {
		d.update(dl, func(r *Delivery) { r.Status, r.Error = DeliveryFailed, err.Error() })
		return
	}
	target, err := url.Parse(dl.url)
	if err != nil {
		d.update(dl, func(r *Delivery) { r.Status, r.Error = DeliveryFailed, "bad callback URL: "+err.Error() })
		return
	}
	tq := target.Query()
	for k, v := range q {
		tq[k] = v
	}
	target.RawQuery = tq.Encode()

	for attempt := 0; attempt <= s.cfg.CallbackRetries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(s.cfg.CallbackRetryDelay)
			select {
			case <-t.C:
			case <-d.ctx.Done():
				t.Stop()
				d.update(dl, func(r *Delivery) { r.Status, r.Error = DeliveryFailed, "server closed" })
				return
			}
		}
		status, reply, err := d.post(target.String(), body)
		if err == nil && status == http.StatusOK {
			rp := s.readReply(dl.rec.OpenID, reply)
			d.update(dl, func(r *Delivery) {
				r.Attempts++
				r.Status, r.HTTPStatus, r.Error = DeliveryDelivered, status, ""
				r.Reply, r.ReplyMsgType, r.ReplyKfAccount, r.ReplyError = string(rp.plain), rp.msgType, rp.kfAccount, rp.problem
			})
			return
		}
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			why = "HTTP " + strconv.Itoa(status)
		}
		d.update(dl, func(r *Delivery) { r.Attempts++; r.HTTPStatus, r.Error = status, why })
	}
	d.update(dl, func(r *Delivery) { r.Status = DeliveryFailed })
}

// maxReplyBytes bounds what is read of a receiver's answer.
const maxReplyBytes = 1 << 20

func (d *dispatcher) post(target string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.s.cfg.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("build callback request: %w", err)
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", "Mozilla/4.0")
	resp, err := d.s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("post callback: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read callback reply: %w", err)
	}
	return resp.StatusCode, reply, nil
}

func (d *dispatcher) update(dl *delivery, f func(*Delivery)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&dl.rec)
}

func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// randomDigits returns n random decimal digits, the shape of WeChat's nonce.
func randomDigits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rand.IntN(10))
	}
	return string(b)
}
