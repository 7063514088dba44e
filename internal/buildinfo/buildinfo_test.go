package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVersionAndCommit(t *testing.T) {
	stamped := func(main string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: main}, Settings: settings}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	clean := debug.BuildSetting{Key: "vcs.modified", Value: "false"}

	tests := []struct {
		name                  string
		versionFlag, commitFl string
		read                  func() (*debug.BuildInfo, bool)
		wantVersion, wantComm string
	}{
		{"ldflags win", "0.1.0", "abc", stamped("v9.9.9", rev), "0.1.0", "abc"},
		{"go install of a tag", "", "", stamped("v1.2.3", rev, clean), "v1.2.3", rev.Value},
		{"local build with changes", "", "", stamped("(devel)", rev, dirty), "dev", rev.Value + "-dirty"},
		{"no vcs stamp", "", "", stamped("(devel)"), "dev", Unknown},
		{"no build info", " ", "", none, "dev", Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionFrom(tt.versionFlag, tt.read); got != tt.wantVersion {
				t.Errorf("version = %q, want %q", got, tt.wantVersion)
			}
			if got := commitFrom(tt.commitFl, tt.read); got != tt.wantComm {
				t.Errorf("commit = %q, want %q", got, tt.wantComm)
			}
		})
	}
}
