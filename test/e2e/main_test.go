// Package e2e drives the built nexcage (and pvesim) binaries end to end.
// `make e2e` passes NEXCAGE_BIN and PVESIM_BIN; without them the tests
// build the binaries themselves, so `go test ./...` works too.
package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.RunMain(m)) }

// NexcageBin is the nexcage binary under test.
func NexcageBin(t testing.TB) string { return testutil.NexcageBin(t) }

// PvesimBin is the pvesim binary (pct, pveam, pvesh by argv[0]).
func PvesimBin(t testing.TB) string { return testutil.PvesimBin(t) }

// moduleRoot is the repository root.
func moduleRoot(t testing.TB) string { return testutil.ModuleRoot(t) }

// Result of one nexcage run.
type Result = testutil.Result

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
	return testutil.RunIn(n.T, n.Dir, n.Bin, n.Env, append(append([]string{}, n.Globals...), args...)...)
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
