package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --check-config says what is wrong with a file, or that it is fine, without ever echoing the
// database credentials in it.
func TestCheckConfigHidesDatabaseCredentials(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"valid, world-readable", "postgres_username: hunter2-user\npostgres_password: hunter2-pw\npostgres_database: hunter2db\nmysql_username: hunter2-my\nmysql_password: hunter2-mypw\n",
			0, ": OK", "holds a password or token but every user may read it"},
		{"secrets of the wrong type", "postgres_password: [hunter2-pw]\npostgres_username: {hunter2-user: 1}\n",
			2, "", "config key postgres_password: must be a string, got a list"},
		{"bad database beside secrets", "postgres_username: hunter2-user\npostgres_password: hunter2-pw\npostgres_database: \"\"\n",
			2, "", `config key postgres_database: must be a database name of 1-63 bytes, got ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			res := newRunner(t).run("hacheck", "serve", "--check-config", "-c", path)
			if res.code != tt.wantCode || !strings.Contains(res.stdout, tt.wantOut) || !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", res.code, res.stdout, res.stderr, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			if strings.Contains(res.stdout+res.stderr, "hunter2-") {
				t.Errorf("a credential was shown: stdout %q, stderr %q", res.stdout, res.stderr)
			}
		})
	}
}

// A Python hacheck config passes --check-config (its timeout key read as check_timeout, a
// warning for max_clients); one that sets the timeout under both names fails with exit 2.
func TestCheckConfigOfAPythonConfig(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantCode int
		wantErr  string // the whole of stderr
	}{
		{"python keys", "cache_time: 5.0\nhealthcheck_timeout: 3.0\nmax_clients: 10\n", 0,
			"warning: %s: line 3: key max_clients ignored: checks are not capped by a client count (concurrent requests for one check share it)\n"},
		{"timeout under both names", "healthcheck_timeout: 3\ncheck_timeout: 4\n", 2,
			"hacheck: %s: line 2: config key check_timeout: healthcheck_timeout (line 1) is the same setting under another name; keep only check_timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			res := newRunner(t).run("hacheck", "serve", "--check-config", "-c", path)
			if want := fmt.Sprintf(tt.wantErr, path); res.code != tt.wantCode || res.stderr != want {
				t.Errorf("exit %d, stderr %q; want exit %d, stderr %q", res.code, res.stderr, tt.wantCode, want)
			}
		})
	}
}
