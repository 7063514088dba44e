package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/spool"
)

// TestLandingPage is what a person opening the host's port in a browser reads: the version,
// the marks with their kind, reason and times, the services checked and their last answer, what
// the load balancers reported, and the links to the JSON.
func TestLandingPage(t *testing.T) {
	ts := startServer(t, nil, trustAtOnce)
	if _, err := ts.store.Down("web", 8080, "kernel upgrade by alice", time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.store.Put(spool.Mark{Service: "api", Reason: "deploy by bob", Drain: true}); err != nil {
		t.Fatal(err)
	}
	thirty := 30
	if _, err := ts.store.Put(spool.Mark{Service: "search", Reason: "canary", Weight: &thirty}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ts.get(t, "/spool/api/0/", "X-Haproxy-Server-State", sendState("NOLB", "be_api/api1", "lb-east", "9000"))
		ts.get(t, "/spool/db/0/")
	}

	code, body, header := ts.get(t, "/")
	if code != 200 || header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", code, header.Get("Content-Type"))
	}
	if csp := header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q lets scripts run", csp)
	}
	for _, want := range []string{
		"Version test",
		`<a href="/metrics">`, `<a href="/status">`, `<a href="/recent">`, `<a href="/lb/api">`,
		// The marks: service, port, kind, reason, since, until.
		"<td>web</td>\n<td>8080</td>\n<td class=\"down\">down</td>\n<td>kernel upgrade by alice</td>",
		"<td>api</td>\n<td>all ports</td>\n<td class=\"drain\">drain</td>\n<td>deploy by bob</td>",
		"<td>search</td>\n<td>all ports</td>\n<td>weight 30%</td>\n<td>canary</td>",
		"no expiration", "(in 2h0m0s)", "(0s ago)",
		// Checked recently, with the last answer.
		"<td>db</td>\n<td class=\"num up\">200</td>\n<td>127.0.0.1</td>",
		"<td>api</td>\n<td class=\"num drain\">404</td>",
		// The load balancer's report.
		"<td>lb-east</td>\n<td>be_api/api1</td>\n<td class=\"num\">9000</td>\n<td class=\"drain\">NOLB</td>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") {
		t.Errorf("GET / has a script:\n%s", body)
	}

	// HEAD is served as GET, other methods are not; / is not a prefix of every path.
	if status, _ := ts.raw(t, "HEAD / HTTP/1.0\r\n\r\n"); status != "200 OK" {
		t.Errorf("HEAD /: %s", status)
	}
	if status, _ := ts.raw(t, "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n"); status != "405 Method Not Allowed" {
		t.Errorf("POST /: %s", status)
	}
	if code, _, _ := ts.get(t, "/nothing-here"); code != 404 {
		t.Errorf("GET /nothing-here: %d, want 404", code)
	}
}

// TestLandingPageEscapes: every value on the page comes from someone else (an operator's
// reason, a client's service name and send-state header); none of it can become markup.
func TestLandingPageEscapes(t *testing.T) {
	ts := startServer(t, nil, trustAtOnce)
	hostile := `<script>alert(1)</script>`
	if _, err := ts.store.Down("web", 0, hostile+` "quoted" & <b>bold</b>`, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ts.get(t, "/spool/web/0/", "X-Haproxy-Server-State",
			"UP; address=127.0.0.1; port=80; name=be<i>/srv<script>x</script>; node=<img src=x onerror=alert(1)>; weight=1/2; scur=0/0")
	}
	_, body, _ := ts.get(t, "/")
	for _, bad := range []string{"<script>", "<b>bold", "<img", "<i>"} {
		if strings.Contains(body, bad) {
			t.Errorf("GET / has %q unescaped:\n%s", bad, body)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt; &#34;quoted&#34; &amp; &lt;b&gt;bold&lt;/b&gt;") {
		t.Errorf("GET / does not show the reason as text:\n%s", body)
	}
}

// TestLandingPageBounded: a flood of invented service names (each one checked once) costs the
// page a bounded number of rows, and the page says how many it left out.
func TestLandingPageBounded(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.MaxServices = 1000 }, trustAtOnce)
	const n = maxLandingRows + 50
	for i := range n {
		ts.get(t, fmt.Sprintf("/spool/svc%04d/0/", i), "X-Haproxy-Server-State", sendState("UP", "be/s", "lb1", "80"))
		if _, err := ts.store.Down(fmt.Sprintf("svc%04d", i), 0, "flood", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	_, body, _ := ts.get(t, "/")
	if rows := strings.Count(body, "<tr>"); rows > 3*(maxLandingRows+1)+10 {
		t.Errorf("GET / has %d table rows for %d services", rows, n)
	}
	for _, want := range []string{"50 more marks not shown", "more services not shown: see <a href=\"/recent\">"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %q", want)
		}
	}
}
