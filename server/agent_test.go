package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// askAgent sends line as HAProxy's agent-send does and returns the agent's reply.
func askAgent(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(reply)
}

// runWithAgent runs Run with agent_port set to a port that was free a moment ago; it returns
// the HTTP port, the agent's address, the spool root and a stop function.
func runWithAgent(t *testing.T) (httpPort int, agentAddr, root string, stop func() error) {
	t.Helper()
	return runWithAgentConfig(t, "")
}

// runWithAgentConfig is runWithAgent with extraConfig appended to the config file.
func runWithAgentConfig(t *testing.T, extraConfig string) (httpPort int, agentAddr, root string, stop func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agentPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "hacheck.yml")
	if err := os.WriteFile(cfgPath, []byte("agent_port: "+strconv.Itoa(agentPort)+"\n"+extraConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(dir, "spool")
	ready := make(chan []net.Listener, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{ConfigPath: cfgPath, SpoolRoot: root, BindAddress: "127.0.0.1", Ports: []int{0},
			Version: "test", Ready: func(ls []net.Listener) { ready <- ls }}, io.Discard)
	}()
	select {
	case ls := <-ready:
		httpPort = ls[0].Addr().(*net.TCPAddr).Port
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before serving: %v", err)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	return httpPort, "127.0.0.1:" + strconv.Itoa(agentPort), root, stop
}

// TestRunServesTheAgent: with agent_port set, Run answers agent checks from the spool, the
// replies show at GET /lb, and the listener closes with the server.
func TestRunServesTheAgent(t *testing.T) {
	httpPort, agent, root, stop := runWithAgent(t)
	if got := askAgent(t, agent, "web:8080\n"); got != "ready 100%\n" {
		t.Fatalf("agent reply with no mark: %q", got)
	}
	store := spool.New(root)
	if _, err := store.Down("web", 0, "kernel upgrade", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := askAgent(t, agent, "web:8080\n"); got != "maint # kernel upgrade\n" {
		t.Fatalf("agent reply with a down mark: %q", got)
	}
	if got := askAgent(t, agent, "api\n"); got != "ready 100%\n" {
		t.Fatalf("agent reply for another service: %q", got)
	}
	if _, err := store.Put(spool.Mark{Service: "api", Port: 9000, Reason: "deploy", Drain: true}); err != nil {
		t.Fatal(err)
	}
	if got := askAgent(t, agent, "api:9000\n"); got != "drain\n" {
		t.Fatalf("agent reply with a drain mark: %q", got)
	}

	code, body := httpGet(t, "http://127.0.0.1:"+strconv.Itoa(httpPort)+"/lb/web")
	var snap lb.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); code != 200 || err != nil {
		t.Fatalf("GET /lb/web: %d %q %v", code, body, err)
	}
	// Two polls in a moment: kept, but not a load balancer yet (lb's tests have the rest).
	if len(snap.Agents) != 0 || snap.Unconfirmed != 1 {
		t.Errorf("GET /lb/web = %+v, want one poller, not yet counted", snap)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c, err := net.DialTimeout("tcp", agent, time.Second); err == nil {
		c.Close()
		t.Errorf("the agent port still accepts connections after Run returned")
	}
}

func TestRunRefusesATakenAgentPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "hacheck.yml")
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	logPath := filepath.Join(dir, "hacheck.log")
	if err := os.WriteFile(cfgPath, []byte("agent_port: "+port+"\nlog_path: "+logPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), RunOptions{ConfigPath: cfgPath, SpoolRoot: filepath.Join(dir, "spool"),
		BindAddress: "127.0.0.1", Ports: []int{0}, Version: "test"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "agent_port") || !strings.Contains(err.Error(), port) {
		t.Fatalf("Run with agent_port taken: %v, want an error naming agent_port and the port", err)
	}
	// The failed start stops the spool's change watcher; that is no failure of the audit.
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logged), "no longer audited") {
		t.Errorf("a failed start logged the audit as broken:\n%s", logged)
	}
}

// An agent check is a check request: a client outside check_allowed_cidrs gets no answer.
func TestAgentFollowsCheckAllowedCIDRs(t *testing.T) {
	_, agent, _, _ := runWithAgentConfig(t, "check_allowed_cidrs: [10.0.0.0/8]\n")
	c, err := net.Dial("tcp", agent)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "web\n")
	// Closed with the request unread: an end of stream or a reset, never a reply.
	if got, err := io.ReadAll(c); len(got) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a client outside check_allowed_cidrs got %q (%v)", got, err)
	}
}
