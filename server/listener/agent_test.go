package listener

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

	"github.com/hacheck/hacheck/lb"
)

// fakeSpool answers from a fixed table; unknown keys are up. It records what was asked, and
// what was sent to whom.
type fakeSpool struct {
	mu    sync.Mutex
	marks map[string]lb.Verdict
	asked []string
	sent  []string // "<source> <reply>"
}

// answer is the listener's Answer from this spool, with lb's grammar.
func (f *fakeSpool) answer(req AgentRequest) (string, func()) {
	_, _, reply, _ := lb.Answer(req.Line, f.lookup, time.Now())
	return reply, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.sent = append(f.sent, req.Source.String()+" "+reply)
	}
}

func (f *fakeSpool) lookup(service string, port int, _ time.Time) lb.Verdict {
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
	return lb.Verdict{Weight: -1}
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
	sp := &fakeSpool{marks: map[string]lb.Verdict{"web": {Down: true, Reason: "deploy", Weight: -1}}}
	a := &AgentServer{Answer: sp.answer, ReadTimeout: 20 * time.Millisecond}
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
	sp := &fakeSpool{marks: map[string]lb.Verdict{
		"web":      {Down: true, Reason: "deploy", Weight: -1},
		"api:8080": {Down: true, Drain: true, Weight: -1},
		"db":       {Weight: 40},
	}}
	// ask ends its side after the request: nothing here waits for ReadTimeout, which is long
	// so that a slow client is never answered before its request arrives.
	addr := startAgent(t, &AgentServer{Answer: sp.answer, ReadTimeout: time.Minute})
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
	if len(sp.sent) != len(tests) || sp.sent[1] != "127.0.0.1 drain" {
		t.Errorf("sent %q, want every reply, the second the drain to 127.0.0.1", sp.sent)
	}
}

// TestAgentServerIdleCrowd: hundreds of connections that send nothing and never close, from
// another address or from the agent's own, never keep a real agent from its answer. The read
// window is long here, so that the idle ones hold on for the whole test unless made room for.
func TestAgentServerIdleCrowd(t *testing.T) {
	for _, from := range []string{"127.0.0.2", "127.0.0.1"} {
		t.Run("from "+from, func(t *testing.T) {
			sp := &fakeSpool{}
			addr := startAgent(t, &AgentServer{Answer: sp.answer, ReadTimeout: time.Minute})
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
	addr := startAgent(t, &AgentServer{Answer: sp.answer, ReadTimeout: 20 * time.Millisecond, MaxConns: 4})
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
	addr := startAgent(t, &AgentServer{Answer: sp.answer, ReadTimeout: 20 * time.Millisecond})
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
	addr := startAgent(t, &AgentServer{Answer: sp.answer,
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
	if len(sp.sent) != 0 || len(sp.asked) != 0 {
		t.Errorf("refused client was sent %q, spool asked %q", sp.sent, sp.asked)
	}
}
