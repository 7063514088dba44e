package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacheck/hacheck/internal/testbin"
)

// The attacker's side of --wait and the guard, against two real HAProxy: what is not a load
// balancer (a copied header, a forged DOWN, an `nc` to the agent port, a flood of invented
// reporters) must neither stall a --wait, nor end one early, nor push the real load balancers
// out of what hacheck knows.

// clientFrom is an HTTP client whose connections come from the loopback address given, as
// another host's would.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

// forge sends one check request with the send-state header given, as a curl would.
func forge(t *testing.T, c *http.Client, url, header string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Haproxy-Server-State", header)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("forged check: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func sendState(state, name, node string, port int) string {
	return fmt.Sprintf("%s; address=127.0.0.1; port=%d; name=%s; node=%s; weight=1/2; scur=0/0; qcur=0", state, port, name, node)
}

func TestMaintenanceWaitTrustsOnlyLoadBalancers(t *testing.T) {
	agentPort := freePort(t)
	s := startMaintSetup(t, "agent_port: "+strconv.Itoa(agentPort)+"\n")
	port1 := strconv.Itoa(s.app1.port())
	checkURL := s.hc.url("/http/web/1/health")
	mark := filepath.Join(s.hc.spoolRoot, "web:"+port1)
	down := func(t *testing.T) cliRun {
		t.Helper()
		return s.run(t, "hadown", "-v", "-r", "e2e", "--wait", "--timeout", "20s", "-P", port1, "web")
	}
	// heldDown: the command ended with exit 0 when both load balancers really held app1 DOWN.
	heldDown := func(t *testing.T, r cliRun) {
		t.Helper()
		st := s.statusOn(t, "be_web/app1")
		if r.code != 0 || !all(st, "DOWN") {
			t.Fatalf("hadown --wait = exit %d after %v with app1 %v on lb1, lb2; want exit 0 with both DOWN\nstderr: %s", r.code, r.took, st, r.stderr)
		}
	}
	backUp := func(t *testing.T) {
		t.Helper()
		if r := s.run(t, "haup", "--wait", "--timeout", "20s", "-P", port1, "web"); r.code != 0 || !all(s.statusOn(t, "be_web/app1"), "UP") {
			t.Fatalf("haup --wait = exit %d: %s", r.code, r.stderr)
		}
	}

	t.Run("a header copied from another address", func(t *testing.T) {
		forge(t, clientFrom("127.0.0.2"), checkURL, sendState("UP", "be_web/app1", "lb1", s.app1.port()))
		r := down(t)
		heldDown(t, r)
		if strings.Contains(r.stderr, "127.0.0.2") {
			t.Errorf("hadown --wait named the impostor: %s", r.stderr)
		}
		snap, err := s.lbSnapshot("web")
		if err != nil || len(snap.Servers) != 4 || snap.Unconfirmed != 1 {
			t.Errorf("GET /lb/web = %+v (%v); want the 4 real lines and the impostor unconfirmed", snap, err)
		}
		for _, l := range snap.Servers {
			if l.Source != "127.0.0.1" {
				t.Errorf("GET /lb/web lists %+v as a load balancer", l)
			}
		}
		backUp(t)
	})

	t.Run("one nc to the agent port", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(agentPort), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "web:"+port1+"\n")
		reply, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || reply != "ready 100%\n" {
			t.Fatalf("the agent answered %q (%v)", reply, err)
		}
		r := down(t)
		heldDown(t, r)
		if strings.Contains(r.stderr, "agent check from") || strings.Contains(r.stderr, "1 agent") {
			t.Errorf("hadown --wait waited on the nc as an agent: %s", r.stderr)
		}
		backUp(t)
	})

	t.Run("a forged DOWN from the load balancers' own address", func(t *testing.T) {
		cmd := s.command("hadown", "-v", "-r", "e2e", "--wait", "--timeout", "20s", "-P", port1, "web")
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// As soon as the mark is there, both lines "report" DOWN, from 127.0.0.1 as HAProxy's
		// own checks do, with their node and server names: HAProxy still holds app1 UP.
		waitFor(t, 10*time.Second, "the mark written", func() (bool, string) {
			_, err := os.Stat(mark)
			return err == nil, fmt.Sprint(err)
		})
		local := clientFrom("127.0.0.1")
		for _, node := range []string{"lb1", "lb2"} {
			forge(t, local, checkURL, sendState("DOWN", "be_web/app1", node, s.app1.port()))
		}
		var err error
		select {
		case err = <-exited:
		case <-time.After(30 * time.Second):
			t.Fatal("hadown --wait did not return within 30 s")
		}
		st := s.statusOn(t, "be_web/app1")
		if err != nil || !all(st, "DOWN") {
			t.Fatalf("hadown --wait returned (%v) with app1 %v on lb1, lb2; want it to wait until both hold it DOWN\nstderr: %s", err, st, stderr.String())
		}
		backUp(t)
	})

	t.Run("32,000 checks with 11 KB node names", func(t *testing.T) {
		// Each a line of its own: a node name of 11 KB, on web and 31 invented services.
		huge := strings.Repeat("n", 11<<10)
		flood(t, clientFrom("127.0.0.1"), 32_000, func(i int) (string, string) {
			svc := "web"
			if i%32 != 0 {
				svc = fmt.Sprintf("huge%d", i%32)
			}
			return s.hc.url("/spool/" + svc + "/0/"), sendState("UP", "be_web/app1", fmt.Sprintf("%05d%s", i, huge), s.app1.port())
		})
		resp, err := http.Get(s.hc.url("/lb/web"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(body) > 16<<10 || strings.Contains(string(body), "nnnnnnnn") {
			t.Errorf("GET /lb/web after the flood: %d bytes, want the 4 real lines alone: %.300s", len(body), body)
		}
		if hwm := peakRSS(t, s.hc.cmd.Process.Pid); !testbin.Race() && hwm > 64<<20 {
			t.Errorf("hacheck's peak RSS after the flood: %d MiB, want at most 64", hwm>>20)
		} else {
			t.Logf("hacheck's peak RSS after the flood: %d MiB (race detector: %v)", hwm>>20, testbin.Race())
		}
	})

	t.Run("2,000 invented reporters just after a restart", func(t *testing.T) {
		s.hc.stop(t, 10*time.Second)
		s.hc = startHacheck(t, s.hc.bin, s.hc.spoolRoot, s.hc.config, s.hc.port)
		// From the load balancers' own address: half invented services, half invented lines
		// of the services that the load balancers check.
		flood(t, clientFrom("127.0.0.1"), 2000, func(i int) (string, string) {
			if i%2 == 0 {
				return s.hc.url(fmt.Sprintf("/spool/invented%d/0/", i)), sendState("UP", fmt.Sprintf("be_x/s%d", i), "lb1", 1)
			}
			return s.hc.url("/spool/solo/0/"), sendState("UP", "be_solo/solo1", fmt.Sprintf("lb%d", i+3), s.solo.port())
		})
		s.waitEstablished(t, map[string]int{"web": 4, "solo": 2})
		r := s.run(t, "hadown", "--guard", "-r", "e2e", "solo")
		if r.code != 4 || !strings.Contains(r.stderr, "be_solo") {
			t.Fatalf("hadown --guard solo after the flood = exit %d, stderr %q; want the guard's exit 4", r.code, r.stderr)
		}
		heldDown(t, down(t))
		backUp(t)
	})
}

// flood sends n check requests, each with the URL and send-state header request(i) gives,
// over 16 connections.
func flood(t *testing.T, c *http.Client, n int, request func(i int) (url, header string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var failed sync.Once
	for range 16 {
		wg.Go(func() {
			for i := range next {
				url, header := request(i)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header.Set("X-Haproxy-Server-State", header)
				resp, err := c.Do(req)
				if err != nil {
					failed.Do(func() { t.Errorf("flood request %d: %v", i, err) })
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}
