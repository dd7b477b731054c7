// Package e2e drives the built nexcage (and pvesim) binaries end to end.
// `make e2e` passes NEXCAGE_BIN and PVESIM_BIN; without them the tests
// build the binaries themselves, so `go test ./...` works too.
package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildDir  string
	buildMu   sync.Mutex
	buildOnce = map[string]*builtBinary{}
)

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary returns the path in envVar, or builds pkg (once per test run).
func binary(t testing.TB, envVar, pkg, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	buildMu.Lock()
	b, ok := buildOnce[pkg]
	if !ok {
		b = &builtBinary{}
		buildOnce[pkg] = b
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "nexcage-e2e-bin-")
		if err != nil {
			buildMu.Unlock()
			t.Fatal(err)
		}
		buildDir = dir
	}
	dir := buildDir
	buildMu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		cmd.Dir = moduleRoot()
		// Static, as `make build` builds it: the Proxmox backend mounts
		// nexcage into containers as their init helper.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// moduleRoot is the repository root (this package is test/e2e).
func moduleRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

// NexcageBin is the nexcage binary under test.
func NexcageBin(t testing.TB) string {
	return binary(t, "NEXCAGE_BIN", "github.com/nexcage/nexcage/cmd/nexcage", "nexcage")
}

// PvesimBin is the pvesim binary (pct, pveam, pvesh by argv[0]).
func PvesimBin(t testing.TB) string {
	return binary(t, "PVESIM_BIN", "github.com/nexcage/nexcage/cmd/pvesim", "pvesim")
}

// Result of one nexcage run.
type Result struct {
	Code           int
	Stdout, Stderr string
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

// Nexcage runs the binary with fixed global flags.
type Nexcage struct {
	T       testing.TB
	Bin     string
	Globals []string // e.g. --root, --config
	Env     []string // extra environment
	Dir     string   // working directory
}

// NewNexcage returns a runner with a fresh --root and the given config
// file (empty: an empty config in a temp dir, so no host config is read).
func NewNexcage(t testing.TB, config string) *Nexcage {
	t.Helper()
	if config == "" {
		config = WriteConfig(t, `{}`)
	}
	root := filepath.Join(t.TempDir(), "root")
	return &Nexcage{T: t, Bin: NexcageBin(t), Globals: []string{"--root", root, "--config", config}}
}

// Root is the --root of n.
func (n *Nexcage) Root() string {
	for i, g := range n.Globals {
		if g == "--root" && i+1 < len(n.Globals) {
			return n.Globals[i+1]
		}
	}
	return ""
}

// Run runs nexcage with n's globals followed by args.
func (n *Nexcage) Run(args ...string) Result {
	n.T.Helper()
	cmd := exec.Command(n.Bin, append(append([]string{}, n.Globals...), args...)...)
	cmd.Env = append(os.Environ(), n.Env...)
	cmd.Dir = n.Dir
	// Files, not pipes: a created container inherits nexcage's stdio (as
	// with runc), and would hold a pipe open long after nexcage exits.
	stdout, stderr := tempFile(n.T, "stdout"), tempFile(n.T, "stderr")
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	res := Result{Stdout: readAll(n.T, stdout), Stderr: readAll(n.T, stderr)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		n.T.Fatalf("run nexcage %v: %v", args, err)
	}
	return res
}

// Must runs args and fails the test unless nexcage exits 0.
func (n *Nexcage) Must(args ...string) Result {
	n.T.Helper()
	r := n.Run(args...)
	if r.Code != 0 {
		n.T.Fatalf("nexcage %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// Fails runs args and checks the exit code and that stderr contains want.
func (n *Nexcage) Fails(code int, want string, args ...string) Result {
	n.T.Helper()
	r := n.Run(args...)
	if r.Code != code || !strings.Contains(r.Stderr, want) {
		n.T.Fatalf("nexcage %s: want exit %d and %q on stderr, got %s", strings.Join(args, " "), code, want, r)
	}
	return r
}

// CleanupContainer deletes id (force) when the test ends.
func (n *Nexcage) CleanupContainer(id string) {
	n.T.Cleanup(func() {
		if r := n.Run("delete", "--force", id); r.Code != 0 {
			n.T.Errorf("cleanup of %s: %s", id, r)
		}
	})
}

func tempFile(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readAll(t testing.TB, f *os.File) string {
	t.Helper()
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// WriteConfig writes a nexcage config file into a temp dir.
func WriteConfig(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nexcage.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Eventually polls cond every 20ms until it holds or the deadline passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
