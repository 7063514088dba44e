package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestAlertmanagerExampleConfig: the example Alertmanager configuration passes amtool.
func TestAlertmanagerExampleConfig(t *testing.T) {
	amtool := requireTool(t, "amtool", "/usr/bin/amtool")
	out, err := exec.Command(amtool, "check-config", "alertmanager.example.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("amtool check-config alertmanager.example.yml: %v\n%s", err, out)
	}
}

// TestAlertChain follows an alert from a mark to a person: the real hacheck, scraped by a real
// Prometheus running the shipped rules, which sends to a real Alertmanager running
// deploy/alertmanager.example.yml, which posts to a webhook receiver in this test. For the test
// to take seconds, not hours, the rules' thresholds (12 h, 1 h) become 2 s and their `for: 5m`
// becomes 1 s, and the Alertmanager route's waits become a second; the receiver's URL is this
// test's. Nothing else in either file is changed.
func TestAlertChain(t *testing.T) {
	promBin := requireTool(t, "prometheus", "/usr/bin/prometheus")
	amBin := requireTool(t, "prometheus-alertmanager", "/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager")
	bin := hacheckBin(t)
	start := time.Now()
	dir := t.TempDir()

	rx := newReceiver(t)
	am := startAlertmanager(t, amBin, dir, exampleAlertmanagerConfig(t, rx.url))
	hc := startHacheck(t, bin, filepath.Join(dir, "spool"), writeHacheckConfig(t, dir), 0)
	rules := filepath.Join(dir, "hacheck.rules.yml")
	if err := os.WriteFile(rules, shortenedRules(t), 0o644); err != nil {
		t.Fatal(err)
	}
	startPrometheusWith(t, promBin, dir, hc.port, fmt.Sprintf(`rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:%d']
`, rules, am.port))
	instance := "127.0.0.1:" + strconv.Itoa(hc.port)
	t.Logf("hacheck %s, alertmanager :%d, receiver %s (ready after %v)", instance, am.port, rx.url, time.Since(start).Round(time.Millisecond))

	// One instance of web marked down, and api drained, both past the (shortened) threshold.
	hc.cli(t, "hadown", "-r", "e2e: disk swap", "-P", "8080", "web")
	hc.cli(t, "hadown", "--drain", "-r", "e2e: draining for deploy", "api")
	down := rx.wait(t, "HacheckMarkDownTooLong firing for web:8080", func(a amAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "HacheckMarkDownTooLong" && a.Labels["service"] == "web"
	})
	checkAlert(t, down, map[string]string{
		"job": "hacheck", "instance": instance, "service": "web", "port": "8080", "severity": "warning",
	}, map[string]*regexp.Regexp{
		"summary":     rx2(`^web \(port 8080\) has been marked down on %s for [0-9.]+s$`, instance),
		"description": rx2(`^Service web \(port 8080\) on %s has been marked down in the hacheck spool for [0-9.]+s, with no expiration\. Reason: "e2e: disk swap"\. HAProxy keeps it out of rotation until someone runs haup\.$`, instance),
		"runbook":     rx2("`haup web -P 8080`.*`hadown -r \"<why>\" --for 24h -P 8080 web`"),
	})
	drain := rx.wait(t, "HacheckMarkDrainTooLong firing for api", func(a amAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "HacheckMarkDrainTooLong" && a.Labels["service"] == "api"
	})
	checkAlert(t, drain, map[string]string{
		"job": "hacheck", "instance": instance, "service": "api", "port": "0", "severity": "warning",
	}, map[string]*regexp.Regexp{
		"summary":     rx2(`^api has been draining on %s for [0-9.]+s$`, instance),
		"description": rx2(`^Service api \(all ports\) on %s has had a drain mark .* Reason: "e2e: draining for deploy"\. HAProxy sends it no new sessions until someone runs haup\.$`, instance),
		"runbook":     rx2("`haup api`"),
	})
	if a, ok := rx.find(func(a amAlert) bool {
		return a.Labels["alertname"] == "HacheckMarkDownTooLong" && a.Labels["service"] == "api"
	}); ok {
		t.Errorf("the drain mark of api fired HacheckMarkDownTooLong: %+v", a)
	}

	hc.cli(t, "haup", "-P", "8080", "web")
	rx.wait(t, "HacheckMarkDownTooLong resolved for web:8080 after haup", func(a amAlert) bool {
		return a.Status == "resolved" && a.Labels["alertname"] == "HacheckMarkDownTooLong" && a.Labels["service"] == "web"
	})
	hc.cli(t, "haup", "api")
	rx.wait(t, "HacheckMarkDrainTooLong resolved for api after haup", func(a amAlert) bool {
		return a.Status == "resolved" && a.Labels["alertname"] == "HacheckMarkDrainTooLong"
	})
	t.Logf("per-service mark and drain fired and resolved after %v", time.Since(start).Round(time.Millisecond))

	// The host-wide mark.
	hc.cli(t, "hadown", "-r", "e2e: kernel upgrade", "all")
	all := rx.wait(t, "HacheckAllMarkDownTooLong firing", func(a amAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "HacheckAllMarkDownTooLong"
	})
	checkAlert(t, all, map[string]string{
		"job": "hacheck", "instance": instance, "service": "all", "port": "0", "severity": "critical",
	}, map[string]*regexp.Regexp{
		"summary":     rx2(`^Every service on %s has been marked down for [0-9.]+s$`, instance),
		"description": rx2(`^The host-wide "all" mark on %s has taken every service on the host out of rotation for [0-9.]+s\. Reason: "e2e: kernel upgrade"\.$`, instance),
		"runbook":     rx2("`haup all`"),
	})
	hc.cli(t, "haup", "all")
	rx.wait(t, "HacheckAllMarkDownTooLong resolved after haup all", func(a amAlert) bool {
		return a.Status == "resolved" && a.Labels["alertname"] == "HacheckAllMarkDownTooLong"
	})
	t.Logf("host-wide mark fired and resolved after %v", time.Since(start).Round(time.Millisecond))

	// hacheck stops: HacheckDown, and the example's inhibit rule silences the host's other
	// hacheck alerts. Prometheus's mark alerts end with hacheck's series, so the other alert
	// is one a rule would send (the shape Prometheus posts), for this host and for another.
	hc.stop(t, 10*time.Second)
	hcDown := rx.wait(t, "HacheckDown firing", func(a amAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "HacheckDown"
	})
	checkAlert(t, hcDown, map[string]string{"job": "hacheck", "instance": instance, "severity": "critical"}, map[string]*regexp.Regexp{
		"summary":     rx2(`^hacheck on %s is down$`, instance),
		"description": rx2(`^Prometheus has not been able to scrape hacheck on %s for 5 minutes\.`, instance),
		"runbook":     rx2("`systemctl status hacheck`"),
	})
	other := "192.0.2.7:3333"
	for _, inst := range []string{instance, other} {
		am.post(t, map[string]string{"alertname": "HacheckServiceFailingChecks", "job": "hacheck", "instance": inst, "service": "web", "severity": "warning"})
	}
	rx.wait(t, "HacheckServiceFailingChecks of the other host (not inhibited)", func(a amAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "HacheckServiceFailingChecks" && a.Labels["instance"] == other
	})
	waitFor(t, 20*time.Second, "Alertmanager to report the down host's alert as inhibited by HacheckDown", func() (bool, string) {
		st, err := am.alertState("HacheckServiceFailingChecks", instance)
		return err == nil && st.State == "suppressed" && len(st.InhibitedBy) > 0, fmt.Sprintf("%+v %v", st, err)
	})
	if a, ok := rx.find(func(a amAlert) bool {
		return a.Labels["alertname"] == "HacheckServiceFailingChecks" && a.Labels["instance"] == instance
	}); ok {
		t.Errorf("an alert of the host whose hacheck is down reached the receiver: %+v", a)
	}
	t.Logf("total %v, %d notifications", time.Since(start).Round(time.Millisecond), rx.count())
}

