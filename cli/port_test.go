package cli

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The CLI finds a server that is not on 3333 without -p on every command: -p, else
// $HACHECK_PORT, else the port in the server's config file, else 3333. Each case runs hadown at
// a terminal (so the guard asks the server) against a server whose web:8080 is the last one:
// exit 4 proves the server was found, exit 0 that another port was asked (nothing answers).
func TestCLIFindsTheServersPort(t *testing.T) {
	port := lastServerLB(t)
	nobody := closedPort(t)
	dir := t.TempDir()
	writeConfig := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	atPort := writeConfig("port.yml", "cache_time: 5\nport: "+port+"\n")
	elsewhere := writeConfig("elsewhere.yml", "port: "+nobody+"\n")
	noPort := writeConfig("noport.yml", "cache_time: 5\n")
	broken := writeConfig("broken.yml", "port: [\n")
	tests := []struct {
		name      string
		env       string // HACHECK_PORT
		args      []string
		code      int
		stderrHas string
	}{
		{"environment", port, nil, exitRefused, "would have no usable server left"},
		{"config file", "", []string{"--config-file", atPort}, exitRefused, "would have no usable server left"},
		{"environment over config file", port, []string{"--config-file", elsewhere}, exitRefused, ""},
		{"-p over environment", nobody, []string{"-p", port}, exitRefused, ""},
		{"-p over config file", "", []string{"-p", port, "--config-file", elsewhere}, exitRefused, ""},
		{"config file elsewhere", "", []string{"--config-file", elsewhere}, exitOK, ""},
		{"config file without port: 3333", "", []string{"--config-file", noPort}, exitOK, ""},
		{"missing config file: 3333", "", []string{"--config-file", filepath.Join(dir, "absent.yml")}, exitOK, ""},
		{"broken config file: 3333, said with -v", "", []string{"-v", "--config-file", broken}, exitOK, "warning: server port 3333 assumed"},
		{"bad environment", "70000", nil, exitUsage, "--port 70000: must be 1-65535"},
		{"environment not a number", "http", nil, exitUsage, "HACHECK_PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HACHECK_PORT", tt.env)
			if tt.env == "" {
				os.Unsetenv("HACHECK_PORT")
			}
			r := newRunner(t)
			r.interactive = true
			args := append([]string{"-P", "8080", "-r", "x"}, tt.args...)
			res := r.run("hadown", append(args, "web")...)
			if res.code != tt.code || !strings.Contains(res.stderr, tt.stderrHas) {
				t.Fatalf("= %+v, want exit %d and %q", res, tt.code, tt.stderrHas)
			}
			if tt.code != exitOK && strings.Count(res.stderr, "\n") != 1 {
				t.Errorf("stderr %q: want one line", res.stderr)
			}
		})
	}
}

// halist asks the same port.
func TestHalistFindsTheServersPort(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/recent" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"seen_services":[["web",{"code":200,"remote_ip":"10.0.0.1","ts":1795500000}]],"threshold_seconds":600}`))
	}))
	t.Cleanup(srv.Close)
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	config := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(config, []byte("port: "+port+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	halist := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		e := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Now: time.Now}
		code := run("halist", args, e)
		return code, stdout.String() + stderr.String()
	}
	t.Setenv("HACHECK_PORT", port)
	if code, out := halist(); code != 0 || !strings.HasPrefix(out, "web\tcode=200\tfrom=10.0.0.1") {
		t.Fatalf("halist with HACHECK_PORT = %d %q", code, out)
	}
	os.Unsetenv("HACHECK_PORT")
	if code, out := halist("--config-file", config); code != 0 || !strings.HasPrefix(out, "web\tcode=200") {
		t.Fatalf("halist with the config's port = %d %q", code, out)
	}
}
