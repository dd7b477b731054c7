// Package conformance runs the OCI runtime-tools validation suite
// (github.com/opencontainers/runtime-tools, its runtimetest and
// validation/* programs) against nexcage routed to each backend, and
// against plain runc and crun for comparison, and writes the results to
// CONFORMANCE.md and conformance/expected.txt (issue 15). See
// conformance/README.md.
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// SuiteModule is the suite's Go module.
const SuiteModule = "github.com/opencontainers/runtime-tools"

// SuiteVersion is the pinned version of the suite: master at commit
// 5e639034dcdc (2025-12-05), the newest commit the Go module proxy
// serves. Why not the tag v0.9.0 (2019), the only release on the proxy:
// it predates Go modules (no requirements in its go.mod), so its packages
// resolve against today's runtime-spec v1.3.0 and fail to compile
// (generate.go: "cannot use limit (variable of type int64) as *int64
// value"). This commit has a go.mod pinning every dependency, builds with
// Go 1.26, and writes bundles with ociVersion 1.3.0 (runtime-spec
// v1.3.0).
const SuiteVersion = "v0.9.1-0.20251205004911-5e639034dcdc"

// CoreTests are the 22 tests issue 15 names: the ones runc 1.1.5 passes on
// this project's machines.
var CoreTests = []string{
	"create", "state", "kill", "kill_no_effect", "delete_only_create_resources",
	"config_updates_without_affect", "poststop", "default", "hostname", "mounts",
	"process", "process_user", "process_oom_score_adj", "root_readonly_true",
	"linux_sysctl", "linux_uid_mappings", "linux_devices", "linux_masked_paths",
	"linux_readonly_paths", "linux_ns_itype", "linux_ns_path", "linux_cgroups_cpus",
}

// IsCore tells whether test is one of CoreTests.
func IsCore(test string) bool {
	for _, c := range CoreTests {
		if c == test {
			return true
		}
	}
	return false
}

// Suite is a built copy of the suite.
type Suite struct {
	Src     string   // the module's source (read-only, in the module cache)
	Bin     string   // directory of runtimetest and the test programs
	Rootfs  string   // rootfs-<arch>.tar.gz the tests unpack into each bundle
	Tests   []string // every validation test, sorted
	Version string
}

// BuildSuite downloads the suite at SuiteVersion through the Go module
// proxy (`go mod download`) and builds runtimetest (static, it runs inside
// the containers) and every validation test into dir/bin.
func BuildSuite(ctx context.Context, dir string) (*Suite, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", SuiteModule+"@"+SuiteVersion)
	cmd.Env = goEnv()
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s@%s: %w%s", SuiteModule, SuiteVersion, err, exitStderr(err))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return nil, fmt.Errorf("go mod download %s@%s: no source directory in %q (%v, %s)", SuiteModule, SuiteVersion, out, err, info.Error)
	}
	s := &Suite{Src: info.Dir, Bin: filepath.Join(dir, "bin"), Version: SuiteVersion,
		Rootfs: filepath.Join(info.Dir, "rootfs-"+runtime.GOARCH+".tar.gz")}
	if _, err := os.Stat(s.Rootfs); err != nil {
		return nil, fmt.Errorf("the suite has no rootfs for %s: %w", runtime.GOARCH, err)
	}
	ents, err := os.ReadDir(filepath.Join(info.Dir, "validation"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "util" {
			continue
		}
		if _, err := os.Stat(filepath.Join(info.Dir, "validation", e.Name(), e.Name()+".go")); err == nil {
			s.Tests = append(s.Tests, e.Name())
		}
	}
	sort.Strings(s.Tests)
	if len(s.Tests) == 0 {
		return nil, fmt.Errorf("no tests under %s/validation", info.Dir)
	}
	// The module zip has no vendor directory (only vendor/modules.txt),
	// so -mod=mod: the dependencies come from the proxy, pinned by the
	// suite's own go.sum (the module cache is read-only; nothing is
	// written there).
	builds := [][]string{
		{"build", "-mod=mod", "-trimpath", "-tags", "netgo osusergo", "-o", filepath.Join(s.Bin, "runtimetest"), "./cmd/runtimetest"},
		{"build", "-mod=mod", "-trimpath", "-o", s.Bin + "/", "./validation/..."},
	}
	for i, args := range builds {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = info.Dir
		cmd.Env = goEnv()
		if i == 0 {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(args, " "), info.Dir, err, out)
		}
	}
	return s, nil
}

// goEnv is the environment for the go tool: outside any workspace, so the
// suite builds as its own module.
func goEnv() []string {
	return append(os.Environ(), "GOWORK=off")
}

func exitStderr(err error) string {
	if e, ok := err.(*exec.ExitError); ok && len(e.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(e.Stderr))
	}
	return ""
}
