package spool

// WeightOnly reports whether m only sets a weight: a readable mark with a weight that is not a
// drain mark (hacheck weight SERVICE NN%). It leaves the service up: an HTTP health check has
// no way to say "less traffic", so the check answers are what they would be without the mark,
// and only the agent check carries the weight ("ready NN%"). Readers that do not know the
// "weight" key (the Python hacheck, scripts listing the spool) take the file for a down mark:
// less traffic rather than more, the safe side of a weight meant to reduce it.
func (m Mark) WeightOnly() bool { return m.Err == nil && !m.Drain && m.Weight != nil }

// Kind is what a mark does, in one word: the kind label of the mark metrics, the counts of
// /status, the action of the audit and the KIND column of the commands all use it.
type Kind string

const (
	KindDown   Kind = "down"   // holds the service down; an unreadable mark counts as this
	KindDrain  Kind = "drain"  // no new sessions, the ones there finish (a drain mark)
	KindWeight Kind = "weight" // only a weight, which holds nothing down (see WeightOnly)
)

// Kind is what m does. An unreadable mark is a down mark, whatever it may have meant.
func (m Mark) Kind() Kind {
	switch {
	case m.Err == nil && m.Drain:
		return KindDrain
	case m.WeightOnly():
		return KindWeight
	}
	return KindDown
}
