package deploy_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// activated starts hacheck serve the way systemd does for hacheck.socket: the listening socket
// as descriptor 3, LISTEN_FDS=1 and LISTEN_PID set to the pid of hacheck itself (the shell
// execs it, keeping its pid).
func activated(t *testing.T, bin string, socket *os.File, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	script := `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, filepath.Join(bin, "hacheck")}, args...)...)
	cmd.ExtraFiles = []*os.File{socket}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// TestSocketActivationRestartsRefuseNothing holds the listening socket as systemd does for
// hacheck.socket and restarts hacheck ten times under it (SIGTERM, wait for it to exit, start
// the next), while a client checks through a new connection each time, as HAProxy does. The
// kernel queues what arrives between two hachecks, so not one check may fail.
func TestSocketActivationRestartsRefuseNothing(t *testing.T) {
	bin := hacheckBin(t)
	spool := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	socket, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer socket.Close()
	url := fmt.Sprintf("http://%s/spool/web/8080/status", l.Addr())

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				ok.Add(1)
			}
			time.Sleep(2 * time.Millisecond) // a steady stream, a few hundred checks a second
		}
	}()

	const restarts = 10
	var logs []*syncBuffer
	cmd, out := activated(t, bin, socket, "serve", "--spool-root", spool)
	logs = append(logs, out)
	answered := func(after int64) func() (bool, string) {
		return func() (bool, string) {
			return ok.Load() >= after, fmt.Sprintf("%d checks answered, %d failed; hacheck's log:\n%s", ok.Load(), failed.Load(), tail(out.String(), 2000))
		}
	}
	waitFor(t, 20*time.Second, "the first hacheck to answer", answered(20))
	for i := range restarts {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("hacheck %d exited with %v:\n%s", i, err, tail(out.String(), 2000))
		}
		cmd, out = activated(t, bin, socket, "serve", "--spool-root", spool)
		logs = append(logs, out)
		waitFor(t, 20*time.Second, fmt.Sprintf("hacheck %d to answer", i+1), answered(ok.Load()+20))
	}
	close(stop)
	wg.Wait()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	if !strings.Contains(logs[len(logs)-1].String(), "socket activation") {
		t.Errorf("hacheck did not say it serves the passed socket:\n%s", tail(logs[len(logs)-1].String(), 2000))
	}
	t.Logf("%d restarts: %d checks answered, %d failed", restarts, ok.Load(), failed.Load())
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d checks failed across %d restarts; the first: %v", n, n+ok.Load(), restarts, firstErr.Load())
	}
}

// TestSocketActivationRefusesWhatIsNotAListeningSocket: a descriptor 3 that is a file or a
// socket nobody listens on is a clear error and exit 1, not a server that never answers.
func TestSocketActivationRefusesWhatIsNotAListeningSocket(t *testing.T) {
	bin := hacheckBin(t)
	file, err := os.Create(filepath.Join(t.TempDir(), "not-a-socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unlistened := os.NewFile(uintptr(fds[0]), "socketpair")
	defer unlistened.Close()
	syscall.Close(fds[1])

	for _, tt := range []struct {
		name string
		fd   *os.File
		want string
	}{
		{"a file", file, "descriptor 3 is not a socket"},
		{"a socket not listening", unlistened, "descriptor 3 is a socket that is not listening"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, out := activated(t, bin, tt.fd, "serve", "--spool-root", t.TempDir(), "-p", "0")
			err := cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; output:\n%s", err, out.String())
			}
			if got := strings.TrimSpace(out.String()); !strings.Contains(got, tt.want) || strings.Count(got, "\n") > 0 {
				t.Errorf("output %q, want one line saying %q", got, tt.want)
			}
		})
	}
}
