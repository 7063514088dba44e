package spool

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseContent(t *testing.T) {
	mtime := time.Unix(1760000000, 0) // after the creations below: a writer sets creation no later than it writes
	tests := []struct {
		name       string
		content    string
		reason     string
		expiration time.Time
		creation   time.Time
		wantErr    string
	}{
		{"json", `{"reason": "kernel upgrade", "expiration": 1800000000, "creation": 1750000000}`, "kernel upgrade", time.Unix(1800000000, 0), time.Unix(1750000000, 0), ""},
		{"json null expiration", `{"reason": "x", "expiration": null, "creation": 1750000000}`, "x", time.Time{}, time.Unix(1750000000, 0), ""},
		{"json fractional", `{"reason": "x", "expiration": 1800000000.5}`, "x", time.Unix(1800000000, 5e8), mtime, ""},
		{"json without creation uses mtime", `{"reason": "x"}`, "x", time.Time{}, mtime, ""},
		{"plain text from old tools", "deploying\n", "deploying", time.Time{}, mtime, ""},
		{"empty file", "", "", time.Time{}, mtime, ""},
		{"json string is plain text", `"hello"`, `"hello"`, time.Time{}, mtime, ""},
		{"truncated json is plain text", `{"reason": "x"`, `{"reason": "x"`, time.Time{}, mtime, ""},
		{"wrong reason type", `{"reason": 5}`, "", time.Time{}, mtime, "wrong type"},
		{"wrong expiration type", `{"reason": "x", "expiration": "soon"}`, "", time.Time{}, mtime, "wrong type"},
		{"negative expiration", `{"reason": "x", "expiration": -1}`, "", time.Time{}, mtime, "not a finite unix time"},
		{"huge expiration", `{"reason": "x", "expiration": 1e300}`, "", time.Time{}, mtime, "not a finite unix time"},
		{"overflowing expiration", `{"reason": "x", "expiration": 1e999}`, "", time.Time{}, mtime, "wrong type"},
		{"bad creation", `{"reason": "x", "creation": "yesterday"}`, "", time.Time{}, mtime, "wrong type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseContent([]byte(tt.content), mtime)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if m.Err == nil || !strings.HasPrefix(m.Reason, "unreadable mark") {
					t.Fatalf("a mark that cannot be parsed must fail closed with a reason, got %+v", m)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if m.Reason != tt.reason || !m.Expiration.Equal(tt.expiration) || !m.Creation.Equal(tt.creation) {
				t.Fatalf("got reason %q expiration %v creation %v, want %q %v %v", m.Reason, m.Expiration, m.Creation, tt.reason, tt.expiration, tt.creation)
			}
		})
	}
}

func TestMarshalKeepsUnknownKeys(t *testing.T) {
	m, err := ParseContent([]byte(`{"reason": "a", "expiration": null, "creation": 1750000000, "ticket": "OPS-1", "nested": {"k": [1, 2]}}`), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.MarshalContent()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ticket":"OPS-1"`, `"nested":{"k":[1,2]}`, `"reason":"a"`, `"creation":1750000000`, `"expiration":null`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"web", ""},
		{"web-1.prod_x", ""},
		{"all", ""},
		{strings.Repeat("a", 128), ""},
		{"", "empty"},
		{strings.Repeat("a", 129), "at most 128"},
		{strings.Repeat("a", 200), "at most 128"},
		{".x", "must not start with '.'"},
		{"..", "must not start with '.'"},
		{"../etc", "must not start with '.'"},
		{"a/b", "only letters"},
		{"web:8080", "only letters"},
		{"a b", "only letters"},
		{"a\x00b", "only letters"},
		{"wéb", "only letters"},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.wantErr == "" && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidateName(%q) = %v, want %q", tt.name, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ValidateName(%q) error spans lines: %q", tt.name, err)
		}
	}
}

func TestParseFileName(t *testing.T) {
	tests := []struct {
		name    string
		service string
		port    int
		ok      bool
	}{
		{"web", "web", 0, true},
		{"web:8080", "web", 8080, true},
		{"all", "all", 0, true},
		{"web:0", "", 0, false},
		{"web:65536", "", 0, false},
		{"web:080", "", 0, false},
		{"web:+80", "", 0, false},
		{"web:", "", 0, false},
		{":80", "", 0, false},
		{".hacheck.lock", "", 0, false},
		{".hacheck-tmp-web-0011", "", 0, false},
		{"a b", "", 0, false},
	}
	for _, tt := range tests {
		service, port, ok := ParseFileName(tt.name)
		if service != tt.service || port != tt.port || ok != tt.ok {
			t.Errorf("ParseFileName(%q) = %q, %d, %v; want %q, %d, %v", tt.name, service, port, ok, tt.service, tt.port, tt.ok)
		}
	}
}

