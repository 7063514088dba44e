package dashboards_test

import (
	"os"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// TestDashboardDecodesStrictlyIntoGrafanasTypes decodes every dashboard into the Grafana
// Foundation SDK's dashboard type, strictly: an unknown field anywhere (dashboard, panels, a
// panel type's options and field config, the Prometheus queries), a wrong type or a missing
// required field is an error. No Grafana runs here; this is the nearest thing to an import.
func TestDashboardDecodesStrictlyIntoGrafanasTypes(t *testing.T) {
	// Panel options and queries are checked against their own types only once the panel and
	// data source plugins are registered.
	plugins.RegisterDefaultPlugins()
	for _, path := range dashboardFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Our file is the classic dashboard JSON (schemaVersion), the one Grafana imports; the
		// SDK's dashboardv2 is the newer resource format, another document altogether.
		//lint:ignore SA1019 the classic model is the one this file is written in
		var d dashboard.Dashboard
		err = d.UnmarshalJSONStrict(data)
		// The SDK returns its error list as an error even when the list is empty.
		if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
			err = nil
		}
		if err != nil {
			t.Errorf("%s does not decode strictly into Grafana's dashboard type:\n%s", path, strings.ReplaceAll(err.Error(), "; ", "\n"))
			continue
		}
		if d.Uid == nil || *d.Uid != "hacheck" || len(d.Panels) == 0 {
			t.Errorf("%s decoded without its uid or panels: uid %v, %d panels", path, d.Uid, len(d.Panels))
		}
	}
}
