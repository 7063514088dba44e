package alerts_test

// The alerting rules are code: they pass `promtool check rules` and their unit
// tests (`promtool test rules`) in `go test ./...`, and every alert carries what an on-call
// human needs. That their expressions name metrics hacheck exports is checked, together with
// the dashboards', by dashboards/promql_test.go.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// severities are the values of the severity label that Alertmanager routes on.
var severities = []string{"critical", "warning", "info"}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s in alerts/", pattern)
	}
	return files
}

// ruleFiles are the rules files (*.rules.yml; their tests are *.rules.test.yml).
func ruleFiles(t *testing.T) []string {
	t.Helper()
	return glob(t, "*.rules.yml")
}

func decode(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// lookPromtool finds promtool: required under CI, skipped locally without it.
func lookPromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool is required under CI: %v", err)
		}
		t.Skipf("promtool not installed: %v", err)
	}
	return path
}

// TestPromtoolCheckRules runs `promtool check rules` with every lint fatal.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := lookPromtool(t)
	for _, f := range ruleFiles(t) {
		out, err := exec.Command(promtool, "check", "rules", "--lint=all", "--lint-fatal", f).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", f, err, out)
		}
	}
}

// TestPromtoolTestRules runs the rules' unit tests.
func TestPromtoolTestRules(t *testing.T) {
	promtool := lookPromtool(t)
	for _, f := range glob(t, "*.rules.test.yml") {
		out, err := exec.Command(promtool, "test", "rules", f).CombinedOutput()
		if err != nil {
			t.Errorf("promtool test rules %s: %v\n%s", f, err, out)
		}
	}
}

// TestAlertsAreDocumented checks that every alert has a severity Alertmanager can route on and
// the summary, description and runbook annotations an on-call human reads, and that the unit
// tests make every alert both fire and stay quiet at least once.
func TestAlertsAreDocumented(t *testing.T) {
	alerts := map[string]string{} // name -> file
	for _, f := range ruleFiles(t) {
		var rf ruleFile
		decode(t, f, &rf)
		if len(rf.Groups) == 0 {
			t.Errorf("%s: no groups", f)
		}
		for _, g := range rf.Groups {
			for i, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				where := f + ": group " + g.Name + ": " + r.Alert
				if other, dup := alerts[r.Alert]; dup {
					t.Errorf("%s: alert name already used in %s", where, other)
				}
				alerts[r.Alert] = f
				if sev := r.Labels["severity"]; !slices.Contains(severities, sev) {
					t.Errorf("%s (rule %d): labels.severity is %q, want one of %v", where, i+1, sev, severities)
				}
				for _, a := range []string{"summary", "description", "runbook"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s (rule %d): no annotations.%s", where, i+1, a)
					}
				}
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("no alerts found")
	}

	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, f := range glob(t, "*.rules.test.yml") {
		var tf testFile
		decode(t, f, &tf)
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertRuleTest {
				if _, ok := alerts[at.Alertname]; !ok {
					t.Errorf("%s: test %q checks alert %q, which no rules file defines", f, tc.Name, at.Alertname)
				}
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname] = true
				} else {
					quiet[at.Alertname] = true
				}
			}
		}
	}
	for name, f := range alerts {
		if !fires[name] {
			t.Errorf("%s: alert %s: no unit test expects it to fire", f, name)
		}
		if !quiet[name] {
			t.Errorf("%s: alert %s: no unit test expects it to stay quiet", f, name)
		}
	}
}
