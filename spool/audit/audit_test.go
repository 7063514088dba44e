package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/spool"
)

func TestActionOf(t *testing.T) {
	w := 30
	for _, tc := range []struct {
		mark spool.Mark
		want string
	}{
		{spool.Mark{Reason: "x"}, ActionDown},
		{spool.Mark{Drain: true}, ActionDrain},
		{spool.Mark{Weight: &w}, ActionWeight},
		{spool.Mark{Drain: true, Weight: &w}, ActionDrain},
		{spool.Mark{Weight: &w, Err: errors.New("bad")}, ActionDown}, // unreadable: counts as down
	} {
		if got := ActionOf(tc.mark); got != tc.want {
			t.Errorf("ActionOf(%+v) = %q, want %q", tc.mark, got, tc.want)
		}
	}
}

func TestLogIsOneStructuredLine(t *testing.T) {
	var buf bytes.Buffer
	l := zerolog.New(&buf)
	uid, token, weight := 1000, true, 30
	Log(&l, Change{Action: ActionWeight, Service: "web", Port: 8080, Reason: "canary", Expiration: time.Unix(2000000000, 0),
		Weight: &weight, Origin: OriginHTTP, UID: &uid, SudoUser: "alice", Remote: "10.0.0.1:5555", Token: &token, Force: true})
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("%q: want one JSON line (%v)", buf.String(), err)
	}
	for k, v := range map[string]any{"message": "spool change", "action": "weight", "service": "web", "port": 8080.0, "reason": "canary",
		"expiration": 2e9, "weight": 30.0, "origin": "http", "uid": 1000.0, "sudo_user": "alice", "remote": "10.0.0.1:5555", "token": true, "force": true} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	buf.Reset()
	Log(&l, Change{Action: ActionUp, Service: "web", Origin: OriginWatch})
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got["expiration"] != nil {
		t.Fatalf("%q: want expiration null", buf.String())
	}
	if _, ok := got["expiration"]; !ok {
		t.Fatalf("%q: expiration must be there, null", buf.String())
	}
}
