package dashboards_test

// This file proves SPEC §5's promise: every PromQL expression in dashboards/*.json and
// alerts/*.rules.yml parses (promtool check rules) and names only metrics, and labels of them,
// that hacheck's /metrics really exports (a scrape of metrics.New's handler).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
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
	"gopkg.in/yaml.v3"

	"github.com/hacheck/hacheck/check"
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
		// label_values(label) or label_values(selector, label): the label is after the last
		// comma outside any braces or quotes.
		toks, err := tokenize(inner)
		if err != nil {
			return query{}, fmt.Errorf("variable query %q: %v", q, err)
		}
		depth, comma := 0, -1
		for i, tk := range toks {
			switch tk.text {
			case "(", "{", "[":
				depth++
			case ")", "}", "]":
				depth--
			case ",":
				if tk.kind == tPunct && depth == 0 {
					comma = i
				}
			}
		}
		last := toks[comma+1:]
		if len(last) != 1 || last[0].kind != tIdent {
			return query{}, fmt.Errorf("variable query %q: the last argument of label_values must be a label name", q)
		}
		tq := query{labelValuesLabel: last[0].text}
		if comma >= 0 {
			tq.raw = strings.TrimSpace(inner[:toks[comma].pos])
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

// builtinVars are Grafana's global variables, with values valid where Grafana puts them.
var builtinVars = map[string]string{
	"__rate_interval":    "1m",
	"__rate_interval_ms": "60000",
	"__interval":         "15s",
	"__interval_ms":      "15000",
	"__range":            "1h",
	"__range_s":          "3600",
	"__range_ms":         "3600000",
}

// dashboardVars are values for the dashboard's own variables.
var dashboardVars = map[string]string{
	"datasource": "prometheus",
	"job":        "hacheck",
	"instance":   "h1:3333",
}

// substitute replaces Grafana variables with plausible values; an unknown variable is an error.
func substitute(expr string) (string, error) {
	if strings.Contains(expr, "[[") {
		return "", errors.New("uses the deprecated [[variable]] syntax; write $variable")
	}
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := builtinVars[name]; ok {
			return v
		}
		if v, ok := dashboardVars[name]; ok {
			return v
		}
		unknown = append(unknown, m)
		return m
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variable(s) %v", unknown)
	}
	return out, nil
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

type tokKind int

const (
	tIdent    tokKind = iota // metric, label, function or keyword name
	tString                  // "...", '...' or `...`
	tNumber                  // 1, 0.5, 1e3, 0x1f, Inf, NaN
	tDuration                // 5m, 1h30m, 100ms
	tVar                     // a Grafana variable: $name, ${name}
	tPunct                   // ( ) { } [ ] , : @
	tOp                      // binary and matcher operators
)

type token struct {
	kind tokKind
	text string
	pos  int // byte offset in the input
}

var twoCharOps = []string{"==", "!=", "<=", ">=", "=~", "!~"}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// tokenize splits a PromQL expression (which may contain Grafana variables) into tokens. It is
// only as strict as the metric and label extraction needs: promtool does the real parsing.
func tokenize(s string) ([]token, error) {
	var toks []token
	brackets := 0 // inside [...], ':' separates a subquery's range and step
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			i++
			for i < len(s) && s[i] != c {
				if s[i] == '\\' && c != '`' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("offset %d: unterminated string", start)
			}
			i++
			toks = append(toks, token{tString, s[start:i], start})
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("offset %d: unterminated ${", start)
				}
				i += end + 1
			} else {
				for i < len(s) && (isDigit(s[i]) || s[i] == '_' || 'a' <= s[i] && s[i] <= 'z' || 'A' <= s[i] && s[i] <= 'Z') {
					i++
				}
			}
			if i == start+1 {
				return nil, fmt.Errorf("offset %d: lone $", start)
			}
			toks = append(toks, token{tVar, s[start:i], start})
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			kind := tNumber
			if c == '0' && i+1 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X') {
				i += 2
				for i < len(s) && strings.IndexByte("0123456789abcdefABCDEF", s[i]) >= 0 {
					i++
				}
			} else {
				for i < len(s) && isDigit(s[i]) {
					i++
				}
				if i < len(s) && strings.IndexByte("smhdwy", s[i]) >= 0 {
					// A duration: one or more <digits><unit>.
					kind = tDuration
					for i < len(s) && strings.IndexByte("smhdwy", s[i]) >= 0 {
						if strings.HasPrefix(s[i:], "ms") {
							i += 2
						} else {
							i++
						}
						for i < len(s) && isDigit(s[i]) {
							i++
						}
					}
				} else {
					if i < len(s) && s[i] == '.' {
						i++
						for i < len(s) && isDigit(s[i]) {
							i++
						}
					}
					if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
						i++
						if i < len(s) && (s[i] == '+' || s[i] == '-') {
							i++
						}
						for i < len(s) && isDigit(s[i]) {
							i++
						}
					}
				}
			}
			if i < len(s) && isIdentChar(s[i]) && s[i] != ':' {
				return nil, fmt.Errorf("offset %d: malformed number or duration %q", start, s[start:i+1])
			}
			toks = append(toks, token{kind, s[start:i], start})
		case c == ':' && brackets > 0:
			i++
			toks = append(toks, token{tPunct, ":", start})
		case isIdentStart(c):
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
			kind := tIdent
			if l := strings.ToLower(s[start:i]); l == "inf" || l == "nan" {
				kind = tNumber
			}
			toks = append(toks, token{kind, s[start:i], start})
		case strings.IndexByte("(){}[],@", c) >= 0:
			if c == '[' {
				if i+1 < len(s) && s[i+1] == '[' {
					return nil, fmt.Errorf("offset %d: [[variable]] syntax", start)
				}
				brackets++
			} else if c == ']' {
				brackets--
			}
			i++
			toks = append(toks, token{tPunct, string(c), start})
		default:
			op := ""
			for _, o := range twoCharOps {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" && strings.IndexByte("+-*/%^<>=", c) >= 0 {
				op = string(c)
			}
			if op == "" {
				return nil, fmt.Errorf("offset %d: unexpected %q", start, c)
			}
			i += len(op)
			toks = append(toks, token{tOp, op, start})
		}
	}
	return toks, nil
}

