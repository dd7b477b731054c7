package pvesim

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any leave a goroutine behind
// (exec's stdio copiers of lxc-attach, lock waiters, ...). The test binary
// doubles as pvesim: run through a symlink named pct it is pct, and pct
// re-executes it as its task worker (worker_test.go).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "pct" || (len(os.Args) > 1 && os.Args[1] == workerTool) {
		os.Exit(Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}
