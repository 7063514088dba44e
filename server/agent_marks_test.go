package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hacheck/hacheck/spool"
)

// TestAgentAnswersDrainAndWeight: a drain mark is "drain", a weight-only mark "ready NN%", and
// removing the weight goes back to "ready 100%" (HAProxy keeps an agent's last weight).
func TestAgentAnswersDrainAndWeight(t *testing.T) {
	_, agent, root, stop := runWithAgent(t)
	defer stop()
	store := spool.New(root)
	weight := 30
	for _, step := range []struct {
		name string
		do   func() error
		want string
	}{
		{"drain", func() error {
			_, err := store.Put(spool.Mark{Service: "web", Port: 8080, Reason: "deploy", Drain: true})
			return err
		}, "drain\n"},
		{"weight", func() error {
			if _, err := store.Up("web", 8080); err != nil {
				return err
			}
			_, err := store.Put(spool.Mark{Service: "web", Reason: "canary", Weight: &weight})
			return err
		}, "ready 30%\n"},
		{"weight removed", func() error { _, err := store.Up("web", 0); return err }, "ready 100%\n"},
		// Unreadable (a weight out of range): a down mark, whatever its drain key says.
		{"unreadable drain mark", func() error {
			return os.WriteFile(filepath.Join(root, "web:8080"), []byte(`{"reason":"x","drain":true,"weight":900}`), 0o644)
		}, "maint # unreadable mark, counted as down: mark weight 900 is not a whole percentage from 0 to 256\n"},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if got := askAgent(t, agent, "web:8080\n"); got != step.want {
			t.Errorf("%s: agent reply %q, want %q", step.name, got, step.want)
		}
	}
}
