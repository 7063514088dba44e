package dashboards_test

// The dashboards and alerts are only as good as the series they query: every PromQL expression
// in dashboards/*.json and alerts/*.rules.yml parses (Prometheus's own parser) and names only
// metrics, and labels of them, that hacheck's /metrics really exports (a scrape of
// metrics.New's handler).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/internal/editdist"
	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/metrics"
	"github.com/hacheck/hacheck/spool"
)

// query is one PromQL expression found in a dashboard or a rules file.
type query struct {
	// where says where it was found: file and JSON path (with panel id/title and refId) or rule.
	where string
	// raw is the expression as written, Grafana variables and all.
	raw string
	// instant is true for a Grafana target that runs as an instant query only.
	instant bool
	// labelValuesLabel is set for a templating label_values(selector, label) query: raw then
	// holds only the selector, and this label must exist on its metric.
	labelValuesLabel string
}

// ---------------------------------------------------------------------------------------------
// Extraction

// dashboardFiles are the dashboards under test, relative to this package's directory.
func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards/*.json found")
	}
	return files
}

// ruleFiles are the Prometheus rule files under test.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "alerts", "*.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no alerts/*.rules.yml found")
	}
	return files
}

func readDashboard(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// dashboardQueries returns every "expr" anywhere in the dashboard (panel targets, nested and
// collapsed rows, annotations, whatever a future Grafana adds), and the PromQL inside every
// templating variable query. Walking the whole document, not just the places we know of, means
// no expression escapes the checks by living somewhere new.
func dashboardQueries(t *testing.T, path string, d map[string]any) []query {
	t.Helper()
	var qs []query
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(v) {
				child := v[k]
				if k == "expr" {
					s, ok := child.(string)
					if !ok || strings.TrimSpace(s) == "" {
						t.Errorf("%s.expr: empty or not a string: %#v", where, child)
						continue
					}
					instant, _ := v["instant"].(bool)
					rng, _ := v["range"].(bool)
					qs = append(qs, query{where: where, raw: s, instant: instant && !rng})
					continue
				}
				if strings.HasSuffix(where, ":") {
					walk(child, where+" "+k)
				} else {
					walk(child, where+"."+k)
				}
			}
		case []any:
			for i, e := range v {
				walk(e, where+fmt.Sprintf("[%d]%s", i, describe(e)))
			}
		}
	}
	walk(d, path+":")

	templating, _ := d["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for i, v := range list {
		tv, _ := v.(map[string]any)
		if tv["type"] != "query" {
			continue
		}
		where := fmt.Sprintf("%s: templating.list[%d] (variable %q)", path, i, tv["name"])
		q, ok := variableQuery(tv["query"])
		if !ok {
			t.Errorf("%s: query is neither a string nor an object with a query string: %#v", where, tv["query"])
			continue
		}
		tq, err := parseVariableQuery(q)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if tq.raw != "" || tq.labelValuesLabel != "" {
			tq.where = where
			qs = append(qs, tq)
		}
	}
	return qs
}

// describe names an array element for error messages: a panel by id and title, a target by
// refId, a variable by name.
func describe(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	var parts []string
	if id, ok := m["id"].(float64); ok {
		parts = append(parts, fmt.Sprintf("id %v", id))
	}
	if title, ok := m["title"].(string); ok {
		parts = append(parts, strconv.Quote(title))
	}
	if ref, ok := m["refId"].(string); ok {
		parts = append(parts, "refId "+ref)
	}
	if name, ok := m["name"].(string); ok {
		parts = append(parts, "name "+strconv.Quote(name))
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// variableQuery is a templating variable's query: a plain string (old Grafana) or an object
// whose "query" is the string (the Prometheus variable query editor).
func variableQuery(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case map[string]any:
		s, ok := v["query"].(string)
		return s, ok
	}
	return "", false
}

var labelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseVariableQuery understands the Prometheus data source's variable query functions. Only
// the PromQL inside them goes to the PromQL checks; label_values(...) itself is not PromQL.
func parseVariableQuery(q string) (query, error) {
	q = strings.TrimSpace(q)
	name, inner, ok := strings.Cut(q, "(")
	if !ok || !strings.HasSuffix(q, ")") {
		return query{}, fmt.Errorf("variable query %q: want label_values(...), label_names(...), metrics(...) or query_result(...)", q)
	}
	inner = strings.TrimSuffix(inner, ")")
	switch strings.TrimSpace(name) {
	case "label_values":
		// label_values(label) or label_values(selector, label): a label name has no comma, so
		// the label is after the last one.
		comma := strings.LastIndex(inner, ",")
		label := strings.TrimSpace(inner[comma+1:])
		if !labelName.MatchString(label) {
			return query{}, fmt.Errorf("variable query %q: the last argument of label_values must be a label name", q)
		}
		tq := query{labelValuesLabel: label}
		if comma >= 0 {
			tq.raw = strings.TrimSpace(inner[:comma])
		}
		return tq, nil
	case "query_result":
		return query{raw: inner}, nil
	case "label_names", "metrics":
		return query{}, nil // nothing that names a metric or label of ours
	}
	return query{}, fmt.Errorf("variable query %q: unknown function %q", q, name)
}

// ruleQueries returns every rule's expr from a Prometheus rules file.
func ruleQueries(t *testing.T, path string) []query {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var qs []query
	for _, g := range f.Groups {
		for i, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			where := fmt.Sprintf("%s: group %q rule %d (%s)", path, g.Name, i+1, name)
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", where)
				continue
			}
			qs = append(qs, query{where: where, raw: r.Expr})
		}
	}
	return qs
}

// allQueries is every expression of every dashboard and rules file.
func allQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, path := range dashboardFiles(t) {
		qs = append(qs, dashboardQueries(t, path, readDashboard(t, path))...)
	}
	for _, path := range ruleFiles(t) {
		qs = append(qs, ruleQueries(t, path)...)
	}
	if len(qs) == 0 {
		t.Fatal("no PromQL expressions found")
	}
	return qs
}

// ---------------------------------------------------------------------------------------------
// Grafana variables

// grafanaVar matches $name, ${name} and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\}|([A-Za-z0-9_]+))`)

// builtinVars are Grafana's global variables, with values valid where Grafana puts them. The
// ones that stand for a range get durations no dashboard writes, so that a parsed range says
// which variable it was (rangeVar).
var builtinVars = map[string]string{
	"__rate_interval":    "1m1ms",
	"__rate_interval_ms": "60000",
	"__interval":         "15s1ms",
	"__interval_ms":      "15000",
	"__range":            "1h1ms",
	"__range_s":          "3600",
	"__range_ms":         "3600000",
}

// rangeVar is the Grafana variable a parsed range came from ("__rate_interval"), or "" for a
// range written out.
func rangeVar(d time.Duration) string {
	for _, name := range []string{"__rate_interval", "__interval", "__range"} {
		if v, _ := model.ParseDuration(builtinVars[name]); time.Duration(v) == d {
			return name
		}
	}
	return ""
}

// dashboardVars are values for the dashboard's own variables.
var dashboardVars = map[string]string{
	"datasource": "prometheus",
	"job":        "hacheck",
	"instance":   "h1:3333",
}

// substitute makes an expression PromQL: Grafana variables outside string literals are replaced
// by plausible values. Inside a string (a label value, a regex) a variable is any text to
// PromQL and stays as written, so the matchers show which variable they use. An unknown
// variable, anywhere, is an error; $1 in a string is label_replace's regex group.
func substitute(expr string) (string, error) {
	if strings.Contains(expr, "[[") {
		return "", errors.New("uses the deprecated [[variable]] syntax; write $variable")
	}
	var unknown []string
	value := func(ref []string) (string, bool) {
		name := ref[1] + ref[2]
		if v, ok := builtinVars[name]; ok {
			return v, true
		}
		v, ok := dashboardVars[name]
		if !ok {
			unknown = append(unknown, ref[0])
		}
		return v, ok
	}
	var b strings.Builder
	for i := 0; i < len(expr); {
		switch c := expr[i]; {
		case c == '"' || c == '\'' || c == '`':
			end := stringEnd(expr, i)
			for _, ref := range grafanaVar.FindAllStringSubmatch(expr[i:end], -1) {
				if strings.Trim(ref[1]+ref[2], "0123456789") != "" { // $1: a regex group, not a variable
					value(ref)
				}
			}
			b.WriteString(expr[i:end])
			i = end
		case c == '$':
			loc := grafanaVar.FindStringSubmatchIndex(expr[i:])
			if loc == nil || loc[0] != 0 {
				b.WriteByte(c)
				i++
				continue
			}
			ref := grafanaVar.FindStringSubmatch(expr[i:])
			if v, ok := value(ref); ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref[0])
			}
			i += loc[1]
		default:
			b.WriteByte(c)
			i++
		}
	}
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variable(s) %v", unknown)
	}
	return b.String(), nil
}

// stringEnd is the index just past the PromQL string literal opening at expr[open] (or the end
// of expr if it is not closed, which the parser then reports): "..." and '...' with backslash
// escapes, `...` without.
func stringEnd(expr string, open int) int {
	quote := expr[open]
	for i := open + 1; i < len(expr); i++ {
		switch {
		case expr[i] == '\\' && quote != '`':
			i++
		case expr[i] == quote:
			return i + 1
		}
	}
	return len(expr)
}

// ---------------------------------------------------------------------------------------------
// Analysis, on Prometheus's own parser

var promql = parser.NewParser(parser.Options{})

// selector is one vector selector: metric{matchers}.
type selector struct {
	metric   string
	text     string // as the parser prints it
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

// labelList is a by/without/on/ignoring/group_left/group_right clause.
type labelList struct {
	keyword string
	labels  []string
	// metrics are those of the expression the labels must come from: an aggregation's
	// argument for by/without, both sides of the operation for the others.
	metrics []string
	// created are labels that expression makes itself (label_replace, label_join,
	// count_values).
	created []string
}

// rangeUse is a function call on a range: rate(x[5m]), or on a subquery.
type rangeUse struct {
	function string
	rng      time.Duration
	subquery bool
}

// analysis is what one expression uses.
type analysis struct {
	selectors []selector
	lists     []labelList
	ranges    []rangeUse
}

// analyze parses an expression, Grafana variables substituted, and lists the metrics, labels
// and ranges it uses.
func analyze(raw string) (*analysis, error) {
	expr, err := substitute(raw)
	if err != nil {
		return nil, err
	}
	root, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	a := &analysis{}
	parser.Inspect(root, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			a.selectors = append(a.selectors, selectorOf(n))
		case *parser.AggregateExpr:
			if len(n.Grouping) > 0 {
				a.lists = append(a.lists, listOver(map[bool]string{false: "by", true: "without"}[n.Without], n.Grouping, n.Expr))
			}
		case *parser.BinaryExpr:
			if vm := n.VectorMatching; vm != nil {
				if len(vm.MatchingLabels) > 0 {
					a.lists = append(a.lists, listOver(map[bool]string{false: "ignoring", true: "on"}[vm.On], vm.MatchingLabels, n))
				}
				if len(vm.Include) > 0 {
					a.lists = append(a.lists, listOver(map[bool]string{false: "group_left", true: "group_right"}[vm.Card == parser.CardOneToMany], vm.Include, n))
				}
			}
		case *parser.Call:
			for _, arg := range n.Args {
				switch arg := arg.(type) {
				case *parser.MatrixSelector:
					a.ranges = append(a.ranges, rangeUse{function: n.Func.Name, rng: arg.Range})
				case *parser.SubqueryExpr:
					a.ranges = append(a.ranges, rangeUse{function: n.Func.Name, rng: arg.Range, subquery: true})
				}
			}
		}
		return nil
	})
	return a, nil
}

// selectorOf is a vector selector's metric and matchers; {__name__="x"} names metric x.
func selectorOf(vs *parser.VectorSelector) selector {
	s := selector{metric: vs.Name, text: vs.String()}
	for _, m := range vs.LabelMatchers {
		op := m.Type.String()
		if m.Name == "__name__" {
			if s.metric == "" && op == "=" {
				s.metric = m.Value
			}
			if m.Value == vs.Name {
				continue // the parser's own matcher for the name written before the braces
			}
		}
		s.matchers = append(s.matchers, matcher{label: m.Name, op: op, value: m.Value})
	}
	return s
}

// listOver is a label list whose labels must come from the metrics of scope or the labels it
// creates.
func listOver(keyword string, labels []string, scope parser.Node) labelList {
	l := labelList{keyword: keyword, labels: labels}
	parser.Inspect(scope, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			l.metrics = append(l.metrics, selectorOf(n).metric)
		case *parser.Call:
			if name := n.Func.Name; (name == "label_replace" || name == "label_join") && len(n.Args) > 1 {
				if dst, ok := n.Args[1].(*parser.StringLiteral); ok {
					l.created = append(l.created, dst.Val)
				}
			}
		case *parser.AggregateExpr:
			if dst, ok := n.Param.(*parser.StringLiteral); ok && n.Op == parser.COUNT_VALUES {
				l.created = append(l.created, dst.Val)
			}
		}
		return nil
	})
	return l
}

// set is a set of strings.
func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// ---------------------------------------------------------------------------------------------
// What /metrics exports

// targetLabels are the labels Prometheus attaches to every scraped series (deploy/prometheus.yml
// relabels nothing the dashboards or alerts use).
var targetLabels = set("job", "instance")

// prometheusSeries are series that Prometheus itself makes: name -> labels (nil: any).
var prometheusSeries = map[string]map[string]bool{
	"up":               set("job", "instance"),
	"ALERTS":           nil,
	"ALERTS_FOR_STATE": nil,
}

// exported is what a scrape of hacheck's /metrics shows.
type exported struct {
	// series maps every series name a Prometheus server would store (name_bucket, name_sum,
	// name_count of classic histograms, the name itself for native ones) to its label names.
	series map[string]map[string]bool
	// values maps series name and label to the label's complete vocabulary, for the labels
	// whose every value hacheck pre-initialises or documents as a fixed set.
	values map[string]map[string]map[string]bool
}

// scrape builds hacheck's metrics the way serve does, drives every code path that creates a
// series, and scrapes the handler in the protobuf format (which says which histograms are native).
func scrape(t *testing.T) exported {
	t.Helper()
	dir := t.TempDir()
	m := metrics.New(spool.New(dir), "test", metrics.Options{})

	marks := spool.New(dir)
	if _, err := marks.Down("web", 0, "alice: deploy", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := marks.Down("all", 0, "reboot", time.Time{}); err != nil {
		t.Fatal(err)
	}
	src1, src2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for _, o := range check.Outcomes {
		m.ObserveRequest("http", "web", src1, 200, o, time.Millisecond)
		m.ObserveRequest("tcp", "db", src2, 503, o, 2*time.Millisecond)
		m.CheckStarted("http")
		m.CheckFinished("http", o, 5*time.Millisecond)
	}
	for _, r := range check.CacheResults {
		m.CacheServed("http", r)
	}
	m.ConfigReloaded(false, time.Now())
	m.ConfigReloaded(true, time.Now())
	// What the server registers beside the metrics: what the load balancers see.
	tracker := lb.NewTracker(lb.Options{})
	// A load balancer's line counts once it has checked repeatedly: a few checks, a second apart.
	now := time.Now()
	for i := 9; i >= 0; i-- {
		tracker.Record("web", 8080, "UP; port=8080; name=be_web/web1; node=lb1; weight=1/2; scur=0/0; qcur=0", 0, src1, now.Add(-time.Duration(i)*time.Second))
	}
	m.Registry().MustRegister(lb.NewCollector(tracker))

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	protoFmt := expfmt.NewFormat(expfmt.TypeProtoDelim)
	req.Header.Set("Accept", string(protoFmt))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if got := expfmt.ResponseFormat(resp.Header); got.FormatType() != expfmt.TypeProtoDelim {
		t.Fatalf("GET /metrics: got format %q, want protobuf", got)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	ex := exported{series: map[string]map[string]bool{}, values: map[string]map[string]map[string]bool{}}
	add := func(name string, labels map[string]bool, extra ...string) {
		l := map[string]bool{}
		for k := range labels {
			l[k] = true
		}
		for _, k := range extra {
			l[k] = true
		}
		ex.series[name] = l
	}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := mf.GetName()
		labels := map[string]bool{}
		native := false
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				labels[lp.GetName()] = true
			}
			if h := metric.GetHistogram(); h != nil && (h.Schema != nil || h.ZeroThreshold != nil) {
				native = true
			}
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			add(name+"_bucket", labels, "le")
			add(name+"_sum", labels)
			add(name+"_count", labels)
			if native {
				add(name, labels)
			}
		case dto.MetricType_SUMMARY:
			add(name, labels, "quantile")
			add(name+"_sum", labels)
			add(name+"_count", labels)
		default:
			// Counters keep their _total; no _created series, as the handler does not emit
			// OpenMetrics created samples.
			add(name, labels)
		}
	}
	// Fixed vocabularies: the outcomes (check.Outcomes) and cache results (check.CacheResults)
	// of the result labels, and the two labels that can overflow.
	vocab := func(series, label string, values ...string) {
		if ex.values[series] == nil {
			ex.values[series] = map[string]map[string]bool{}
		}
		ex.values[series][label] = set(values...)
	}
	var outcomes, cacheResults []string
	for _, o := range check.Outcomes {
		outcomes = append(outcomes, string(o))
	}
	for _, r := range check.CacheResults {
		cacheResults = append(cacheResults, string(r))
	}
	vocab("hacheck_requests_total", "result", outcomes...)
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		vocab("hacheck_check_duration_seconds"+suffix, "result", outcomes...)
	}
	vocab("hacheck_cache_requests_total", "result", cacheResults...)
	vocab("hacheck_label_overflow_total", "label", "service", "source")
	for s, byLabel := range ex.values {
		if ex.series[s] == nil {
			t.Fatalf("vocabulary for %s, which the scrape does not have", s)
		}
		for l := range byLabel {
			if !ex.series[s][l] {
				t.Fatalf("vocabulary for %s label %s, which the scrape does not have", s, l)
			}
		}
	}
	return ex
}

// labelsOf is the label names a series can have once scraped, or nil if any is possible.
func (ex exported) labelsOf(name string) (labels map[string]bool, known bool) {
	if l, ok := prometheusSeries[name]; ok {
		return l, true
	}
	l, ok := ex.series[name]
	return l, ok
}

// ---------------------------------------------------------------------------------------------
// Tests

// TestQueriesParse parses every expression, variables substituted, with Prometheus's parser.
func TestQueriesParse(t *testing.T) {
	n := 0
	for _, q := range allQueries(t) {
		if q.raw == "" {
			continue // label_values(label): no PromQL
		}
		expr, err := substitute(q.raw)
		if err == nil {
			_, err = promql.ParseExpr(expr)
		}
		if err != nil {
			t.Errorf("%s: %v\n\texpr:        %s\n\tsubstituted: %s", q.where, err, q.raw, expr)
			continue
		}
		n++
	}
	t.Logf("%d expressions parse", n)
}

// TestQueriesUseExportedMetrics checks that every metric an expression names is one hacheck's
// /metrics exports (or `up`/ALERTS, which Prometheus makes), that every label used in a
// selector or a by/without/on/ignoring/group_left/group_right list exists on the metrics
// concerned, and that matchers on fixed-vocabulary labels (result, label) name real values.
func TestQueriesUseExportedMetrics(t *testing.T) {
	ex := scrape(t)
	for _, q := range allQueries(t) {
		checkQuery(t, ex, q)
	}
}

func checkQuery(t *testing.T, ex exported, q query) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s\n\texpr: %s", q.where, fmt.Sprintf(format, args...), q.raw)
	}
	if q.raw == "" {
		// label_values(label): the label must exist on some metric.
		for _, labels := range ex.series {
			if labels[q.labelValuesLabel] {
				return
			}
		}
		if !targetLabels[q.labelValuesLabel] {
			fail("label_values(%s): no exported metric has label %q", q.labelValuesLabel, q.labelValuesLabel)
		}
		return
	}
	a, err := analyze(q.raw)
	if err != nil {
		fail("cannot analyze: %v", err)
		return
	}
	// Metrics and the labels of their matchers.
	for _, sel := range a.selectors {
		if sel.metric == "" {
			fail("selector without a metric name: %s", sel.text)
			continue
		}
		labels, ok := ex.labelsOf(sel.metric)
		if !ok {
			fail("metric %q is not exported by hacheck's /metrics (nor made by Prometheus)%s",
				sel.metric, suggest(ex, sel.metric))
			continue
		}
		for _, m := range sel.matchers {
			if m.label == "__name__" || labels == nil {
				continue
			}
			if !labels[m.label] && !targetLabels[m.label] {
				fail("metric %q has no label %q (it has %s)", sel.metric, m.label, labelNames(labels))
				continue
			}
			checkValue(fail, ex, sel.metric, m)
		}
	}
	if q.labelValuesLabel != "" {
		if len(a.selectors) != 1 {
			fail("label_values wants one selector, got %d", len(a.selectors))
		} else if labels, ok := ex.labelsOf(a.selectors[0].metric); ok && labels != nil &&
			!labels[q.labelValuesLabel] && !targetLabels[q.labelValuesLabel] {
			fail("label_values: metric %q has no label %q (it has %s)",
				a.selectors[0].metric, q.labelValuesLabel, labelNames(labels))
		}
	}
	// Grouping and matching labels: each must exist on at least one metric in scope.
	for _, l := range a.lists {
		have := map[string]bool{}
		wildcard := false
		for _, metric := range l.metrics {
			labels, ok := ex.labelsOf(metric)
			if !ok {
				continue // reported above
			}
			if labels == nil {
				wildcard = true
			}
			for k := range labels {
				have[k] = true
			}
		}
		for _, k := range l.created {
			have[k] = true
		}
		if wildcard {
			continue
		}
		for _, label := range l.labels {
			if !have[label] && !targetLabels[label] {
				fail("%s (%s): no metric it applies to has label %q (they have %s)",
					l.keyword, strings.Join(l.labels, ", "), label, labelNames(have))
			}
		}
	}
}

// checkValue reports an = or =~ matcher on a fixed-vocabulary label that can never match.
func checkValue(fail func(string, ...any), ex exported, metric string, m matcher) {
	vocab := ex.values[metric][m.label]
	if vocab == nil || strings.Contains(m.value, "$") {
		return
	}
	var values []string
	switch m.op {
	case "=", "!=":
		values = []string{m.value}
	case "=~", "!~":
		// Only simple alternations a|b|c are checked.
		if regexp.QuoteMeta(strings.ReplaceAll(m.value, "|", "")) != strings.ReplaceAll(m.value, "|", "") {
			return
		}
		values = strings.Split(m.value, "|")
	}
	for _, v := range values {
		if !vocab[v] {
			fail("%s{%s%s%q}: %q is not a value hacheck exports for %s (it uses %s)",
				metric, m.label, m.op, m.value, v, m.label, strings.Join(slices.Sorted(maps.Keys(vocab)), ", "))
		}
	}
}

// suggest names the exported series closest to a misspelt one, or lists hacheck's if none is.
func suggest(ex exported, name string) string {
	best, bestDist := "", max(4, len(name)/5+1) // closer than this many edits
	var all []string
	for s := range ex.series {
		if strings.HasPrefix(s, "hacheck_") {
			all = append(all, s)
		}
		if d := editdist.Levenshtein(name, s); d < bestDist || d == bestDist && s < best {
			best, bestDist = s, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %s?", best)
	}
	sort.Strings(all)
	return "; hacheck exports " + strings.Join(all, ", ")
}

func labelNames(labels map[string]bool) string {
	var names []string
	for k := range labels {
		names = append(names, k)
	}
	for k := range targetLabels {
		if !labels[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// TestRateRanges checks the range of every rate(), irate() and increase() in the dashboards:
// $__rate_interval (Grafana keeps it at least four scrape intervals), a fixed duration, or
// $__range in an instant query (a total over the dashboard's time range). $__interval, which
// can shrink below two samples and draw gaps, is refused. It logs which one each uses.
func TestRateRanges(t *testing.T) {
	var rateInterval, fixed, wholeRange int
	var report []string
	for _, path := range dashboardFiles(t) {
		for _, q := range dashboardQueries(t, path, readDashboard(t, path)) {
			if q.raw == "" {
				continue
			}
			a, err := analyze(q.raw)
			if err != nil {
				t.Errorf("%s: cannot analyze: %v", q.where, err)
				continue
			}
			for _, r := range a.ranges {
				if r.function != "rate" && r.function != "irate" && r.function != "increase" {
					continue
				}
				v := rangeVar(r.rng)
				rng := "$" + v
				if v == "" {
					rng = model.Duration(r.rng).String()
				}
				switch {
				case r.subquery:
					t.Errorf("%s: %s over a subquery: use $__rate_interval or a fixed range on a selector\n\texpr: %s",
						q.where, r.function, q.raw)
				case v == "__rate_interval":
					rateInterval++
					report = append(report, fmt.Sprintf("%s: %s[%s]: $__rate_interval", q.where, r.function, rng))
				case v == "":
					fixed++
					report = append(report, fmt.Sprintf("%s: %s[%s]: fixed range", q.where, r.function, rng))
				case v == "__range":
					if !q.instant {
						t.Errorf("%s: %s[%s] in a range query: use $__rate_interval, or make the target instant\n\texpr: %s",
							q.where, r.function, rng, q.raw)
						continue
					}
					wholeRange++
					report = append(report, fmt.Sprintf("%s: %s[%s]: whole time range, instant query", q.where, r.function, rng))
				default:
					t.Errorf("%s: %s[%s]: use $__rate_interval or a fixed range\n\texpr: %s",
						q.where, r.function, rng, q.raw)
				}
			}
		}
	}
	t.Logf("rate/irate/increase ranges: %d $__rate_interval, %d fixed, %d $__range (instant):\n%s",
		rateInterval, fixed, wholeRange, strings.Join(report, "\n"))
}

// TestAnalyze pins what the checks see of the constructs the dashboards and alerts use.
func TestAnalyze(t *testing.T) {
	a, err := analyze(`histogram_quantile(0.9, sum by (protocol, le) (rate(hacheck_check_duration_seconds_bucket{job="$job", instance=~"$instance"}[$__rate_interval])))
		/ on (job) group_left (reason) max without (x) (foo:bar{"quoted"='v'} offset -5m) + count_values("made", {__name__="baz"}) or label_replace(up, "dst", "$1", "instance", "(.*):.*") # comment
		+ sum(rate(x[1h30m:5m])) > bool 1e3 + Inf + increase(y[${__range}] @ start())`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range a.selectors {
		var ls []string
		for _, m := range s.matchers {
			ls = append(ls, m.label+m.op+m.value)
		}
		got = append(got, s.metric+"{"+strings.Join(ls, ",")+"}")
	}
	slices.Sort(got)
	want := []string{
		`baz{__name__=baz}`,
		`foo:bar{quoted=v}`,
		`hacheck_check_duration_seconds_bucket{job=$job,instance=~$instance}`,
		`up{}`,
		`x{}`,
		`y{}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("selectors:\n got %q\nwant %q", got, want)
	}
	var lists []string
	for _, l := range a.lists {
		metrics := slices.Clone(l.metrics)
		slices.Sort(metrics)
		lists = append(lists, fmt.Sprintf("%s%v over %v making %v", l.keyword, l.labels, metrics, l.created))
	}
	slices.Sort(lists)
	wantLists := []string{
		"by[protocol le] over [hacheck_check_duration_seconds_bucket] making []",
		"group_left[reason] over [foo:bar hacheck_check_duration_seconds_bucket] making []",
		"on[job] over [foo:bar hacheck_check_duration_seconds_bucket] making []",
		"without[x] over [foo:bar] making []",
	}
	if !slices.Equal(lists, wantLists) {
		t.Errorf("label lists:\n got %q\nwant %q", lists, wantLists)
	}
	var ranges []string
	for _, r := range a.ranges {
		ranges = append(ranges, fmt.Sprintf("%s[%s %q subquery=%v]", r.function, model.Duration(r.rng), rangeVar(r.rng), r.subquery))
	}
	wantRanges := []string{
		`rate[1m1ms "__rate_interval" subquery=false]`,
		`rate[1h30m "" subquery=true]`,
		`increase[1h1ms "__range" subquery=false]`,
	}
	if !slices.Equal(ranges, wantRanges) {
		t.Errorf("ranges:\n got %q\nwant %q", ranges, wantRanges)
	}
	// What a label list may use: the labels its scope's metrics have, or that it makes.
	b, err := analyze(`sum by (dst, made) (label_replace(count_values("made", up), "dst", "$1", "instance", "(.*)"))`)
	if err != nil || len(b.lists) != 1 || !slices.Equal(b.lists[0].created, []string{"dst", "made"}) {
		t.Errorf("created labels: %+v, %v", b, err)
	}

	for _, bad := range []string{`sum(x`, `x{a="b"`, `nosuchfunc(x)`, `x{a}`, `x[[v]]`, `"unterminated`, `x[$nosuchvar]`, `x{a="$nosuchvar"}`} {
		if _, err := analyze(bad); err == nil {
			t.Errorf("analyze(%q): no error", bad)
		}
	}
	for _, tc := range []struct{ in, raw, label string }{
		{`label_values(up{job="$job"}, instance)`, `up{job="$job"}`, "instance"},
		{`label_values(up{job="$job", a="b"}, instance)`, `up{job="$job", a="b"}`, "instance"},
		{`label_values(job)`, "", "job"},
	} {
		if q, err := parseVariableQuery(tc.in); err != nil || q.raw != tc.raw || q.labelValuesLabel != tc.label {
			t.Errorf("parseVariableQuery(%s): %+v, %v", tc.in, q, err)
		}
	}
	if _, err := parseVariableQuery(`label_values(up, "quoted")`); err == nil {
		t.Error("parseVariableQuery: a quoted label accepted")
	}
	for in, want := range map[string]string{
		`rate(x{job="$job",i=~"${instance:regex}"}[$__rate_interval])`: `rate(x{job="$job",i=~"${instance:regex}"}[1m1ms])`,
		`x{a='it\'s $job'} * $__range_s`:                               `x{a='it\'s $job'} * 3600`,
		"x{a=`$job`} offset $__interval":                               "x{a=`$job`} offset 15s1ms",
	} {
		if got, err := substitute(in); err != nil || got != want {
			t.Errorf("substitute(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := substitute(`x{a="$nosuchvar"}`); err == nil {
		t.Error("substitute: unknown variable in a string accepted")
	}
}

// FuzzAnalyze makes sure the variable substitution and the walk over the parsed expression
// never panic or loop, whatever the expression, and that a substitution outside strings leaves
// no Grafana variable the parser would choke on.
func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{`sum by (a) (rate(x{a="b"}[5m]))`, `x * on (a) group_left (b) y`,
		`{__name__="x"}`, `a[1h:5m] offset 1d @ end()`, `label_values(up, job)`, `$x ${y:csv}`,
		`x{a="$job"}[$__rate_interval]`, `'\'$job' + "\"" + ` + "`$job`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if out, err := substitute(s); err == nil && len(out) < len(s)/2 {
			t.Fatalf("substitute(%q) = %q: lost text", s, out)
		}
		_, _ = analyze(s)
		_, _ = parseVariableQuery(s)
	})
}
