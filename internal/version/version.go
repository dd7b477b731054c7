// Package version holds build-time version information.
package version

// Set by the linker (-X) from git at build time.
var (
	Version = "dev"
	Commit  = "unknown"
)

// SpecVersion is the OCI runtime-spec version nexcage implements.
const SpecVersion = "1.3.0"
