package metrics

import (
	"encoding/json"
	"testing"
	"time"
)

// /recent keeps the Python hacheck's shape, and the commands read back what the server wrote.
func TestRecentAnswerJSON(t *testing.T) {
	want := RecentAnswer{SeenServices: []RecentService{{Service: "web", Code: 200, RemoteIP: "10.0.0.1", Time: time.Unix(1795500000, 0)}}, ThresholdSeconds: 600}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"seen_services":[["web",{"code":200,"remote_ip":"10.0.0.1","ts":1795500000}]],"threshold_seconds":600}` {
		t.Fatalf("marshalled %s", got)
	}
	var back RecentAnswer
	if err := json.Unmarshal(b, &back); err != nil || len(back.SeenServices) != 1 || back.SeenServices[0] != want.SeenServices[0] {
		t.Fatalf("read back %+v, %v", back, err)
	}
	for _, bad := range []string{`{"seen_services":[["web"]]}`, `{"seen_services":[[5,{}]]}`, `{"seen_services":[["web",{"code":"x"}]]}`, `{"seen_services":["web"]}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// FuzzRecentAnswer: whatever answers on the server's port, the commands' decoding never panics,
// and what it accepts reads back the same once written again.
func FuzzRecentAnswer(f *testing.F) {
	for _, s := range []string{`{"seen_services":[["web",{"code":200,"remote_ip":"10.0.0.1","ts":1795500000}]],"threshold_seconds":600}`,
		`{"seen_services":[]}`, `{"seen_services":[["a",{}],["b",{"ts":-1e300}]]}`, `[]`, `{"seen_services":[[null,null]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a RecentAnswer
		if json.Unmarshal(data, &a) != nil {
			return
		}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("%q decoded but does not encode: %v", data, err)
		}
		var back RecentAnswer
		if err := json.Unmarshal(b, &back); err != nil || len(back.SeenServices) != len(a.SeenServices) {
			t.Fatalf("%s does not read back: %v", b, err)
		}
	})
}