// rx2 compiles a pattern with the values quoted.
func rx2(format string, values ...string) *regexp.Regexp {
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = regexp.QuoteMeta(v)
	}
	return regexp.MustCompile(fmt.Sprintf(format, args...))
}

// checkAlert checks a notified alert's labels and annotations: the labels given exactly (and
// no reason label: a reason edit must not change the alert's identity), every annotation
// present, matching its pattern, and with no "<no value>" left by a template.
func checkAlert(t *testing.T, a amAlert, labels map[string]string, annotations map[string]*regexp.Regexp) {
	t.Helper()
	for k, want := range labels {
		if got := a.Labels[k]; got != want {
			t.Errorf("%s: label %s = %q, want %q (labels %v)", a.Labels["alertname"], k, got, want, a.Labels)
		}
	}
	if _, ok := a.Labels["reason"]; ok {
		t.Errorf("%s: the reason is a label: %v", a.Labels["alertname"], a.Labels)
	}
	for _, name := range []string{"summary", "description", "runbook"} {
		v := a.Annotations[name]
		if v == "" || strings.Contains(v, "<no value>") {
			t.Errorf("%s: annotation %s = %q", a.Labels["alertname"], name, v)
		}
		if re := annotations[name]; re != nil && !re.MatchString(v) {
			t.Errorf("%s: annotation %s = %q, want it to match %s", a.Labels["alertname"], name, v, re)
		}
	}
}

// shortenedRules is alerts/hacheck.rules.yml with its mark thresholds and 5-minute `for`
// shortened to seconds; each replaced text must be found as often as the rules use it.
func shortenedRules(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "alerts", "hacheck.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, r := range []struct {
		old, new string
		n        int
	}{
		{"> 12 * 3600", "> 2", 2}, // HacheckMarkDownTooLong, HacheckMarkDrainTooLong
		{"> 3600", "> 2", 1},      // HacheckAllMarkDownTooLong
		{"for: 5m", "for: 1s", 5}, // those three, HacheckMarkExpiredButCounted, HacheckDown
	} {
		if got := strings.Count(s, r.old); got != r.n {
			t.Fatalf("alerts/hacheck.rules.yml has %q %d times, want %d: update this test", r.old, got, r.n)
		}
		s = strings.ReplaceAll(s, r.old, r.new)
	}
	return []byte(s)
}

