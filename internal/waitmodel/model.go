package waitmodel

// Model names a predictor. Kefu is the estimator of this package; the
// others are the baselines of the literature, computed from the same
// observations so they can be compared on the same runs.
type Model int

const (
	// Kefu: departures needed (customers ahead in every queue that competes
	// for the same slots), corrected for abandonment as in QL_m, turned
	// into time through the expected departure curve of the slots in
	// service (session ages + learned duration shape + learned full-load
	// rate). P90 from calibrated ratios of past errors.
	Kefu Model = iota
	// ConstantMean predicts the long-run mean wait of served customers.
	ConstantMean
	// QL predicts (n+1)/(s·μ), s the slots of the queue's agents and 1/μ
	// the long-run mean session length.
	QL
	// QLm is QL with abandonment: Σ_{i=0..n} 1/(s·μ + i·θ).
	QLm
	// HOL predicts the time the head of the customer's queue has waited
	// so far (scaled by position/queue length for customers not at the
	// tail); LES when the customer is the head.
	HOL
	// LES predicts the wait of the last customer who entered service
	// (scaled by position/queue length for customers not at the tail).
	LES
	// QLEmp predicts (n+1) × the mean gap between recent departures
	// observed while every slot was busy.
	QLEmp
	modelCount
)

// Models lists every model, Kefu first.
func Models() []Model {
	out := make([]Model, 0, modelCount)
	for m := Kefu; m < modelCount; m++ {
		out = append(out, m)
	}
	return out
}

func (m Model) String() string {
	switch m {
	case Kefu:
		return "kefu"
	case ConstantMean:
		return "mean"
	case QL:
		return "QL"
	case QLm:
		return "QL_m"
	case HOL:
		return "HOL"
	case LES:
		return "LES"
	case QLEmp:
		return "QL-emp"
	}
	return "unknown"
}
