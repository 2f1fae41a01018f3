package queuesim

type custState uint8

const (
	pending custState = iota
	waiting
	inService
	done
	gone
)

type customer struct {
	openid  string
	arrival float64
	kf      int // requested agent, -1 none
	state   custState
	queued  bool
	start   float64
}

type chat struct {
	cust    int
	finishV float64
	start   float64
}

type agent struct {
	spec   AgentSpec
	online bool
	chats  []chat
	v      float64 // virtual work done by each chat since the epoch
	last   float64
	ver    uint32
	queue  fifo // customers who asked for this agent
}

type evKind uint8

const (
	evArrival evKind = iota
	evCompletion
	evPatience
	evPoll
	evAbsence
)

type simEvent struct {
	t    float64
	kind evKind
	id   int
	ver  uint32
	seq  uint64
}

type eventHeap []simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].t != h[j].t {
		return h[i].t < h[j].t
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(simEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// fifo is a queue of customer ids with lazy deletion of those who left.
type fifo struct {
	ids  []int
	head int
}

func (q *fifo) push(id int) { q.ids = append(q.ids, id) }

// peek returns the first customer still waiting, dropping the others.
func (q *fifo) peek(cs []customer) (int, bool) {
	for q.head < len(q.ids) {
		id := q.ids[q.head]
		if cs[id].state == waiting {
			return id, true
		}
		q.head++
	}
	if q.head > 0 {
		q.ids, q.head = q.ids[:0], 0
	}
	return 0, false
}

func (q *fifo) compact() {
	if q.head > 1024 && q.head*2 > len(q.ids) {
		n := copy(q.ids, q.ids[q.head:])
		q.ids, q.head = q.ids[:n], 0
	}
}