// ---------------------------------------------------------------------------------------------
// Metric and label extraction

// aggregators are PromQL's aggregation operators.
var aggregators = set("sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk",
	"bottomk", "count_values", "quantile", "limitk", "limit_ratio")

// functions are PromQL's functions (as of Prometheus 3; promtool decides which its version knows).
var functions = set("abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh",
	"atan", "atanh", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
	"cos", "cosh", "count_over_time", "day_of_month", "day_of_week", "day_of_year",
	"days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "exp", "floor",
	"histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
	"histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
	"increase", "info", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10",
	"log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
	"predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
	"round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
	"sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
	"tanh", "time", "timestamp", "vector", "year",
	"start", "end") // start() and end() of the @ modifier

// labelListKeywords take a parenthesised list of label names.
var labelListKeywords = set("by", "without", "on", "ignoring", "group_left", "group_right")

// plainKeywords are the other keywords: binary operators and modifiers.
var plainKeywords = set("bool", "and", "or", "unless", "atan2", "offset")

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// selector is one vector selector: metric{matchers}.
type selector struct {
	metric   string
	tok      int // index of its first token
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

// labelList is a by/without/on/ignoring/group_left/group_right clause.
type labelList struct {
	keyword string
	labels  []string
	// scope is the token range [from, to) whose metrics the labels must come from: an
	// aggregation's argument for by/without, the enclosing parentheses for the others.
	from, to int
	// created are labels the scope makes itself (label_replace, label_join, count_values).
	created []string
}

// rangeUse is the range of a range-vector function call: rate(x[5m]).
type rangeUse struct {
	function string
	rng      []token // the tokens between [ and ]
}

// analysis is what one expression uses.
type analysis struct {
	toks      []token
	selectors []selector
	lists     []labelList
	ranges    []rangeUse
}

// analyze extracts the metrics, labels and ranges an expression uses.
func analyze(expr string) (*analysis, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, err
	}
	a := &analysis{toks: toks}
	// match[i] is the index of the bracket closing (or opening) the one at i; parent[i] the
	// index of the innermost ( enclosing token i, or -1.
	match := make([]int, len(toks))
	parent := make([]int, len(toks))
	var stack []int
	closer := map[string]string{"(": ")", "{": "}", "[": "]"}
	for i, tk := range toks {
		parent[i] = -1
		for j := len(stack) - 1; j >= 0; j-- {
			if toks[stack[j]].text == "(" {
				parent[i] = stack[j]
				break
			}
		}
		if tk.kind != tPunct {
			continue
		}
		switch tk.text {
		case "(", "{", "[":
			stack = append(stack, i)
		case ")", "}", "]":
			if len(stack) == 0 || closer[toks[stack[len(stack)-1]].text] != tk.text {
				return nil, fmt.Errorf("offset %d: unbalanced %q", tk.pos, tk.text)
			}
			open := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			match[open], match[i] = i, open
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("offset %d: unclosed %q", toks[stack[len(stack)-1]].pos, toks[stack[len(stack)-1]].text)
	}
	is := func(i int, text string) bool {
		return i >= 0 && i < len(toks) && toks[i].kind == tPunct && toks[i].text == text
	}
	isAggregator := func(i int) bool {
		return i >= 0 && toks[i].kind == tIdent && aggregators[strings.ToLower(toks[i].text)]
	}

	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch {
		case tk.kind == tPunct && tk.text == "{":
			// A selector without a metric name: {__name__="x", ...}.
			sel, err := a.matchers(i, match[i])
			if err != nil {
				return nil, err
			}
			sel.tok = i
			a.selectors = append(a.selectors, sel)
			i = match[i]
		case tk.kind != tIdent:
			continue
		case labelListKeywords[strings.ToLower(tk.text)]:
			kw := strings.ToLower(tk.text)
			if !is(i+1, "(") {
				if kw == "group_left" || kw == "group_right" {
					continue // no extra labels
				}
				return nil, fmt.Errorf("offset %d: %s without a label list", tk.pos, tk.text)
			}
			l := labelList{keyword: kw, from: 0, to: len(toks)}
			for j := i + 2; j < match[i+1]; j++ {
				switch {
				case toks[j].kind == tIdent:
					l.labels = append(l.labels, toks[j].text)
				case toks[j].kind == tString:
					l.labels = append(l.labels, unquote(toks[j].text))
				case is(j, ","):
				default:
					return nil, fmt.Errorf("offset %d: %q in the %s list", toks[j].pos, toks[j].text, tk.text)
				}
			}
			switch kw {
			case "by", "without":
				// sum by (l) (arg) or sum (arg) by (l).
				arg := -1
				if isAggregator(i - 1) {
					arg = match[i+1] + 1
				} else if is(i-1, ")") && isAggregator(match[i-1]-1) {
					arg = match[i-1]
				}
				if !is(arg, "(") {
					return nil, fmt.Errorf("offset %d: %s not attached to an aggregation", tk.pos, tk.text)
				}
				l.from, l.to = arg, match[arg]+1
			default:
				if p := parent[i]; p >= 0 {
					l.from, l.to = p, match[p]+1
				}
			}
			a.lists = append(a.lists, l)
			i = match[i+1]
		case plainKeywords[strings.ToLower(tk.text)]:
			continue
		case isAggregator(i):
			continue
		case is(i+1, "("):
			if !functions[tk.text] {
				return nil, fmt.Errorf("offset %d: unknown function %q", tk.pos, tk.text)
			}
			// The range of a range-vector function: the first [...] directly in its arguments.
			for j := i + 2; j < match[i+1]; j++ {
				if is(j, "(") || is(j, "{") {
					j = match[j]
					continue
				}
				if is(j, "[") {
					a.ranges = append(a.ranges, rangeUse{function: tk.text, rng: toks[j+1 : match[j]]})
					break
				}
			}
		default:
			// A metric name, with or without matchers.
			sel := selector{metric: tk.text, tok: i}
			if is(i+1, "{") {
				var err error
				if sel, err = a.matchers(i+1, match[i+1]); err != nil {
					return nil, err
				}
				if sel.metric != "" {
					return nil, fmt.Errorf("offset %d: metric name both before and in the braces", tk.pos)
				}
				sel.metric, sel.tok = tk.text, i
				i = match[i+1]
			}
			a.selectors = append(a.selectors, sel)
		}
	}
	// Labels made inside a scope by label_replace/label_join (2nd argument) or count_values
	// (1st argument) are not exported ones; remember them so they are not reported.
	for li := range a.lists {
		l := &a.lists[li]
		for j := l.from; j < l.to; j++ {
			if toks[j].kind != tIdent || !is(j+1, "(") {
				continue
			}
			argIdx := -1
			switch toks[j].text {
			case "label_replace", "label_join":
				argIdx = 1
			case "count_values":
				argIdx = 0
			}
			if argIdx < 0 {
				continue
			}
			args := splitArgs(toks, match, j+1)
			if argIdx < len(args) && len(args[argIdx]) == 1 && args[argIdx][0].kind == tString {
				l.created = append(l.created, unquote(args[argIdx][0].text))
			}
		}
	}
	return a, nil
}

