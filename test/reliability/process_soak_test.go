package reliability

import (
	"flag"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

var processSoakDuration = flag.Duration("psoak.duration", 60*time.Second,
	"how long TestProcessSoak runs bench/soak (`nexcage list` with 1000 containers)")

// TestProcessSoak runs the process-level soak (bench/soak) against the
// built nexcage and pvesim: repeated `nexcage list` with 1000 containers
// must leave no process, temp file, lock file, state or LXC directory
// behind and keep its peak RSS flat. Its figures are in the test log.
func TestProcessSoak(t *testing.T) {
	soak := filepath.Join(t.TempDir(), "soak")
	build := exec.Command("go", "build", "-o", soak, "./bench/soak")
	build.Dir = testutil.ModuleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./bench/soak: %v\n%s", err, out)
	}
	cmd := exec.Command(soak, "-nexcage", testutil.NexcageBin(t), "-pvesim", testutil.PvesimBin(t), "-duration", processSoakDuration.String())
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("bench/soak: %v", err)
	}
}
