package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// paastaDownBody is the expression PaaSTA's drain method (paasta_tools/hacheck.py) applies to a
// down body; it takes a missing "since" as 0, "safe to kill at once".
var paastaDownBody = regexp.MustCompile(`^Service (?P<service>.+) in (?P<state>.+) state(?: since (?P<since>[0-9.]+))?(?: until (?P<until>[0-9.]+))?(?:: (?P<reason>.*))?$`)

// parsePaasta parses body as PaaSTA does; ok is false when it would not match (PaaSTA then
// fails on the task).
func parsePaasta(body string) (fields map[string]string, ok bool) {
	match := paastaDownBody.FindStringSubmatch(body)
	if match == nil {
		return nil, false
	}
	fields = map[string]string{}
	for i, name := range paastaDownBody.SubexpNames() {
		if name != "" {
			fields[name] = match[i]
		}
	}
	return fields, true
}

// The Python hacheck's own expectation, on a mark file as it writes them.
func TestDownBodyAsThePythonHacheckWritesIt(t *testing.T) {
	s, clock := newTestStore(t)
	expiration := clock.Now().Add(time.Hour).Unix()
	writeFile(t, s.Root(), "any", fmt.Sprintf(`{"reason": "reason", "creation": 4, "expiration": %d}`, expiration))
	m, down := s.Status("any", 1)
	want := fmt.Sprintf("Service any in down state since 4.000000 until %d.000000: reason", expiration)
	if got := m.DownBody("any"); !down || got != want {
		t.Fatalf("body = %q (down %v), want %q", got, down, want)
	}
}

// Every shape of mark gives a body PaaSTA parses, with the right name, "since" from the
// creation or the file's modification time, "until" only for marks that expire, and the reason.
func TestDownBodyParsedAsPaastaDoes(t *testing.T) {
	mtime := time.Unix(1749999000, 250000000)
	tests := []struct {
		name                 string
		file, content        string
		service              string
		port                 int
		wantName, wantSince  string
		wantUntil, wantReasn string
		wantNoReason         bool
	}{
		{"json, creation and expiration", "web", `{"reason": "deploy", "creation": 1749990000.5, "expiration": 1750003600}`,
			"web", 8080, "web", "1749990000.500000", "1750003600.000000", "deploy", false},
		{"json, creation only", "web", `{"reason": "deploy", "creation": 1749990000, "expiration": null}`,
			"web", 0, "web", "1749990000.000000", "", "deploy", false},
		{"json, no creation: the file's time", "web", `{"reason": "deploy", "expiration": 1750003600.25}`,
			"web", 8080, "web", "1749999000.250000", "1750003600.250000", "deploy", false},
		{"json, nothing but a reason", "web", `{"reason": "deploy"}`,
			"web", 8080, "web", "1749999000.250000", "", "deploy", false},
		{"json, empty reason", "web", `{"reason": "", "creation": 1749990000}`,
			"web", 8080, "web", "1749990000.000000", "", "", true},
		{"json, fraction at a rounding tie", "web", `{"reason": "r", "creation": 1749990000.0078125}`,
			"web", 8080, "web", "1749990000.007812", "", "r", false},
		{"plain text from an old tool", "web", "kernel upgrade\n",
			"web", 8080, "web", "1749999000.250000", "", "kernel upgrade", false},
		{"empty plain text", "web", "",
			"web", 8080, "web", "1749999000.250000", "", "", true},
		{"plain text over lines", "web", "kernel upgrade\nticket OPS-1\r\n",
			"web", 8080, "web", "1749999000.250000", "", "kernel upgrade ticket OPS-1", false},
		{"reason with a colon", "web", `{"reason": "by: alice: disk", "creation": 1749990000}`,
			"web", 8080, "web", "1749990000.000000", "", "by: alice: disk", false},
		{"host-wide mark", "all", `{"reason": "reboot", "creation": 1749990000, "expiration": 1750003600}`,
			"web", 8080, "all", "1749990000.000000", "1750003600.000000", "reboot", false},
		{"host-wide mark, plain text", "all", "reboot",
			"web", 0, "all", "1749999000.250000", "", "reboot", false},
		{"per-port mark", "web:8080", `{"reason": "disk", "creation": 1749990000}`,
			"web", 8080, "web", "1749990000.000000", "", "disk", false},
		{"PaaSTA registration name", "web.main:31000", `{"reason": "Drained by Paasta", "creation": 1749990000, "expiration": 1750002400.123456}`,
			"web.main", 31000, "web.main", "1749990000.000000", "1750002400.123456", "Drained by Paasta", false},
		{"unreadable mark", "web", `{"reason": "x", "expiration": "soon"}`,
			"web", 8080, "web", "1749999000.250000", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			path := filepath.Join(s.Root(), tt.file)
			writeFile(t, s.Root(), tt.file, tt.content)
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			m, down := s.Status(tt.service, tt.port)
			if !down {
				t.Fatal("not down")
			}
			body := m.DownBody(tt.service)
			fields, ok := parsePaasta(body)
			if !ok {
				t.Fatalf("PaaSTA cannot parse %q", body)
			}
			if fields["service"] != tt.wantName || fields["state"] != "down" || fields["since"] != tt.wantSince || fields["until"] != tt.wantUntil {
				t.Fatalf("body %q parses as %v; want service %q, since %q, until %q", body, fields, tt.wantName, tt.wantSince, tt.wantUntil)
			}
			if m.Err != nil {
				return // the reason says why it cannot be read; its wording is tested elsewhere
			}
			if fields["reason"] != tt.wantReasn {
				t.Fatalf("body %q parses with reason %q, want %q", body, fields["reason"], tt.wantReasn)
			}
			if tt.wantNoReason && body != "Service "+tt.wantName+" in down state since "+tt.wantSince {
				t.Fatalf("empty reason: body %q still has a reason part", body)
			}
		})
	}
}

