package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/hacheck/hacheck/internal/editdist"
)

// Load reads and parses the YAML file at path; path "" means Default. Errors and warnings are
// one line each and start with the path.
func Load(path string) (Config, []string, error) {
	if path == "" {
		return Default(), nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("cannot read config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return Config{}, nil, fmt.Errorf("cannot read config file: %w", err)
	}
	cfg, warnings, err := Parse(data)
	for i, w := range warnings {
		warnings[i] = path + ": " + w
	}
	if err != nil {
		return Config{}, warnings, fmt.Errorf("%s: %w", path, err)
	}
	if st, serr := f.Stat(); serr == nil && st.Mode().Perm()&0o004 != 0 && (cfg.MySQLPassword != "" || cfg.PostgresPassword != "" || cfg.RemoteSpoolToken != "") {
		warnings = append(warnings, path+": holds a password or token but every user may read it (chmod o-r)")
	}
	return cfg, warnings, nil
}

// Parse parses one YAML document of config keys over Default; empty data (or only comments)
// gives the defaults, and a key set to null keeps its default. Unknown keys are warnings, not
// errors. The error, if any, is one line naming every bad key in file order; the returned
// Config is then the zero value.
func Parse(data []byte) (Config, []string, error) {
	if len(data) > maxConfigBytes {
		return Config{}, nil, fmt.Errorf("config is larger than %d MiB", maxConfigBytes>>20)
	}
	root, err := parseSingleDocument(data)
	if err != nil {
		return Config{}, nil, err
	}
	cfg := Default()
	p := &parser{lines: map[string]int{}, spelling: map[string]string{}}
	if root != nil {
		p.decode(root, &cfg)
	}
	for _, pr := range cfg.problems() {
		pr.line = p.lines[pr.top]
		if spelled := p.spelling[pr.top]; spelled != "" && spelled != pr.top {
			// Name the key as the file wrote it: that is what its reader will search for.
			pr.key = spelled + strings.TrimPrefix(pr.key, pr.top)
		}
		p.problems = append(p.problems, pr)
	}
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b problem) int { return cmp.Compare(a.line, b.line) })
		return Config{}, p.warnings, joinProblems(p.problems)
	}
	if cfg.remoteChangesUnguarded() {
		p.warnings = append(p.warnings, "allow_remote_spool_changes: any host in remote_spool_allowed_cidrs may mark services down without a token (set remote_spool_token)")
	}
	return cfg, p.warnings, nil
}

// parseSingleDocument returns the top-level node of data's only YAML document, or nil when
// there is no document or it is null.
func parseSingleDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, errors.New(singleLine(err.Error()))
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, errors.New(singleLine(err.Error()))
	default:
		return nil, fmt.Errorf("line %d: config holds more than one YAML document (a second starts here); put every key in one", second.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := resolve(doc.Content[0])
	switch {
	case isNull(root):
		return nil, nil
	case root.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("line %d: config must be a mapping of keys to values, got %s", root.Line, describeNode(root, false))
	}
	return root, nil
}

// problem is one bad key; Parse reports all of them at once.
type problem struct {
	line int    // 0: unknown (a Config built in code)
	top  string // the top-level key, to find the line of a range problem
	key  string // as shown: cache_time, remote_spool_allowed_cidrs[2], source_networks.lb; "" for the file's shape
	msg  string
}

func (p problem) String() string {
	s := p.msg
	if p.key != "" {
		s = "config key " + p.key + ": " + s
	}
	if p.line > 0 {
		s = "line " + strconv.Itoa(p.line) + ": " + s
	}
	return s
}

func joinProblems(ps []problem) error {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return errors.New(singleLine(strings.Join(parts, "; ")))
}

// parser walks the top-level mapping: each known key's value is decoded by its field's type
// (yaml.v3 calls the type's UnmarshalYAML); the walk itself finds what no field type can see:
// unknown keys, keys set twice, merge keys, and each key's line.
type parser struct {
	problems []problem
	warnings []string
	lines    map[string]int    // top-level key -> its line, for the range problems found later
	spelling map[string]string // top-level key -> the name the file set it by (an alias or itself)
}

