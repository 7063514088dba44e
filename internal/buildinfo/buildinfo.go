// Package buildinfo says which hacheck this is: the version and the commit it was built from.
//
// Release builds (deploy/build-deb) set both with
//
//	-ldflags "-X github.com/hacheck/hacheck/internal/buildinfo.version=0.1.0
//	          -X github.com/hacheck/hacheck/internal/buildinfo.commit=<40 hex digits>"
//
// A plain `go build` or `go install` falls back to the module's build info.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Set by -ldflags -X; empty in a plain build.
var (
	version string
	commit  string
)

// Unknown stands for a commit nobody recorded (a build with -buildvcs=false and no -ldflags).
const Unknown = "unknown"

// Version is the release version this binary was built as: the -ldflags value, else the
// module version `go install ...@v1.2.3` records, else "dev".
func Version() string {
	return versionFrom(version, debug.ReadBuildInfo)
}

// Commit is the commit this binary was built from: the -ldflags value, else the VCS revision
// the Go toolchain stamped (with "-dirty" when the work tree had changes), else Unknown.
func Commit() string {
	return commitFrom(commit, debug.ReadBuildInfo)
}

// String is the one line `hacheck version` prints: "0.1.0 (commit 0123abc..., go1.26.8)".
func String() string {
	info, ok := debug.ReadBuildInfo()
	goVersion := "unknown Go"
	if ok {
		goVersion = info.GoVersion
	}
	return Version() + " (commit " + Commit() + ", " + goVersion + ")"
}

func versionFrom(flag string, read func() (*debug.BuildInfo, bool)) string {
	if v := strings.TrimSpace(flag); v != "" {
		return v
	}
	if info, ok := read(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

func commitFrom(flag string, read func() (*debug.BuildInfo, bool)) string {
	if c := strings.TrimSpace(flag); c != "" {
		return c
	}
	info, ok := read()
	if !ok {
		return Unknown
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev == "":
		return Unknown
	case modified == "true":
		return rev + "-dirty"
	}
	return rev
}