// A mark with no known creation (one that cannot even be stat'ed) has no "since" at all, which
// is what the Python hacheck writes for such marks.
func TestDownBodyWithoutCreation(t *testing.T) {
	tests := []struct {
		mark Mark
		want string
	}{
		{Mark{Service: "web"}, "Service web in down state"},
		{Mark{Service: "web", Reason: "just because"}, "Service web in down state: just because"},
		{Mark{Service: AllServices, Reason: "r", Expiration: time.Unix(5, 0)}, "Service all in down state until 5.000000: r"},
		{Mark{Service: "web", Creation: time.Unix(4, 2400)}, "Service web in down state since 4.000002"},
	}
	for _, tt := range tests {
		if got := tt.mark.DownBody("web"); got != tt.want {
			t.Errorf("DownBody(%+v) = %q, want %q", tt.mark, got, tt.want)
		}
	}
}

// Re-downing with the same reason keeps "since", so a refreshed drain is not safe to kill
// sooner; another reason starts it again.
func TestDownBodySinceSurvivesRedown(t *testing.T) {
	s, clock := newTestStore(t)
	first := mustDown(t, s, "web", 31000, "Drained by Paasta", clock.Now().Add(time.Hour))
	clock.Advance(90 * time.Second)
	mustDown(t, s, "web", 31000, "Drained by Paasta", clock.Now().Add(time.Hour))
	m, _ := s.Status("web", 31000)
	fields, _ := parsePaasta(m.DownBody("web"))
	if since, _ := strconv.ParseFloat(fields["since"], 64); int64(since) != first.Creation.Unix() {
		t.Fatalf("since %v after a re-down, want the first creation %v", fields["since"], first.Creation.Unix())
	}
	mustDown(t, s, "web", 31000, "other reason", time.Time{})
	m, _ = s.Status("web", 31000)
	fields, _ = parsePaasta(m.DownBody("web"))
	if since, _ := strconv.ParseFloat(fields["since"], 64); int64(since) != clock.Now().Unix() {
		t.Fatalf("since %v after a new reason, want now %v", fields["since"], clock.Now().Unix())
	}
}

func FuzzDownBody(f *testing.F) {
	f.Add("web", "reason", int64(4), int64(5))
	f.Add("all", "", int64(0), int64(0))
	f.Add("a.b", "x\ny: z", int64(1750000000), int64(0))
	f.Fuzz(func(t *testing.T, service, reason string, creation, expiration int64) {
		if ValidateName(service) != nil || creation < 0 || expiration < 0 || creation > maxUnixSeconds || expiration > maxUnixSeconds {
			return
		}
		// PaaSTA's expression takes the service name greedily, so a reason such as "db in
		// read-only state" is read as part of the name, as it is from the Python hacheck:
		// only the body's own parts are checked here.
		for strings.Contains(reason, " in ") {
			reason = strings.ReplaceAll(reason, " in ", " ")
		}
		m := Mark{Service: service, Reason: reason}
		if creation > 0 {
			m.Creation = time.Unix(creation, 0)
		}
		if expiration > 0 {
			m.Expiration = time.Unix(expiration, 0)
		}
		fields, ok := parsePaasta(m.DownBody(service))
		if !ok {
			t.Fatalf("PaaSTA cannot parse %q", m.DownBody(service))
		}
		if fields["service"] != service || fields["state"] != "down" {
			t.Fatalf("%q parses as %v", m.DownBody(service), fields)
		}
		if creation > 0 && fields["since"] != strconv.FormatInt(creation, 10)+".000000" {
			t.Fatalf("%q parses with since %q", m.DownBody(service), fields["since"])
		}
	})
}

// A drain mark's body is the down body with the state word "drain": PaaSTA's expression reads
// it with state "drain" and the same since, until and reason.
func TestDrainBodyParsedAsPaastaDoes(t *testing.T) {
	s, clock := newTestStore(t)
	expiration := clock.Now().Add(time.Hour).Truncate(time.Second)
	writeFile(t, s.Root(), "web:8080", fmt.Sprintf(`{"reason": "deploy: step 2", "creation": 1749990000.5, "expiration": %d, "drain": true}`, expiration.Unix()))
	m, down := s.Status("web", 8080)
	if !down || !m.Drain {
		t.Fatalf("Status = %+v, %v; want the drain mark", m, down)
	}
	body := m.DrainBody("web")
	fields, ok := parsePaasta(body)
	want := map[string]string{"service": "web", "state": "drain", "since": "1749990000.500000",
		"until": fmt.Sprintf("%d.000000", expiration.Unix()), "reason": "deploy: step 2"}
	if !ok || fmt.Sprint(fields) != fmt.Sprint(want) {
		t.Fatalf("DrainBody = %q, parsed as %v (%v); want %v", body, fields, ok, want)
	}
	if got := m.DownBody("web"); got != strings.Replace(body, " drain state", " down state", 1) {
		t.Errorf("DownBody %q and DrainBody %q differ in more than the state word", got, body)
	}
}
