package main

import (
	"fmt"
	"math"
	"time"

	"github.com/kefu-io/kefu/internal/queuesim"
)

// meanService is the mean chat length (one chat, no slowdown) of every
// scenario; results scale with it.
const meanService = 5 * time.Minute

// scenario is one row group of the evaluation.
type scenario struct {
	name   string
	desc   string
	markov bool    // M/M/s: the 1−ρ bound applies
	rho    float64 // offered load of the bound
	// oracle adds QL (or QL_m with abandonment) computed with the true μ
	// (and θ) and the snapshot's online slots: with exponential service
	// and patience it is the conditional-mean optimum given what every
	// model sees, the yardstick of what is attainable.
	oracle bool
	// bayes adds the Monte Carlo Bayes oracle (bayes.go): E[wait | queue,
	// session ages] under the true duration distribution.
	bayes bool
	// scale multiplies -customers: at high load the queue relaxes so
	// slowly that 100k customers are far from the stationary regime.
	scale int
	// restartEvery restarts the estimator (state and members kept, the
	// queue rebuilt from the next snapshot) this often; 0 never.
	restartEvery time.Duration
	build        func(customers int) queuesim.Config
}

func agentsOf(n, slots int) []queuesim.AgentSpec {
	out := make([]queuesim.AgentSpec, n)
	for i := range out {
		out[i] = queuesim.AgentSpec{Account: fmt.Sprintf("kf%02d@kefu", i), AutoAccept: slots}
	}
	return out
}

// rate returns λ giving load rho on n agents of k slots with slowdown α:
// a full agent completes k^(1−α)·μ chats per second.
func rate(rho float64, n, k int, alpha float64) float64 {
	return rho * float64(n) * math.Pow(float64(k), 1-alpha) / meanService.Seconds()
}

func scenarios() []scenario {
	var out []scenario
	scales := map[float64]int{0.8: 1, 0.9: 1, 0.95: 10, 0.98: 10}
	for _, rho := range []float64{0.8, 0.9, 0.95, 0.98} {
		out = append(out, scenario{
			name: fmt.Sprintf("mms-%.2f", rho), desc: fmt.Sprintf("M/M/10, ρ = %.2f", rho), markov: true, rho: rho, oracle: true, scale: scales[rho],
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(rho, 10, 1, 0), Service: queuesim.Exponential(meanService), Agents: agentsOf(10, 1)}
			},
		})
	}
	out = append(out,
		scenario{name: "abandon", desc: "M/M/10+M, offered ρ = 1.0, patience exp(mean 10 min)", oracle: true,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(1.0, 10, 1, 0), Service: queuesim.Exponential(meanService),
					Agents: agentsOf(10, 1), Patience: queuesim.Exponential(10 * time.Minute)}
			}},
		scenario{name: "lognormal", desc: "M/LN/10, service lognormal CV 1.0, ρ = 0.9", bayes: true,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(0.9, 10, 1, 0), Service: queuesim.LogNormal(meanService, 1.0), Agents: agentsOf(10, 1)}
			}},
		scenario{name: "hyperexp", desc: "M/H2/10, service hyperexponential CV 2.0, ρ = 0.9", bayes: true,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(0.9, 10, 1, 0), Service: queuesim.HyperExponential(meanService, 2.0), Agents: agentsOf(10, 1)}
			}},
		scenario{name: "sinusoidal", desc: "M_t/M/10, λ(t) = λ(1 + 0.2 sin 2πt/4h), mean ρ = 0.85", oracle: true,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(0.85, 10, 1, 0), Amplitude: 0.2, Period: 4 * time.Hour,
					Service: queuesim.Exponential(meanService), Agents: agentsOf(10, 1)}
			}},
	)
	for _, alpha := range []float64{1.0, 0.85, 0.7} {
		out = append(out, scenario{
			name: fmt.Sprintf("multichat-a%.2f", alpha), desc: fmt.Sprintf("5 agents × 3 chats, slowdown α = %.2f, ρ = 0.9 of full-load capacity", alpha),
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(0.9, 5, 3, alpha), Service: queuesim.Exponential(meanService),
					Alpha: alpha, Agents: agentsOf(5, 3)}
			},
		})
	}
	for _, frac := range []float64{0.05, 0.20} {
		out = append(out, scenario{
			name: fmt.Sprintf("specific-%02.0f", frac*100), desc: fmt.Sprintf("M/M/10, ρ = 0.9, %.0f %% ask for a specific agent", frac*100),
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(0.9, 10, 1, 0), Service: queuesim.Exponential(meanService),
					Agents: agentsOf(10, 1), SpecificFraction: frac}
			},
		})
	}
	out = append(out,
		scenario{name: "offline", desc: "12 agents, ρ = 0.8; every 6 h four go offline for 1 h (ρ = 1.2 meanwhile)", oracle: true,
			build: func(n int) queuesim.Config {
				c := queuesim.Config{Customers: n, ArrivalRate: rate(0.8, 12, 1, 0), Service: queuesim.Exponential(meanService), Agents: agentsOf(12, 1)}
				for i := range 4 {
					c.Absences = append(c.Absences, queuesim.Absence{Account: c.Agents[i].Account, Start: 3 * time.Hour, Length: time.Hour, Every: 6 * time.Hour})
				}
				return c
			}},
		scenario{name: "overload", desc: "20 agents, offered ρ = 1.2, patience exp(mean 4 h): about 190 waiting, most beyond the 100 listed", oracle: true,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(1.2, 20, 1, 0), Service: queuesim.Exponential(meanService),
					Agents: agentsOf(20, 1), Patience: queuesim.Exponential(4 * time.Hour)}
			}},
		scenario{name: "restarts", desc: "as overload, the estimator restarted every 2 h (learned state and members kept)", oracle: true, restartEvery: 2 * time.Hour,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(1.2, 20, 1, 0), Service: queuesim.Exponential(meanService),
					Agents: agentsOf(20, 1), Patience: queuesim.Exponential(4 * time.Hour)}
			}},
		scenario{name: "count100", desc: "40 agents, λ(t) = λ(1 + 0.3 sin 2πt/6h), mean ρ = 0.9: peaks push count past 100", oracle: true,
			build: func(n int) queuesim.Config {
				return queuesim.Config{Customers: n, ArrivalRate: rate(0.9, 40, 1, 0), Amplitude: 0.3, Period: 6 * time.Hour,
					Service: queuesim.Exponential(meanService), Agents: agentsOf(40, 1)}
			}},
	)
	return out
}
