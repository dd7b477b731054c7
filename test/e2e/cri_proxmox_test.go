package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerdProxmoxCRIPodRefused: a pod whose RuntimeClass handler
// runs nexcage as nexcage-proxmox (pvesim's node) is refused at runp by
// name, with the reason and the way out, and leaves nothing behind:
// Proxmox pods are not built yet (docs/KUBERNETES.md). Its name puts it
// in make e2e's PVE 8.4 run as well.
func TestContainerdProxmoxCRIPodRefused(t *testing.T) {
	e := newPveEnv(t, false, "")
	link := filepath.Join(t.TempDir(), "nexcage-proxmox")
	if err := os.Symlink(NexcageBin(t), link); err != nil {
		t.Fatal(err)
	}
	n := newCRINode(t, append([]string{"NEXCAGE_CONFIG=" + e.config}, e.env...), criHandler{Name: "proxmox", Binary: link})
	logDir := filepath.Join(n.dir, "logs", "lab_web")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	podCfg := filepath.Join(t.TempDir(), "pod.json")
	writeJSON(t, podCfg, map[string]any{"metadata": map[string]any{"name": "web", "namespace": "lab", "uid": randHex(t, 8)},
		"log_directory": logDir, "linux": map[string]any{}})
	r := n.crictl("runp", "--runtime", "proxmox", podCfg)
	if r.Code == 0 || !strings.Contains(r.Stderr, "the sandbox (pause container) of Kubernetes pod lab/web: Kubernetes pods cannot run on the Proxmox backend yet") {
		t.Fatalf("crictl runp on the Proxmox backend: %s", r)
	}
	if calls := e.pctCalls(); calls["create"] != 0 {
		t.Errorf("pct calls for a refused pod: %v", calls)
	}
	if out := n.mustCrictl("pods", "-q"); out != "" {
		t.Errorf("pods left: %s", out)
	}
	e.assertNothingLeftOn(t, n.handlers["proxmox"], "after the refused runp")
}
