package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestReply(t *testing.T) {
	tests := []struct {
		v    Verdict
		want string
	}{
		{Verdict{Weight: -1}, "ready 100%"},
		{Verdict{Weight: 30}, "ready 30%"},
		{Verdict{Weight: 0}, "ready 0%"},
		{Verdict{Weight: 256}, "ready 256%"},
		{Verdict{Weight: 999}, "ready 100%"},
		{Verdict{Down: true, Reason: "kernel upgrade", Weight: -1}, "maint # kernel upgrade"},
		{Verdict{Down: true, Weight: 30}, "maint"},
		{Verdict{Down: true, Reason: "line\nbreak\r\tand\x00more  ", Weight: -1}, "maint # line break  and more"},
		{Verdict{Down: true, Reason: strings.Repeat("é", 150), Weight: -1}, "maint # " + strings.Repeat("é", 100)},
		{Verdict{Down: true, Drain: true, Reason: "deploy", Weight: 30}, "drain"},
	}
	for _, tt := range tests {
		if got := Reply(tt.v); got != tt.want {
			t.Errorf("Reply(%+v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		line    string
		service string
		port    int
		ok      bool
	}{
		{"web", "web", 0, true},
		{"web:8080", "web", 8080, true},
		{" web:8080\r", "web", 8080, true},
		{"all", "all", 0, true},
		{"all:80", "", 0, false},
		{"web:0", "", 0, false},
		{"web:65536", "", 0, false},
		{"web:+80", "", 0, false},
		{"web:", "", 0, false},
		{"../etc/passwd", "", 0, false},
		{".hidden", "", 0, false},
		{"", "", 0, false},
		{"web 8080", "", 0, false},
		{strings.Repeat("a", 129), "", 0, false},
	}
	for _, tt := range tests {
		service, port, ok := ParseRequest(tt.line)
		if service != tt.service || port != tt.port || ok != tt.ok {
			t.Errorf("ParseRequest(%q) = %q, %d, %v; want %q, %d, %v", tt.line, service, port, ok, tt.service, tt.port, tt.ok)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{"web", "web:8080", "all", "a:99999", ":", "..:1", "web:08080\r"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		service, port, ok := ParseRequest(line)
		if !ok {
			return
		}
		if len(service) == 0 || len(service) > 128 || strings.ContainsAny(service, "/:\x00 ") || port < 0 || port > 65535 {
			t.Fatalf("ParseRequest(%q) accepted %q, %d", line, service, port)
		}
	})
}

// fakeSpool answers from a fixed table; unknown keys are up.
type fakeSpool struct {
	mu    sync.Mutex
	marks map[string]Verdict
	asked []string
}

func (f *fakeSpool) lookup(service string, port int, _ time.Time) Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := service
	if port != 0 {
		k += ":" + strconv.Itoa(port)
	}
	f.asked = append(f.asked, k)
	if v, ok := f.marks[k]; ok {
		return v
	}
	return Verdict{Weight: -1}
}

func startAgent(t *testing.T, a *AgentServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// ask connects, sends what HAProxy's agent-send would (nothing when send is ""), ends its side
// so that the server has all of it without waiting for ReadTimeout, and returns the reply line,
// "\n" included. What the server makes of a line still open is TestAgentServeConnOpenLine's.
func ask(t *testing.T, addr, send string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply to %.40q: %v", send, err)
	}
	return string(reply)
}

// received is a connection on which what a client sent has already arrived: Read returns it
// first, then reads the connection.
type received struct {
	net.Conn
	r io.Reader
}

func (c received) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestAgentServeConnOpenLine: what a client sends and then leaves open, without its line end,
// is answered once ReadTimeout passes. The request has arrived before ServeConn starts, so it
// is there before the deadline however slow the machine is.
func TestAgentServeConnOpenLine(t *testing.T) {
	sp := &fakeSpool{marks: map[string]Verdict{"web": {Down: true, Reason: "deploy", Weight: -1}}}
	a := &AgentServer{Lookup: sp.lookup, ReadTimeout: 20 * time.Millisecond}
	tests := []struct{ name, send, want string }{
		{"a name without line end", "web", "maint # deploy\n"},
		{"nothing sent: the host-wide mark", "", "ready 100%\n"},
		{"overlong line", strings.Repeat("x", 4096), "ready 100%\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			client.SetDeadline(time.Now().Add(5 * time.Second))
			served := make(chan struct{})
			go func() {
				defer close(served)
				a.ServeConn(received{server, io.MultiReader(strings.NewReader(tt.send), server)})
			}()
			reply, err := io.ReadAll(client)
			if err != nil {
				t.Fatalf("reading the reply: %v", err)
			}
			if string(reply) != tt.want {
				t.Errorf("reply %q, want %q", reply, tt.want)
			}
			<-served
		})
	}
}

func TestAgentServer(t *testing.T) {
	sp := &fakeSpool{marks: map[string]Verdict{
		"web":      {Down: true, Reason: "deploy", Weight: -1},
		"api:8080": {Down: true, Drain: true, Weight: -1},
		"db":       {Weight: 40},
	}}
	tr := NewTracker(Options{})
	// ask ends its side after the request: nothing here waits for ReadTimeout, which is long
	// so that a slow client is never answered before its request arrives.
	addr := startAgent(t, &AgentServer{Lookup: sp.lookup, Tracker: tr, ReadTimeout: time.Minute})
	tests := []struct {
		name, send, want, asked string
	}{
		{"down mark", "web\n", "maint # deploy\n", "web"},
		{"drain mark on a port", "api:8080\n", "drain\n", "api:8080"},
		{"other port up", "api:8081\n", "ready 100%\n", "api:8081"},
		{"weight", "db\r\n", "ready 40%\n", "db"},
		{"nothing sent: the host-wide mark", "", "ready 100%\n", "all"},
		{"no line end, but a name", "web", "maint # deploy\n", "web"},
		{"garbage", "GET / HTTP/1.0\r\n\r\n", "ready 100%\n", "all"},
		{"overlong line", strings.Repeat("x", 4096), "ready 100%\n", "all"},
		{"binary", "\x00\xff\xfe\n", "ready 100%\n", "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp.mu.Lock()
			sp.asked = nil
			sp.mu.Unlock()
			if got := ask(t, addr, tt.send); got != tt.want {
				t.Errorf("reply %q, want %q", got, tt.want)
			}
			sp.mu.Lock()
			defer sp.mu.Unlock()
			if len(sp.asked) != 1 || sp.asked[0] != tt.asked {
				t.Errorf("spool asked for %q, want [%s]", sp.asked, tt.asked)
			}
		})
	}
	// One poll each: recorded, but not yet a load balancer.
	if snap := tr.Snapshot("api", 0, time.Now()); len(snap.Agents) != 0 || snap.Unconfirmed != 2 {
		t.Errorf("tracker has %+v for api, want the two polls unconfirmed", snap)
	}
}