// splitArgs splits the arguments of the call whose ( is at open.
func splitArgs(toks []token, match []int, open int) [][]token {
	var args [][]token
	start := open + 1
	for j := open + 1; j < match[open]; j++ {
		if toks[j].kind == tPunct && (toks[j].text == "(" || toks[j].text == "{" || toks[j].text == "[") {
			j = match[j]
			continue
		}
		if toks[j].kind == tPunct && toks[j].text == "," {
			args = append(args, toks[start:j])
			start = j + 1
		}
	}
	return append(args, toks[start:match[open]])
}

// matchers parses the label matchers between the braces at open and close.
func (a *analysis) matchers(open, close int) (selector, error) {
	var sel selector
	toks := a.toks
	for j := open + 1; j < close; {
		if toks[j].kind == tPunct && toks[j].text == "," {
			j++
			continue
		}
		if j+2 >= close || (toks[j].kind != tIdent && toks[j].kind != tString) ||
			toks[j+1].kind != tOp || toks[j+2].kind != tString {
			return sel, fmt.Errorf("offset %d: malformed label matcher", toks[j].pos)
		}
		m := matcher{label: toks[j].text, op: toks[j+1].text, value: unquote(toks[j+2].text)}
		if toks[j].kind == tString {
			m.label = unquote(toks[j].text)
		}
		switch m.op {
		case "=", "!=", "=~", "!~":
		default:
			return sel, fmt.Errorf("offset %d: %q is not a matcher operator", toks[j+1].pos, m.op)
		}
		if m.label == "__name__" && m.op == "=" {
			sel.metric = m.value
		}
		sel.matchers = append(sel.matchers, m)
		j += 3
	}
	return sel, nil
}

