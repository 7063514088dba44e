package deploy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrapesHacheck runs a real Prometheus scraping the real hacheck binary and
// shows that a mark set with hadown arrives in Prometheus with its creation time ("down since"),
// along with the request counters.
func TestPrometheusScrapesHacheck(t *testing.T) {
	promBin := requireTool(t, "prometheus", "/usr/bin/prometheus")
	bin := hacheckBin(t)
	start := time.Now()

	dir := t.TempDir()
	hc := startHacheck(t, bin, filepath.Join(dir, "spool"), writeHacheckConfig(t, dir), 0)
	prom := startPrometheus(t, promBin, dir, hc.port)
	t.Logf("hacheck on :%d, prometheus on :%d (ready after %v)", hc.port, prom.port, time.Since(start).Round(time.Millisecond))

	out := hc.cli(t, "hadown", "--json", "-r", "e2e", "web")
	var written []struct {
		Service  string `json:"service"`
		Port     int    `json:"port"`
		Creation int64  `json:"creation"`
	}
	if err := json.Unmarshal([]byte(out), &written); err != nil || len(written) != 1 || written[0].Service != "web" {
		t.Fatalf("hadown --json printed %q (%v), want one mark for web", out, err)
	}
	// The spool file has the exact creation (fractional seconds); --json rounds it down.
	var file struct {
		Reason   string  `json:"reason"`
		Creation float64 `json:"creation"`
	}
	raw, err := os.ReadFile(filepath.Join(hc.spoolRoot, "web"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &file); err != nil || file.Reason != "e2e" {
		t.Fatalf("spool file web = %q (%v)", raw, err)
	}
	if int64(file.Creation) != written[0].Creation {
		t.Fatalf("spool file creation %f, hadown --json creation %d", file.Creation, written[0].Creation)
	}

	// Check requests, so hacheck_requests_total has series: both are answered by the spool gate.
	for _, path := range []string{"/http/web/1/health", "/spool/web/0/"} {
		resp, err := http.Get(hc.url(path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// "since" is the file's creation as Python's %f prints it.
		want := fmt.Sprintf("Service web in down state since %f: e2e", file.Creation)
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != want {
			t.Fatalf("GET %s: %s %q, want 503 %q", path, resp.Status, body, want)
		}
	}

	waitFor(t, 20*time.Second, "hacheck_spool_mark_creation_timestamp_seconds{service=\"web\"} in Prometheus", func() (bool, string) {
		res, err := prom.query(`hacheck_spool_mark_creation_timestamp_seconds{job="hacheck",service="web"}`)
		if err != nil {
			return false, err.Error()
		}
		if len(res) != 1 {
			return false, fmt.Sprintf("%d series: %+v", len(res), res)
		}
		v := res[0].value
		ok := res[0].Metric["port"] == "0" && math.Abs(v-file.Creation) < 1e-3 && int64(v) == written[0].Creation
		return ok, fmt.Sprintf("%+v value %f, want port 0 and value %f", res[0].Metric, v, file.Creation)
	})
	waitFor(t, 20*time.Second, "hacheck_requests_total for the spool-down requests in Prometheus", func() (bool, string) {
		res, err := prom.query(`hacheck_requests_total{job="hacheck",service="web",code="503",result="spool_down"}`)
		if err != nil {
			return false, err.Error()
		}
		var total float64
		for _, s := range res {
			total += s.value
		}
		return total == 2, fmt.Sprintf("%d series, total %v, want 2: %+v", len(res), total, res)
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

type prometheus struct {
	*proc
	port int
}

// startPrometheus runs Prometheus scraping hacheck on hcPort every second, on a free port
// (retried if taken meanwhile), and waits until it is ready.
func startPrometheus(t *testing.T, bin, dir string, hcPort int) *prometheus {
	t.Helper()
	return startPrometheusWith(t, bin, dir, hcPort, "")
}

// startPrometheusWith is startPrometheus with more top-level config (rule_files, alerting).
func startPrometheusWith(t *testing.T, bin, dir string, hcPort int, extra string) *prometheus {
	t.Helper()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: hacheck
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['127.0.0.1:%d']
`, hcPort) + extra
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &prometheus{}
	p.proc, p.port = startReadyOnFreePort(t, "prometheus", bin, func(attempt, port int) []string {
		return []string{"--config.file=" + cfgPath,
			"--storage.tsdb.path=" + filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
			"--log.level=warn"}
	})
	return p
}

// startReadyOnFreePort runs a server of Prometheus' family (Prometheus, Alertmanager) with
// args given the attempt and a free port, retrying when the port was taken meanwhile, and
// waits until its /-/ready answers 200.
func startReadyOnFreePort(t *testing.T, name, bin string, args func(attempt, port int) []string) (*proc, int) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		p := startProc(t, name, nil, bin, args(attempt, port)...)
		client := &http.Client{Timeout: time.Second}
		deadline := time.Now().Add(20 * time.Second)
		var last string
		for time.Now().Before(deadline) && !p.exited() {
			resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/-/ready")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p, port
				}
				last = resp.Status + " " + string(body)
			} else {
				last = err.Error()
			}
			time.Sleep(50 * time.Millisecond)
		}
		out := p.out.String()
		p.stop(t, 10*time.Second)
		if attempt < 4 && strings.Contains(out, "address already in use") {
			continue
		}
		t.Fatalf("%s did not become ready (%s):\n%s", name, last, tail(out, 4000))
	}
}

func (p *prometheus) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(p.port) + path
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	value  float64
}

// query runs an instant query through the HTTP API and returns the vector's samples.
func (p *prometheus) query(q string) ([]promSample, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(p.url("/api/v1/query?query=" + url.QueryEscape(q)))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: %s: %q", q, resp.Status, body)
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: %s %s %s", q, r.Status, r.Error, r.Data.ResultType)
	}
	for i := range r.Data.Result {
		s, _ := r.Data.Result[i].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", q, r.Data.Result[i].Value, err)
		}
		r.Data.Result[i].value = v
	}
	return r.Data.Result, nil
}