// exampleAlertmanagerConfig is deploy/alertmanager.example.yml with the hacheck route's waits
// shortened to a second and its one webhook pointed at url.
func exampleAlertmanagerConfig(t *testing.T, url string) []byte {
	t.Helper()
	data, err := os.ReadFile("alertmanager.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	route, _ := cfg["route"].(map[string]any)
	routes, _ := route["routes"].([]any)
	shortened := 0
	for _, r := range routes {
		r := r.(map[string]any)
		if r["receiver"] == "hacheck-oncall" {
			r["group_wait"], r["group_interval"], r["repeat_interval"] = "500ms", "1s", "1h"
			shortened++
		}
	}
	hooks := 0
	receivers, _ := cfg["receivers"].([]any)
	for _, r := range receivers {
		for _, w := range asList(r.(map[string]any)["webhook_configs"]) {
			w.(map[string]any)["url"] = url
			hooks++
		}
	}
	if shortened != 1 || hooks != 1 {
		t.Fatalf("alertmanager.example.yml: %d hacheck-oncall routes and %d webhooks, want 1 and 1: update this test", shortened, hooks)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func asList(v any) []any { l, _ := v.([]any); return l }

type amAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// receiver is a webhook receiver: it keeps every alert of every notification.
type receiver struct {
	url    string
	mu     sync.Mutex
	alerts []amAlert
	n      int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rx := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n struct {
			Status string    `json:"status"`
			Alerts []amAlert `json:"alerts"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			err = json.Unmarshal(body, &n)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rx.mu.Lock()
		rx.alerts = append(rx.alerts, n.Alerts...)
		rx.n++
		rx.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	rx.url = srv.URL + "/hacheck"
	return rx
}

func (rx *receiver) find(match func(amAlert) bool) (amAlert, bool) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	for _, a := range rx.alerts {
		if match(a) {
			return a, true
		}
	}
	return amAlert{}, false
}

func (rx *receiver) count() int {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return rx.n
}

// wait waits for a notified alert that matches.
func (rx *receiver) wait(t *testing.T, what string, match func(amAlert) bool) amAlert {
	t.Helper()
	var found amAlert
	waitFor(t, 60*time.Second, what, func() (bool, string) {
		a, ok := rx.find(match)
		found = a
		rx.mu.Lock()
		defer rx.mu.Unlock()
		var seen []string
		for _, a := range rx.alerts {
			seen = append(seen, a.Status+" "+a.Labels["alertname"]+" "+a.Labels["service"])
		}
		return ok, fmt.Sprintf("%d alerts received: %v", len(seen), seen)
	})
	return found
}

type alertmanager struct {
	*proc
	port int
}

// startAlertmanager runs Alertmanager with cfg on a free port (no cluster listener), retrying
// when the port was taken meanwhile, and waits until it is ready.
func startAlertmanager(t *testing.T, bin, dir string, cfg []byte) *alertmanager {
	t.Helper()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	am := &alertmanager{}
	am.proc, am.port = startReadyOnFreePort(t, "alertmanager", bin, func(attempt, port int) []string {
		return []string{"--config.file=" + cfgPath,
			"--storage.path=" + filepath.Join(dir, fmt.Sprintf("am%d", attempt)),
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
			"--cluster.listen-address=",
			"--log.level=warn"}
	})
	return am
}

func (am *alertmanager) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(am.port) + path
}

// post sends one firing alert through the API Prometheus uses.
func (am *alertmanager) post(t *testing.T, labels map[string]string) {
	t.Helper()
	body, _ := json.Marshal([]map[string]any{{
		"labels":      labels,
		"annotations": map[string]string{"summary": "posted by the test"},
		"startsAt":    time.Now().Add(-time.Minute).Format(time.RFC3339),
	}})
	resp, err := http.Post(am.url("/api/v2/alerts"), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /api/v2/alerts: %s %s", resp.Status, msg)
	}
}

type amStatus struct {
	State       string   `json:"state"`
	InhibitedBy []string `json:"inhibitedBy"`
}

// alertState is Alertmanager's status of the alert with this name and instance.
func (am *alertmanager) alertState(name, instance string) (amStatus, error) {
	resp, err := http.Get(am.url("/api/v2/alerts"))
	if err != nil {
		return amStatus{}, err
	}
	defer resp.Body.Close()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
		Status amStatus          `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		return amStatus{}, err
	}
	for _, a := range alerts {
		if a.Labels["alertname"] == name && a.Labels["instance"] == instance {
			return a.Status, nil
		}
	}
	return amStatus{}, fmt.Errorf("no %s for %s among %d alerts", name, instance, len(alerts))
}
