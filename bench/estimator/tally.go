package main

// What a replication tallies, and how replications add up.

// counts are a replication's customers, which summarise adds up.
type counts struct {
	queued   int // scored customers who joined the queue after warm-up
	served   int
	aband    int
	unlisted int // joined beyond the 100 listed cases
	// the estimate at the poll that first listed a customer who joined
	// beyond the 100: coverage of the rest of the wait.
	lateN, lateCovered int
	// coverage of the customers whose place was inferred, and of those
	// waiting at a restart (on the first estimate after it, against the
	// rest of their wait).
	inferredN, inferredCovered int
	restartN, restartCovered   int
}

func (c *counts) add(o counts) {
	c.queued += o.queued
	c.served += o.served
	c.aband += o.aband
	c.unlisted += o.unlisted
	c.lateN += o.lateN
	c.lateCovered += o.lateCovered
	c.inferredN += o.inferredN
	c.inferredCovered += o.inferredCovered
	c.restartN += o.restartN
	c.restartCovered += o.restartCovered
}

type sums struct {
	n, unknown                     int
	w, w2, err, err2, abs, covered float64
}

func (s *sums) add(o sums) {
	s.n += o.n
	s.unknown += o.unknown
	s.w += o.w
	s.w2 += o.w2
	s.err += o.err
	s.err2 += o.err2
	s.abs += o.abs
	s.covered += o.covered
}
