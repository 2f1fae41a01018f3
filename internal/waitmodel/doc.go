// Package waitmodel is the wait-time model: pure arithmetic that predicts
// how long each customer waiting in the 多客服 queue will wait before an
// agent takes the session, and how long it may wait at worst (a P90 band).
// It does no I/O — no NATS, no WeChat API, no clock of its own — so that the
// simulator (internal/queuesim) and the benchmark (bench/estimator) judge
// exactly the code production runs. The service that polls WeChat, feeds
// this model and publishes its estimates is services/estimator.
//
// It is fed exactly what kefu observes in production: periodic snapshots
// (getwaitcase, getonlinekflist, getsessionlist) and the session events
// kf_create_session, kf_close_session and kf_switch_session. From them it
// learns the per-slot service rate under full load (which absorbs the
// slowdown of agents juggling several chats), the shape of the session
// duration distribution (so that the age of the sessions in progress tells
// when slots will free up), the abandonment rate of waiting customers, each
// agent's presence by time of day (so that lunch breaks and shift ends
// ahead, and agents due back, count), changes of the agents' pace, and the
// calibration of its own errors. See docs/estimator.md for the model,
// the equations and how it is judged against the baselines of the
// literature (constant mean, QL, QL_m, HOL, LES, QL-emp), which live here
// too so that every predictor is computed from the same inputs.
//
// An Estimator is not safe for concurrent use: the service owns one per
// official account and feeds it from a single goroutine.
package waitmodel