func FuzzParseContent(f *testing.F) {
	for _, seed := range []string{
		`{"reason": "kernel upgrade", "expiration": 1800000000, "creation": 1750000000}`,
		`{"reason": "x", "expiration": null}`,
		`{"reason": 5}`, `{"expiration": 1e999}`, `{"expiration": -1}`, "plain text\n", "", `"s"`, `{`, `{"a":{"b":[]}}`,
		`{"reason": "r", "drain": true, "weight": 30}`, `{"weight": 256.0}`, `{"weight": 1e3}`, `{"drain": null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseContent(data, time.Unix(1700000000, 0))
		if err != nil {
			if m.Err == nil {
				t.Fatalf("error %v but mark not failed closed", err)
			}
			return
		}
		// Whatever parses must survive a rewrite unchanged.
		out, err := m.MarshalContent()
		if err != nil {
			t.Fatalf("cannot rewrite parsed mark: %v", err)
		}
		again, err := ParseContent(out, time.Time{})
		if err != nil {
			t.Fatalf("rewritten mark %s does not parse: %v", out, err)
		}
		sameWeight := (again.Weight == nil) == (m.Weight == nil) && (m.Weight == nil || *again.Weight == *m.Weight)
		if again.Reason != m.Reason || !again.Expiration.Equal(m.Expiration) || again.Creation.Unix() != m.Creation.Unix() ||
			again.Drain != m.Drain || !sameWeight {
			t.Fatalf("round trip changed the mark: %+v -> %s -> %+v", m, out, again)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"web", "all", "", ".x", "../etc", "a/b", "web:80", strings.Repeat("a", 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if err != nil {
			return
		}
		if strings.ContainsAny(name, "/\x00:") || strings.HasPrefix(name, ".") || len(name) == 0 || len(name) > MaxNameLen {
			t.Fatalf("accepted unsafe name %q", name)
		}
		service, port, ok := ParseFileName(name)
		if !ok || service != name || port != 0 {
			t.Fatalf("valid name %q does not round-trip as a file name", name)
		}
	})
}

// Drain and weight marks: read, rewritten unchanged with unknown keys kept, and written only
// when set, so a plain down mark stays what every older reader expects.
func TestDrainAndWeightRoundTrip(t *testing.T) {
	weight := func(w int) *int { return &w }
	tests := []struct {
		name    string
		content string
		drain   bool
		weight  *int
		wantErr string
		written []string // substrings of the rewrite
		absent  []string // keys the rewrite must not have
	}{
		{"plain down mark", `{"reason": "r", "creation": 1750000000}`, false, nil, "", nil, []string{`"drain"`, `"weight"`}},
		{"drain", `{"reason": "r", "creation": 1750000000, "drain": true}`, true, nil, "", []string{`"drain":true`}, []string{`"weight"`}},
		{"drain false", `{"reason": "r", "drain": false}`, false, nil, "", nil, []string{`"drain"`}},
		{"weight", `{"reason": "r", "weight": 30}`, false, weight(30), "", []string{`"weight":30`}, []string{`"drain"`}},
		{"weight 0", `{"reason": "r", "weight": 0}`, false, weight(0), "", []string{`"weight":0`}, nil},
		{"weight 256", `{"reason": "r", "weight": 256, "drain": true}`, true, weight(256), "", []string{`"weight":256`, `"drain":true`}, nil},
		{"weight null", `{"reason": "r", "weight": null}`, false, nil, "", nil, []string{`"weight"`}},
		{"weight with unknown keys", `{"reason": "r", "weight": 50, "ticket": "OPS-2"}`, false, weight(50), "", []string{`"weight":50`, `"ticket":"OPS-2"`}, nil},
		{"weight 257", `{"reason": "r", "weight": 257}`, false, nil, "not a whole percentage", nil, nil},
		{"negative weight", `{"reason": "r", "weight": -1}`, false, nil, "not a whole percentage", nil, nil},
		{"fractional weight", `{"reason": "r", "weight": 12.5}`, false, nil, "not a whole percentage", nil, nil},
		{"weight as text", `{"reason": "r", "weight": "30%"}`, false, nil, "wrong type", nil, nil},
		{"drain as text", `{"reason": "r", "drain": "yes"}`, false, nil, "wrong type", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseContent([]byte(tt.content), time.Unix(1700000000, 0))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || m.Err == nil {
					t.Fatalf("err = %v, mark %+v; want a mark that fails closed with %q", err, m, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Drain != tt.drain || (m.Weight == nil) != (tt.weight == nil) || (m.Weight != nil && *m.Weight != *tt.weight) {
				t.Fatalf("parsed drain %v weight %v, want %v %v", m.Drain, m.Weight, tt.drain, tt.weight)
			}
			out, err := m.MarshalContent()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.written {
				if !strings.Contains(string(out), want) {
					t.Errorf("rewrite %s lacks %s", out, want)
				}
			}
			for _, key := range tt.absent {
				if strings.Contains(string(out), key) {
					t.Errorf("rewrite %s has %s", out, key)
				}
			}
			again, err := ParseContent(out, time.Time{})
			if err != nil || again.Drain != m.Drain || (again.Weight == nil) != (m.Weight == nil) || (m.Weight != nil && *again.Weight != *m.Weight) {
				t.Fatalf("round trip changed the mark: %+v -> %s -> %+v (%v)", m, out, again, err)
			}
		})
	}
}

func FuzzParseUnixTime(f *testing.F) {
	for _, seed := range []string{"1750000000", "1765032000.5417001", "0", "-1", "nan", "inf", "1e999", "0x1p30", "", " 1", "1e12", "1_000"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := ParseUnixTime(text)
		if err != nil {
			var invalid *InvalidError
			if !errors.As(err, &invalid) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not a one-line InvalidError", err)
			}
			return
		}
		sec := unixSeconds(got)
		if got.IsZero() || math.IsNaN(sec) || sec <= 0 || sec > maxUnixSeconds {
			t.Fatalf("%q accepted as %v", text, got)
		}
		again, err := ParseUnixTime(strconv.FormatFloat(sec, 'f', -1, 64))
		if err != nil || again.Sub(got).Abs() > time.Microsecond {
			t.Fatalf("%q -> %v does not round-trip: %v, %v", text, got, again, err)
		}
	})
}
