package spool

// WeightOnly reports whether m only sets a weight: a readable mark with a weight that is not a
// drain mark (hacheck weight SERVICE NN%). It leaves the service up: an HTTP health check has
// no way to say "less traffic", so the check answers are what they would be without the mark,
// and only the agent check carries the weight ("ready NN%"). Readers that do not know the
// "weight" key (the Python hacheck, scripts listing the spool) take the file for a down mark:
// less traffic rather than more, the safe side of a weight meant to reduce it.
func (m Mark) WeightOnly() bool { return m.Err == nil && !m.Drain && m.Weight != nil }
