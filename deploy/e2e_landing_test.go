package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var landingHAProxy = haproxyConfig(`
frontend fe
    bind 127.0.0.1:{{.Front}}
    default_backend be_web

# web is marked down on the whole host, api drained on port 8080, db not marked.
backend be_web
    option httpchk GET /spool/web/0/
    http-check send-state
    server web1 127.0.0.1:8081 check port {{.Hacheck}} inter 200ms fall 1 rise 1

backend be_api
    option httpchk GET /spool/api/8080/
    http-check send-state
    http-check disable-on-404
    server api1 127.0.0.1:8080 check port {{.Hacheck}} inter 200ms fall 1 rise 1

backend be_db
    option httpchk GET /spool/db/0/
    http-check send-state
    server db1 127.0.0.1:3306 check port {{.Hacheck}} inter 200ms fall 1 rise 1
`)

// TestLandingPageInABrowser opens hacheck's landing page in a real browser (Debian's chromium,
// headless) and a text browser (w3m) with two marks in the spool (one whose reason is a script) and a real HAProxy
// checking three services: the page shows the marks, the checks and the load balancer's
// report, the script shows as text, and a screenshot is saved under the test's temp dir
// (HACHECK_SCREENSHOT_DIR, if set, keeps a copy).
func TestLandingPageInABrowser(t *testing.T) {
	chromium := requireTool(t, "chromium", "/usr/bin/chromium")
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	start := time.Now()
	dir := t.TempDir()

	hc := startHacheck(t, bin, filepath.Join(dir, "spool"), writeHacheckConfig(t, dir), 0)
	const hostile = `<script>alert(1)</script>`
	hc.cli(t, "hadown", "-r", hostile, "web")
	hc.cli(t, "hadown", "--drain", "-P", "8080", "-r", "deploy by bob & co", "api")
	startHAProxyConfig(t, haproxyBin, landingHAProxy, map[string]any{"Node": "lb-e2e", "Hacheck": hc.port})
	// HAProxy checks every 200 ms; wait until hacheck reports all three of its server lines.
	waitFor(t, 30*time.Second, "the landing page to show the load balancer's three server lines", func() (bool, string) {
		resp, err := http.Get(hc.url("/"))
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"be_web/web1", "be_api/api1", "be_db/db1", ">DOWN<", ">NOLB<", ">UP<"} {
			if !bytes.Contains(body, []byte(want)) {
				return false, fmt.Sprintf("no %q in:\n%s", want, tail(string(body), 3000))
			}
		}
		return true, ""
	})

	dom := runChromium(t, chromium, "--dump-dom", hc.url("/"))
	for _, want := range []string{
		"<title>hacheck</title>",
		// The script reason is text: serialised escaped, and no script element exists.
		"<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>",
		"<td>deploy by bob &amp; co</td>",
		`<td class="drain">drain</td>`, `<td class="down">down</td>`,
		"<td>lb-e2e</td>", `<a href="/lb/api">api</a>`, `<a href="/metrics">`, `<a href="/status">`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the browser's DOM lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Errorf("the browser's DOM has a script element:\n%s", dom)
	}

	// A text browser: the tables read as rows, the script reason as its characters.
	w3m := requireTool(t, "w3m", "/usr/bin/w3m")
	text, err := exec.Command(w3m, "-dump", "-cols", "200", hc.url("/")).Output()
	if err != nil {
		t.Fatalf("w3m -dump: %v", err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\napi +8080 +drain +deploy by bob & co +20`),
		regexp.MustCompile(`\nweb +all ports +down +` + regexp.QuoteMeta(hostile) + ` +20`),
		regexp.MustCompile(`\ndb +lb-e2e +be_db/db1 +3306 +UP +1/1`),
		regexp.MustCompile(`Metrics \| Status \| Recent checks`),
	} {
		if !want.Match(text) {
			t.Errorf("w3m -dump lacks %s:\n%s", want, text)
		}
	}

	shot := filepath.Join(dir, "landing.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1280,900", hc.url("/"))
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	colours := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
		}
	}
	if b.Dx() != 1280 || b.Dy() != 900 || len(colours) < 10 {
		t.Errorf("screenshot %s is %dx%d with %d colours: not a rendered page", shot, b.Dx(), b.Dy(), len(colours))
	}
	if keep := os.Getenv("HACHECK_SCREENSHOT_DIR"); keep != "" {
		data, _ := os.ReadFile(shot)
		if err := os.WriteFile(filepath.Join(keep, "landing.png"), data, 0o644); err != nil {
			t.Errorf("keeping the screenshot: %v", err)
		}
	}
	t.Logf("screenshot %s (%dx%d): hacheck's landing page in headless chromium: the version and links; "+
		"Marks: api port 8080 drain \"deploy by bob & co\" and web all ports down with the reason %s shown as text, "+
		"since now, no expiration; the services checked in the last 10 minutes (api 404, db 200, web 503, from 127.0.0.1); "+
		"what load balancer lb-e2e reports: be_api/api1 NOLB, be_db/db1 UP, be_web/web1 DOWN (total %v)",
		shot, b.Dx(), b.Dy(), hostile, time.Since(start).Round(time.Millisecond))
}

// runChromium runs headless chromium with a fresh profile on the given arguments and returns
// its standard output.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, tail(stderr.String(), 3000))
	}
	return string(out)
}
