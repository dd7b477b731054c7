package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles nexcage (the front binary and, next to it, the full
// command line nexcage-core it execs) and pvesim into dir with the go tool (run from
// inside the module) and returns their paths.
func Build(dir string) (nexcage, pvesim string, err error) {
	nexcage, pvesim = filepath.Join(dir, "nexcage"), filepath.Join(dir, "pvesim")
	for bin, pkg := range map[string]string{nexcage: "github.com/nexcage/nexcage/cmd/nexcage", pvesim: "github.com/nexcage/nexcage/cmd/pvesim",
		filepath.Join(dir, "nexcage-core"): "github.com/nexcage/nexcage/cmd/nexcage-core"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		// Static, as make build does: the Proxmox backend copies nexcage
		// into containers as their init helper.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nexcage, pvesim, nil
}