// TestAgentServerIdleCrowd: hundreds of connections that send nothing and never close, from
// another address or from the agent's own, never keep a real agent from its answer. The read
// window is long here, so that the idle ones hold on for the whole test unless made room for.
func TestAgentServerIdleCrowd(t *testing.T) {
	for _, from := range []string{"127.0.0.2", "127.0.0.1"} {
		t.Run("from "+from, func(t *testing.T) {
			sp := &fakeSpool{}
			addr := startAgent(t, &AgentServer{Lookup: sp.lookup, ReadTimeout: time.Minute})
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
			var idle []net.Conn
			t.Cleanup(func() {
				for _, c := range idle {
					c.Close()
				}
			})
			for range 300 {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				idle = append(idle, c)
			}
			answered := 0
			for range 50 {
				if got := ask(t, addr, "web\n"); got == "ready 100%\n" {
					answered++
				}
			}
			if answered != 50 {
				t.Errorf("with 300 idle connections open, %d of 50 requests answered", answered)
			}
		})
	}
}

// TestAgentServerManyClients: more clients at once than MaxConns, and slow ones that send
// nothing, never stop the server answering later ones.
func TestAgentServerManyClients(t *testing.T) {
	sp := &fakeSpool{}
	addr := startAgent(t, &AgentServer{Lookup: sp.lookup, ReadTimeout: 20 * time.Millisecond, MaxConns: 4})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			bufio.NewReader(c).ReadString('\n') // answered or closed: either is fine here
		})
	}
	wg.Wait()
	if got := ask(t, addr, "web\n"); got != "ready 100%\n" {
		t.Errorf("after the crowd, reply %q", got)
	}
}

// TestAgentServerEndlessLine: a client that never stops sending is cut off, and the server
// goes on answering others.
func TestAgentServerEndlessLine(t *testing.T) {
	sp := &fakeSpool{}
	addr := startAgent(t, &AgentServer{Lookup: sp.lookup, ReadTimeout: 20 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	chunk := []byte(strings.Repeat("x", 64<<10))
	var err2 error
	for range 1 << 10 { // up to 64 MiB: far more than the server ever reads
		if _, err2 = c.Write(chunk); err2 != nil {
			break
		}
	}
	// Cut off: the server answered and closed with the rest unread, so the kernel refuses what
	// follows (a reset, seen as EPIPE or ECONNRESET). A timeout means it kept reading.
	if !errors.Is(err2, syscall.EPIPE) && !errors.Is(err2, syscall.ECONNRESET) {
		t.Fatalf("writing an endless line: %v; want it cut off with a broken pipe or a reset", err2)
	}
	// What is left to read is the reply, or nothing when the reset destroyed it; never a wait.
	if got, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) || len(got) != 0 && string(got) != "ready 100%\n" {
		t.Errorf("after the cut, read %q (%v); want the host-wide reply or the end", got, err)
	}
	if got := ask(t, addr, "web\n"); got != "ready 100%\n" {
		t.Errorf("after the endless line, reply %q", got)
	}
}

// TestAgentServerAllow: a client Allow refuses is closed unanswered and not recorded.
func TestAgentServerAllow(t *testing.T) {
	sp := &fakeSpool{}
	tr := NewTracker(Options{})
	addr := startAgent(t, &AgentServer{Lookup: sp.lookup, Tracker: tr,
		Allow: func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.1") }})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "web\n")
	// Closed with the request unread: an end of stream or a reset, never a reply.
	if got, err := io.ReadAll(c); len(got) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("refused client got %q (%v)", got, err)
	}
	if snap := tr.Snapshot("web", 0, time.Now()); len(snap.Agents) != 0 || snap.Unconfirmed != 0 || len(sp.asked) != 0 {
		t.Errorf("refused client recorded %+v, spool asked %q", snap.Agents, sp.asked)
	}
}
