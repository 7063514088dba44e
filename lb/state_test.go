package lb

import (
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   State
	}{
		{"measured from HAProxy 2.6", "UP; address=127.0.0.1; port=18080; name=be_app/app1; node=lb1; weight=1/1; scur=0/0; qcur=0",
			State{Word: "UP", Address: "127.0.0.1", Port: 18080, Backend: "be_app", Server: "app1", Node: "lb1", Weight: 1, TotalWeight: 1}},
		{"rise counters", "DOWN 1/2; address=10.0.0.5; port=8080; name=web/w1; node=lb2; weight=0/3; scur=0/7; qcur=0",
			State{Word: "DOWN", Counters: "1/2", Address: "10.0.0.5", Port: 8080, Backend: "web", Server: "w1", Node: "lb2", TotalWeight: 3, BackendScur: 7}},
		{"fall counters, sessions, throttle", "UP 2/3; address=::1; port=443; name=be/s; node=n; weight=2/6; scur=4/9; qcur=1; throttle=30%",
			State{Word: "UP", Counters: "2/3", Address: "::1", Port: 443, Backend: "be", Server: "s", Node: "n", Weight: 2, TotalWeight: 6, Scur: 4, BackendScur: 9, Qcur: 1, Throttle: 30}},
		{"NOLB", "NOLB; port=1; name=b/s; node=x; weight=0/1; scur=2/2; qcur=0",
			State{Word: "NOLB", Port: 1, Backend: "b", Server: "s", Node: "x", TotalWeight: 1, Scur: 2, BackendScur: 2}},
		{"two-word state", "no check; name=b/s; node=x",
			State{Word: "no check", Backend: "b", Server: "s", Node: "x"}},
		{"unknown fields and odd spacing", "UP ;  future=1;name = b/s ; node=lb1;;weight=3/4 ; x",
			State{Word: "UP", Backend: "b", Server: "s", Node: "lb1", Weight: 3, TotalWeight: 4}},
		{"server name with a slash", "UP; name=be/a/b; node=n", State{Word: "UP", Backend: "be", Server: "a/b", Node: "n"}},
		{"malformed numbers stay 0", "UP; port=99999; name=b/s; node=n; weight=x/2; scur=-1/3; qcur=q; throttle=%",
			State{Word: "UP", Backend: "b", Server: "s", Node: "n"}},
		{"huge numbers stay 0", "UP; name=b/s; weight=99999999999999999999/1; scur=1/99999999999999",
			State{Word: "UP", Backend: "b", Server: "s"}},
		{"port with sign", "UP; port=+80; name=b/s", State{Word: "UP", Backend: "b", Server: "s"}},
		{"no node", "UP; name=b/s", State{Word: "UP", Backend: "b", Server: "s"}},
		{"counters-like word only", "UP 1/x; name=b/s", State{Word: "UP 1/x", Backend: "b", Server: "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseState(tt.header)
			if err != nil {
				t.Fatalf("ParseState(%q): %v", tt.header, err)
			}
			if got != tt.want {
				t.Errorf("ParseState(%q)\n got %+v\nwant %+v", tt.header, got, tt.want)
			}
		})
	}
}

func TestParseStateRefuses(t *testing.T) {
	tests := []struct {
		header string
		want   error
	}{
		{"", ErrNoState},
		{"; name=b/s", ErrNoState},
		{"2/3; name=b/s", ErrNoState},
		{"name=b/s; node=n", ErrNoState},
		{strings.Repeat("U", 17) + "; name=b/s", ErrNoState},
		{"UP", ErrNoName},
		{"UP; address=1.2.3.4; port=80", ErrNoName},
		{"UP; name=b", ErrNoName},
		{"UP; name=/s", ErrNoName},
		{"UP; name=b/", ErrNoName},
		// The flood that made the tracker keep 11 KB node names.
		{"UP; name=b/s; node=" + strings.Repeat("n", 11<<10), ErrTooLong},
		{"UP; name=b/s; node=" + strings.Repeat("n", MaxNameBytes+1), ErrTooLong},
		{"UP; name=" + strings.Repeat("b", MaxNameBytes+1) + "/s", ErrTooLong},
		{"UP; name=b/" + strings.Repeat("s", MaxNameBytes+1), ErrTooLong},
		{"UP; name=b/s; x=" + strings.Repeat(" ", MaxHeaderBytes), ErrTooLong},
	}
	for _, tt := range tests {
		if _, err := ParseState(tt.header); err != tt.want {
			t.Errorf("ParseState(%q) = %v, want %v", tt.header, err, tt.want)
		}
	}
}

func TestWordLabel(t *testing.T) {
	for word, want := range map[string]string{"UP": "UP", "DOWN": "DOWN", "NOLB": "NOLB", "no check": "no check",
		"MAINT": "other", "up": "other", "": "other", "UP 1/x": "other"} {
		if got := WordLabel(word); got != want {
			t.Errorf("WordLabel(%q) = %q, want %q", word, got, want)
		}
	}
}

func FuzzParseState(f *testing.F) {
	for _, seed := range []string{
		"UP; address=127.0.0.1; port=18080; name=be_app/app1; node=lb1; weight=1/1; scur=0/0; qcur=0",
		"DOWN 1/2; address=::1; port=8080; name=web/w1; node=lb2; weight=0/3; scur=0/7; qcur=0; throttle=25%",
		"no check; name=b/s", "", ";;;", "UP; name=/", "UP 99999999999999999999/1; weight=/",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		st, err := ParseState(header)
		if err != nil {
			return
		}
		if st.Word == "" || len(st.Word) > maxWordLen || st.Backend == "" || st.Server == "" {
			t.Fatalf("ParseState(%q) accepted %+v", header, st)
		}
		if st.Port < 0 || st.Port > 65535 || st.Weight < 0 || st.TotalWeight < 0 || st.Scur < 0 ||
			st.BackendScur < 0 || st.Qcur < 0 || st.Throttle < 0 ||
			st.Weight > maxNumber || st.TotalWeight > maxNumber {
			t.Fatalf("ParseState(%q) gave a number out of range: %+v", header, st)
		}
		if strings.Contains(st.Backend, "/") {
			t.Fatalf("ParseState(%q) gave backend %q with a slash", header, st.Backend)
		}
	})
}
