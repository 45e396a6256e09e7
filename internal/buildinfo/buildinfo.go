// Package buildinfo tells which build of voting is running. The version and commit are set
// at link time (-ldflags "-X github.com/votingapp/voting/internal/buildinfo.version=v1.2.3");
// a plain `go build` falls back to what the Go toolchain recorded.
package buildinfo

import "runtime/debug"

// Set by the linker; see the package comment.
var (
	version = ""
	commit  = ""
)

// Version returns the release version, "devel" when none was set at link time.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// Commit returns the VCS revision, "unknown" when neither the linker nor the toolchain
// recorded one.
func Commit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