// unquote returns a PromQL string literal's value (Grafana variables and all).
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '\'' {
		s = `"` + strings.ReplaceAll(strings.ReplaceAll(s[1:len(s)-1], `\'`, `'`), `"`, `\"`) + `"`
	}
	if v, err := strconv.Unquote(s); err == nil {
		return v
	}
	return s[1 : len(s)-1]
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

// TestQueriesParse writes every expression, variables substituted, as a recording rule into a
// temporary rules file and runs promtool check rules on it. Each expression gets a group named
// after where it came from, so promtool's error names the culprit.
func TestQueriesParse(t *testing.T) {
	promtool := lookPromtool(t)
	qs := allQueries(t)

	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type group struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	}
	var file struct {
		Groups []group `yaml:"groups"`
	}
	byGroup := map[string]string{}
	for i, q := range qs {
		if q.raw == "" {
			continue // label_values(label): no PromQL
		}
		expr, err := substitute(q.raw)
		if err != nil {
			t.Errorf("%s: %v\n\texpr: %s", q.where, err, q.raw)
			continue
		}
		name := fmt.Sprintf("%d %s", i+1, q.where)
		byGroup[name] = fmt.Sprintf("expr:        %s\n\tsubstituted: %s", q.raw, expr)
		file.Groups = append(file.Groups, group{
			Name:  name,
			Rules: []rule{{Record: fmt.Sprintf("promql_check_%d", i+1), Expr: expr}},
		})
	}
	data, err := yaml.Marshal(&file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "queries.rules.yml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err == nil {
		t.Logf("promtool check rules: %d expressions parse", len(file.Groups))
		return
	}
	var culprits []string
	for name, detail := range byGroup {
		if bytes.Contains(out, []byte(strconv.Quote(name))) {
			culprits = append(culprits, fmt.Sprintf("%s\n\t%s", name, detail))
		}
	}
	sort.Strings(culprits)
	t.Errorf("promtool check rules failed (%v) on %d expression(s):\n%s\n\npromtool said:\n%s",
		err, len(culprits), strings.Join(culprits, "\n"), out)
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
			fail("selector without a metric name at offset %d", a.toks[sel.tok].pos)
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
		for _, sel := range a.selectors {
			if sel.tok < l.from || sel.tok >= l.to {
				continue
			}
			labels, ok := ex.labelsOf(sel.metric)
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
		if d := editDistance(name, s); d < bestDist || d == bestDist && s < best {
			best, bestDist = s, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %s?", best)
	}
	sort.Strings(all)
	return "; hacheck exports " + strings.Join(all, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
				var texts []string
				for _, tk := range r.rng {
					texts = append(texts, tk.text)
				}
				rng := strings.Join(texts, "")
				switch {
				case len(r.rng) == 1 && (r.rng[0].text == "$__rate_interval" || r.rng[0].text == "${__rate_interval}"):
					rateInterval++
					report = append(report, fmt.Sprintf("%s: %s[%s]: $__rate_interval", q.where, r.function, rng))
				case len(r.rng) == 1 && r.rng[0].kind == tDuration:
					fixed++
					report = append(report, fmt.Sprintf("%s: %s[%s]: fixed range", q.where, r.function, rng))
				case len(r.rng) == 1 && (r.rng[0].text == "$__range" || r.rng[0].text == "${__range}"):
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

// TestTokenizer pins the extraction on the constructs the dashboards and alerts use.
func TestTokenizer(t *testing.T) {
	a, err := analyze(`histogram_quantile(0.9, sum by (protocol, le) (rate(hacheck_check_duration_seconds_bucket{job="$job", instance=~"$instance"}[$__rate_interval])))
		/ on (job) group_left (reason) max without (x) (foo:bar{"quoted"='v'} offset -5m) + count_values("made", {__name__="baz"}) or label_replace(up, "dst", "$1", "instance", "(.*):.*") # comment
		+ sum(rate(x[1h30m:5m])) @ start() > bool 1e3 + Inf`)
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
	want := []string{
		`hacheck_check_duration_seconds_bucket{job=$job,instance=~$instance}`,
		`foo:bar{quoted=v}`,
		`baz{__name__=baz}`,
		`up{}`,
		`x{}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("selectors:\n got %q\nwant %q", got, want)
	}
	var lists []string
	for _, l := range a.lists {
		lists = append(lists, fmt.Sprintf("%s%v@%d-%d", l.keyword, l.labels, l.from, l.to))
	}
	if len(a.lists) != 4 || a.lists[0].keyword != "by" || !slices.Equal(a.lists[0].labels, []string{"protocol", "le"}) ||
		a.lists[2].keyword != "group_left" || !slices.Equal(a.lists[3].labels, []string{"x"}) {
		t.Errorf("label lists: %v", lists)
	}
	var ranges []string
	for _, r := range a.ranges {
		var s []string
		for _, tk := range r.rng {
			s = append(s, tk.text)
		}
		ranges = append(ranges, r.function+"["+strings.Join(s, " ")+"]")
	}
	if want := []string{"rate[$__rate_interval]", "rate[1h30m : 5m]"}; !slices.Equal(ranges, want) {
		t.Errorf("ranges: got %q, want %q", ranges, want)
	}

	for _, bad := range []string{`sum(x`, `x{a="b"`, `nosuchfunc(x)`, `x{a}`, `x[[v]]`, `"unterminated`} {
		if _, err := analyze(bad); err == nil {
			t.Errorf("analyze(%q): no error", bad)
		}
	}
	if q, err := parseVariableQuery(`label_values(up{job="$job"}, instance)`); err != nil ||
		q.raw != `up{job="$job"}` || q.labelValuesLabel != "instance" {
		t.Errorf("parseVariableQuery: %+v, %v", q, err)
	}
	if s, err := substitute(`rate(x{job="$job",i=~"${instance:regex}"}[$__rate_interval])`); err != nil ||
		s != `rate(x{job="hacheck",i=~"h1:3333"}[1m])` {
		t.Errorf("substitute: %q, %v", s, err)
	}
	if _, err := substitute(`x{a="$nosuchvar"}`); err == nil {
		t.Error("substitute: unknown variable accepted")
	}
}

// FuzzAnalyze makes sure the extraction never panics or loops, whatever the expression.
func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{`sum by (a) (rate(x{a="b"}[5m]))`, `x * on (a) group_left (b) y`,
		`{__name__="x"}`, `a[1h:5m] offset 1d @ end()`, `label_values(up, job)`, `$x ${y:csv}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := analyze(s)
		if err != nil {
			return
		}
		for _, l := range a.lists {
			if l.from < 0 || l.to > len(a.toks) || l.from > l.to {
				t.Fatalf("scope %d-%d out of %d tokens", l.from, l.to, len(a.toks))
			}
		}
		_, _ = parseVariableQuery(s)
	})
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
