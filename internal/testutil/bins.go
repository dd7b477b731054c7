package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Packages of the binaries the end-to-end tests run.
const (
	NexcagePkg = "github.com/nexcage/nexcage/cmd/nexcage"
	PvesimPkg  = "github.com/nexcage/nexcage/cmd/pvesim"
	// NexcageCorePkg is the full command line the nexcage front binary
	// execs, built next to it as NexcageCoreName.
	NexcageCorePkg  = "github.com/nexcage/nexcage/cmd/nexcage-core"
	NexcageCoreName = "nexcage-core"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]*builtBinary{}
)

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// RunMain runs the tests of m and then removes the binaries Binary built;
// call it from TestMain: os.Exit(testutil.RunMain(m)).
// A test binary started by LocalUser.Action runs that action instead.
func RunMain(m *testing.M) int {
	if code, ok := runAction(); ok {
		return code
	}
	code := m.Run()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
		buildDir = ""
	}
	built = map[string]*builtBinary{}
	return code
}

// Binary returns $envVar when set (make e2e passes the binaries it built),
// else builds pkg into a temp dir, once per test process; an empty envVar
// always builds. Builds are static (CGO_ENABLED=0), as `make build` makes
// nexcage: the Proxmox backend mounts nexcage into containers as their
// init helper, where no host libc exists.
func Binary(t testing.TB, envVar, pkg, name string) string {
	t.Helper()
	if envVar != "" {
		if p := os.Getenv(envVar); p != "" {
			return p
		}
	}
	buildMu.Lock()
	b, ok := built[pkg]
	if !ok {
		b = &builtBinary{}
		built[pkg] = b
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "nexcage-test-bin-")
		if err != nil {
			buildMu.Unlock()
			t.Fatal(err)
		}
		buildDir = dir
	}
	dir := buildDir
	buildMu.Unlock()
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		p := filepath.Join(dir, name)
		builds := [][2]string{{p, pkg}}
		if pkg == NexcagePkg {
			// The front binary execs the full command line from its
			// own directory (internal/fastpath).
			builds = append(builds, [2]string{filepath.Join(dir, NexcageCoreName), NexcageCorePkg})
		}
		for _, bld := range builds {
			cmd := exec.Command("go", "build", "-o", bld[0], bld[1])
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", bld[1], err, out)
				return
			}
		}
		b.path = p
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// NexcageBin is the nexcage under test: $NEXCAGE_BIN or a static build.
func NexcageBin(t testing.TB) string { return Binary(t, "NEXCAGE_BIN", NexcagePkg, "nexcage") }

// PvesimBin is pvesim (pct, pveam, pvesh by argv[0]): $PVESIM_BIN or a
// build.
func PvesimBin(t testing.TB) string { return Binary(t, "PVESIM_BIN", PvesimPkg, "pvesim") }

// ModuleRoot is the repository root: the nearest directory above the
// working directory (a test's package directory) holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Result is the outcome of one command run.
type Result struct {
	Code           int
	Stdout, Stderr string
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

// Run runs bin with args, env added to the environment, in the current
// directory. See RunIn.
func Run(t testing.TB, bin string, env []string, args ...string) Result {
	t.Helper()
	return RunIn(t, "", bin, env, args...)
}

// RunIn runs bin with args in dir (empty: the current directory), env
// added to the environment, and returns its exit code and output. stdout
// and stderr go to files, not pipes: a container created by the command
// inherits its stdio (as with runc) and would hold a pipe open long after
// the command exits. Only a command that cannot be run fails the test.
func RunIn(t testing.TB, dir, bin string, env []string, args ...string) Result {
	t.Helper()
	tmp := t.TempDir()
	stdout, err := os.Create(filepath.Join(tmp, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(tmp, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	var res Result
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("run %s %q: %v", bin, args, err)
	}
	o, err := os.ReadFile(stdout.Name())
	if err != nil {
		t.Fatal(err)
	}
	e, err := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	res.Stdout, res.Stderr = string(o), string(e)
	return res
}

// ContainerTempDir returns a new temp dir of t that an unprivileged LXC
// container's root (a mapped, unprivileged host uid) can traverse, as it
// must to reach its rootfs and bind-mount sources under it. The testing
// package makes a test's temp root 0700 (its numbered subdirectories are
// 0755); ContainerTempDir opens the root to 0755, as /var/lib is on a
// real host.
func ContainerTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WritableDir makes the directory p writable by anyone (0777 whatever
// the umask): an unprivileged container's root is an unmapped user on
// the host, and writes into a bind of p.
func WritableDir(t testing.TB, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o777); err != nil {
		t.Fatal(err)
	}
}
