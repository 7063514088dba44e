package check

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestNewRegistryProtocols(t *testing.T) {
	got := NewRegistry(Options{}).Names()
	want := []string{"grpc", "haproxy", "http", "https", "mysql", "postgres", "redis", "redis-info", "sentinel", "sentinel-info", "smtp", "spool", "tcp"}
	if !slices.Equal(got, want) {
		t.Errorf("NewRegistry(Options{}).Names() = %q, want %q", got, want)
	}
}

// The README's protocol table is where users look: every registered protocol has a row there.
func TestREADMEListsEveryProtocol(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range NewRegistry(Options{}).Names() {
		if !strings.Contains(string(readme), "| `/"+name+"/") && !strings.Contains(string(readme), ", `/"+name+"/") {
			t.Errorf("README.md has no row for /%s/", name)
		}
	}
}

func TestNewRegistryBodyLimitDefault(t *testing.T) {
	for _, proto := range []string{"http", "https"} {
		c, ok := NewRegistry(Options{})[proto].(*httpChecker)
		if !ok {
			t.Fatalf("%s checker is %T, want *httpChecker", proto, NewRegistry(Options{})[proto])
		}
		if c.bodyLimit != DefaultBodyLimit {
			t.Errorf("%s body limit = %d, want %d", proto, c.bodyLimit, DefaultBodyLimit)
		}
	}
}
