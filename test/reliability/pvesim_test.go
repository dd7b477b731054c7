package reliability

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/testutil"
)

// simNode is a pvesim node (the simulated Proxmox host) and the nexcage
// config that targets it through the Proxmox LXC backend.
type simNode struct {
	root string   // PVESIM_ROOT
	bin  string   // directory holding pct, pveam, pvesh
	env  []string // PVESIM_* variables for nexcage and pct
}

// newSimNode initialises a pvesim node under a test temp dir.
func newSimNode(t testing.TB) *simNode {
	t.Helper()
	sim := testutil.PvesimBin(t)
	// An unprivileged container's root (an unmapped host uid) must
	// traverse the test's temp root to reach its rootfs, bundle and mount
	// sources, as on a real host.
	n := &simNode{root: filepath.Join(testutil.ContainerTempDir(t), "pve"), bin: t.TempDir()}
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
		if err := os.Symlink(sim, filepath.Join(n.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(n.root, 0o755); err != nil {
		t.Fatal(err)
	}
	n.env = []string{"PVESIM_ROOT=" + n.root, "PVESIM_LOCK_TIMEOUT_MS=500"}
	cmd := exec.Command(sim, "init")
	cmd.Env = append(os.Environ(), n.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pvesim init: %v\n%s", err, out)
	}
	t.Cleanup(func() { n.destroyAll(t) })
	return n
}

// proxmoxConfig is the nexcage config section that drives this node.
func (n *simNode) proxmoxConfig() map[string]any {
	return map[string]any{
		"proxmox": map[string]any{
			"pct_path":        filepath.Join(n.bin, "pct"),
			"pveam_path":      filepath.Join(n.bin, "pveam"),
			"pvesh_path":      filepath.Join(n.bin, "pvesh"),
			"pveversion_path": filepath.Join(n.bin, "pveversion"),
			"etc_pve":         filepath.Join(n.root, "etc/pve"),
			"lxc_path":        filepath.Join(n.root, "var/lib/lxc"),
			"lock_dir":        filepath.Join(n.root, "run/lock/lxc"),
			"node":            "pve",
			"timeout":         60,
		},
		"storage":          map[string]any{"image_path": filepath.Join(n.root, "nexcage-images")},
		"container_config": map[string]any{"default_container_type": "lxc"},
	}
}

func (n *simNode) confDir() string { return filepath.Join(n.root, "etc/pve/nodes/pve/lxc") }

// vmids lists the VMIDs registered in the cluster's .vmlist.
func (n *simNode) vmids(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.root, "etc/pve/.vmlist"))
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		IDs map[string]any `json:"ids"`
	}
	if err := json.Unmarshal(data, &l); err != nil {
		t.Fatalf(".vmlist: %v", err)
	}
	var out []string
	for k := range l.IDs {
		out = append(out, k)
	}
	return out
}

// pct runs the simulated pct.
func (n *simNode) pct(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(n.bin, "pct"), args...)
	cmd.Env = append(os.Environ(), n.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// destroyAll removes every container left on the node, so no LXC
// container outlives a failed test, and reports each one.
func (n *simNode) destroyAll(t testing.TB) {
	ents, _ := os.ReadDir(n.confDir())
	for _, e := range ents {
		vmid := strings.TrimSuffix(e.Name(), ".conf")
		t.Errorf("container %s left on the simulated node; destroying it", vmid)
		_, _ = n.pct("unlock", vmid)
		_, _ = n.pct("stop", vmid)
		if out, err := n.pct("destroy", vmid, "--purge", "1"); err != nil {
			t.Errorf("pct destroy %s: %v %s", vmid, err, out)
		}
	}
}
