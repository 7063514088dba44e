package dashboards_test

import (
	"fmt"
	"testing"
)

// TestDashboardStructure checks what makes a dashboard importable anywhere: a fixed uid (links
// and provisioning rely on it), a schemaVersion, the datasource/job/instance variables, and
// every query going through the ${datasource} variable instead of a data source uid that only
// exists in the Grafana it was exported from.
func TestDashboardStructure(t *testing.T) {
	for _, path := range dashboardFiles(t) {
		d := readDashboard(t, path)
		errorf := func(format string, args ...any) {
			t.Helper()
			t.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
		}

		if d["uid"] != "hacheck" {
			errorf(`uid is %#v, want "hacheck"`, d["uid"])
		}
		if v, ok := d["schemaVersion"].(float64); !ok || v < 1 || v != float64(int(v)) {
			errorf("schemaVersion is %#v, want a positive integer", d["schemaVersion"])
		}
		if title, _ := d["title"].(string); title == "" {
			errorf("no title")
		}
		if d["id"] != nil {
			errorf("id is %v, want null: an id belongs to one Grafana database", d["id"])
		}

		vars := templateVars(t, path, d)
		if ds := vars["datasource"]; ds == nil {
			errorf("no templating variable datasource")
		} else if ds["type"] != "datasource" || ds["query"] != "prometheus" {
			errorf(`variable datasource: type %#v query %#v, want "datasource" and "prometheus"`, ds["type"], ds["query"])
		}
		for _, name := range []string{"job", "instance"} {
			v := vars[name]
			if v == nil {
				errorf("no templating variable %s", name)
				continue
			}
			if v["type"] != "query" {
				errorf("variable %s: type %#v, want query", name, v["type"])
			}
			if v["datasource"] == nil { // a wrong one is reported by the walk below
				errorf("variable %s: no datasource, want ${datasource}", name)
			}
		}

		// Every panel (rows' nested panels included) and every target.
		ids := map[float64]string{}
		reported := map[string]bool{} // datasource paths already reported
		var checkPanels func(panels []any, where string)
		checkPanels = func(panels []any, where string) {
			for i, p := range panels {
				panel, ok := p.(map[string]any)
				if !ok {
					errorf("%s[%d] is not an object", where, i)
					continue
				}
				pw := fmt.Sprintf("%s[%d]%s", where, i, describe(panel))
				if id, ok := panel["id"].(float64); !ok {
					errorf("%s: no id", pw)
				} else if other, dup := ids[id]; dup {
					errorf("%s: id %v already used by %s", pw, id, other)
				} else {
					ids[id] = pw
				}
				targets, _ := panel["targets"].([]any)
				ds, hasDS := panel["datasource"]
				switch {
				case len(targets) > 0 && !isDatasourceVar(ds):
					errorf("%s: datasource %#v, want ${datasource}", pw, ds)
					reported[pw+".datasource"] = true
				case len(targets) == 0 && hasDS && ds != nil && !isDatasourceVar(ds):
					errorf("%s: datasource %#v, want ${datasource} or none", pw, ds)
					reported[pw+".datasource"] = true
				}
				refIDs := map[string]bool{}
				for j, tg := range targets {
					target, _ := tg.(map[string]any)
					tw := fmt.Sprintf("%s.targets[%d]%s", pw, j, describe(target))
					if tds, ok := target["datasource"]; ok && !isDatasourceVar(tds) {
						errorf("%s: datasource %#v, want ${datasource}", tw, tds)
						reported[tw+".datasource"] = true
					}
					ref, _ := target["refId"].(string)
					if ref == "" || refIDs[ref] {
						errorf("%s: refId %q missing or not unique in the panel", tw, ref)
					}
					refIDs[ref] = true
				}
				if nested, ok := panel["panels"].([]any); ok {
					checkPanels(nested, pw+".panels")
				}
			}
		}
		panels, _ := d["panels"].([]any)
		if len(panels) == 0 {
			errorf("no panels")
		}
		checkPanels(panels, ".panels")

		// Any other data source reference anywhere (annotations, variables, library panels)
		// is the variable too; only the built-in annotation uses Grafana's own.
		var walk func(v any, where string)
		walk = func(v any, where string) {
			switch v := v.(type) {
			case map[string]any:
				for _, k := range sortedKeys(v) {
					if k == "datasource" && v[k] != nil && v["builtIn"] == nil && !isDatasourceVar(v[k]) &&
						!reported[where+".datasource"] {
						errorf("%s.datasource: %#v, want ${datasource}", where, v[k])
					}
					walk(v[k], where+"."+k)
				}
			case []any:
				for i, e := range v {
					walk(e, fmt.Sprintf("%s[%d]%s", where, i, describe(e)))
				}
			}
		}
		walk(d, "")

		// A multi-value or All variable expands to a regex (a|b, or allValue .*): matching it
		// with = finds nothing.
		for _, q := range dashboardQueries(t, path, d) {
			a, err := analyze(q.raw)
			if err != nil {
				continue // TestQueriesUseExportedMetrics reports it
			}
			for _, sel := range a.selectors {
				for _, m := range sel.matchers {
					for _, ref := range grafanaVar.FindAllStringSubmatch(m.value, -1) {
						v := vars[ref[1]+ref[2]]
						if v == nil || (v["multi"] != true && v["includeAll"] != true) {
							continue
						}
						if m.op != "=~" && m.op != "!~" {
							t.Errorf("%s: %s%s%q: %s is multi-value or All; match it with =~\n\texpr: %s",
								q.where, m.label, m.op, m.value, ref[0], q.raw)
						}
					}
				}
			}
		}
	}
}

// templateVars maps the dashboard's variable names to their definitions.
func templateVars(t *testing.T, path string, d map[string]any) map[string]map[string]any {
	t.Helper()
	vars := map[string]map[string]any{}
	templating, _ := d["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for i, v := range list {
		tv, _ := v.(map[string]any)
		name, _ := tv["name"].(string)
		if name == "" {
			t.Errorf("%s: templating.list[%d] has no name", path, i)
			continue
		}
		if vars[name] != nil {
			t.Errorf("%s: templating variable %q defined twice", path, name)
		}
		vars[name] = tv
	}
	return vars
}

// isDatasourceVar reports whether a datasource reference is the ${datasource} variable: as an
// object {"type": "prometheus", "uid": "${datasource}"} or, in older schemas, as a string.
func isDatasourceVar(v any) bool {
	isVar := func(s string) bool { return s == "${datasource}" || s == "$datasource" }
	switch v := v.(type) {
	case string:
		return isVar(v)
	case map[string]any:
		uid, _ := v["uid"].(string)
		typ, hasType := v["type"]
		return isVar(uid) && (!hasType || typ == "prometheus")
	}
	return false
}

// TestIsDatasourceVar pins the accepted spellings of the datasource reference.
func TestIsDatasourceVar(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want bool
	}{
		{map[string]any{"type": "prometheus", "uid": "${datasource}"}, true},
		{map[string]any{"uid": "$datasource"}, true},
		{"${datasource}", true},
		{map[string]any{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}, false},
		{map[string]any{"type": "loki", "uid": "${datasource}"}, false},
		{"Prometheus", false},
		{nil, false},
	} {
		if got := isDatasourceVar(tc.v); got != tc.want {
			t.Errorf("isDatasourceVar(%#v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
