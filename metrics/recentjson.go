package metrics

import (
	"encoding/json"
	"fmt"
	"time"
)

// RecentAnswer is the answer of GET /recent, the server's and the commands' one definition of
// it.
type RecentAnswer struct {
	SeenServices     []RecentService `json:"seen_services"` // sorted by name; never nil
	ThresholdSeconds int             `json:"threshold_seconds"`
}

// seenEntry is the second half of a /recent pair.
type seenEntry struct {
	Code     int     `json:"code"`
	RemoteIP string  `json:"remote_ip"`
	TS       float64 `json:"ts"` // unix seconds
}

// MarshalJSON writes the pair [name, {"code", "remote_ip", "ts"}], the shape the Python
// hacheck's /recent had and its clients read.
func (r RecentService) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]any{r.Service, seenEntry{r.Code, r.RemoteIP, float64(r.Time.Unix())}})
}

// UnmarshalJSON reads the pair MarshalJSON writes.
func (r *RecentService) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("a /recent entry is a [name, entry] pair: %w", err)
	}
	var e seenEntry
	if err := json.Unmarshal(pair[0], &r.Service); err != nil {
		return fmt.Errorf("a /recent entry's name: %w", err)
	}
	if err := json.Unmarshal(pair[1], &e); err != nil {
		return fmt.Errorf("a /recent entry of %q: %w", r.Service, err)
	}
	r.Code, r.RemoteIP, r.Time = e.Code, e.RemoteIP, time.Unix(int64(e.TS), 0)
	return nil
}