func (p *parser) decode(root *yaml.Node, cfg *Config) {
	v := reflect.ValueOf(cfg).Elem()
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := resolve(root.Content[i]), resolve(root.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			p.problems = append(p.problems, problem{line: k.Line, msg: "config keys must be plain names, got " + describeNode(k, false)})
			continue
		case k.ShortTag() == "!!merge":
			p.problems = append(p.problems, problem{line: k.Line, msg: "YAML merge keys (<<) are not supported in the config; write the keys out"})
			continue
		}
		name := k.Value
		key := name
		if canonical, ok := aliases[name]; ok {
			key = canonical
		}
		f, known := fieldByKey[key]
		if why, ignored := ignoredKeys[name]; ignored && !known {
			p.warnings = append(p.warnings, fmt.Sprintf("line %d: key %s ignored: %s", k.Line, name, why))
			continue
		}
		if !known {
			w := fmt.Sprintf("line %d: unknown key %s ignored", k.Line, quoteCut(name))
			if s := suggestKey(name); s != "" {
				w += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.warnings = append(p.warnings, w)
			continue
		}
		if first, dup := p.lines[key]; dup {
			msg := fmt.Sprintf("set twice (first on line %d)", first)
			if other := p.spelling[key]; other != name {
				msg = fmt.Sprintf("%s (line %d) is the same setting under another name; keep only %s", other, first, key)
			}
			p.problems = append(p.problems, problem{line: k.Line, key: name, msg: msg})
			continue
		}
		p.lines[key] = k.Line
		p.spelling[key] = name
		if isNull(val) {
			continue // "not set": the default stays, as the example config's `null`s promise
		}
		err := val.Decode(v.Field(f.index).Addr().Interface())
		var errs valueErrors
		switch {
		case err == nil:
		case errors.As(err, &errs):
			for _, e := range errs {
				msg := e.msg
				if msg == "" {
					msg = f.want + ", got " + e.got
				}
				p.problems = append(p.problems, problem{line: e.line, top: key, key: name + e.path, msg: msg})
			}
		default: // a field type that does not report valueErrors
			p.problems = append(p.problems, problem{line: val.Line, top: key, key: name, msg: f.want + ", got " + describeNode(val, false)})
		}
	}
}

// scalarText is a scalar's text if it is a string or a number.
func scalarText(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		return n.Value, true
	}
	return "", false
}

// listItems returns a sequence's items, or a lone scalar as a list of one; false for a mapping.
func listItems(n *yaml.Node) ([]*yaml.Node, bool) {
	switch n.Kind {
	case yaml.SequenceNode:
		items := make([]*yaml.Node, len(n.Content))
		for i, it := range n.Content {
			items[i] = resolve(it)
		}
		return items, true
	case yaml.ScalarNode:
		return []*yaml.Node{n}, true
	}
	return nil, false
}

// resolve follows YAML aliases (*name) to the anchored node; the loop is bounded because a
// crafted document can make an alias point into itself.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describeNode says what a wrong value was, for "got ..."; a secret's value is never echoed,
// only its kind.
func describeNode(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
	default:
		return "nothing"
	}
	tag := n.ShortTag()
	if secret {
		switch tag {
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a string"
	}
	switch tag {
	case "!!int", "!!float", "!!bool", "!!null":
		if utf8.ValidString(n.Value) && !strings.ContainsFunc(n.Value, func(r rune) bool { return r < ' ' || r == 0x7f }) && len(n.Value) <= 40 {
			return n.Value
		}
	}
	return quoteCut(n.Value)
}

// quoteCut is %q cut to a length that keeps an error on one readable line.
func quoteCut(s string) string {
	const maxRunes = 64
	if utf8.RuneCountInString(s) > maxRunes {
		r := []rune(s)
		return strconv.Quote(string(r[:maxRunes])) + "..."
	}
	return strconv.Quote(s)
}

// singleLine joins a multi-line message (yaml.v3's type errors are several lines) into one.
func singleLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

// suggestKey returns the known key closest to an unknown one, if it is plausibly a typo.
func suggestKey(name string) string {
	best, bestDist := "", 3
	keys := make([]string, 0, len(fields))
	for _, f := range fields {
		keys = append(keys, f.key)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if d := keyEditDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// keyEditDistance is the edit distance of a key as written to a known key; a key longer than
// any known one is not a typo of one, and is not worth the quadratic cost.
func keyEditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	return editdist.Levenshtein(a, b)
}
