package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCRIRouting routes Kubernetes pods by their identity through
// containerd's CRI and crictl, with two RuntimeClass handlers on one
// config whose catch-all rule is the Proxmox backend (not available
// here, so a container wrongly routed there fails):
//   - "nexcage-runc": BinaryName is a link named nexcage-runc, which forces
//     runc for the whole pod;
//   - "nexcage": the pod of namespace nx-crun goes to crun by a
//     pod_namespace + container_type "sandbox" rule, and its app
//     containers (no rule sends them there) follow their sandbox;
//
// a container rule that would split a pod is refused by name, and
// `nexcage route --bundle` explains a live sandbox's decision.
func TestCRIRouting(t *testing.T) {
	cfg := WriteConfig(t, `{"runtime": {"routing": [
		{"pod_namespace": "nx-crun", "container_type": "sandbox", "runtime": "crun"},
		{"pod_namespace": "nx-crun", "container_name": "pinned", "runtime": "runc"},
		{"pattern": ".*", "runtime": "lxc"}]}}`)
	link := filepath.Join(t.TempDir(), "nexcage-runc")
	if err := os.Symlink(NexcageBin(t), link); err != nil {
		t.Fatal(err)
	}
	n := newCRINode(t, []string{"NEXCAGE_CONFIG=" + cfg},
		criHandler{Name: "nexcage", Binary: NexcageBin(t)}, criHandler{Name: "nexcage-runc", Binary: link})

	t.Run("a nexcage-runc link forces runc", func(t *testing.T) {
		criTwoContainerPod(t, n, "nexcage-runc", "nx-any", "runc")
	})
	t.Run("a pod rule sends the sandbox to crun and its containers follow", func(t *testing.T) {
		criTwoContainerPod(t, n, "nexcage", "nx-crun", "crun")
	})
	t.Run("route --bundle and a container rule that would split the pod", func(t *testing.T) {
		pod, podCfg := n.runPod(criPod{Name: "split", Namespace: "nx-crun", Handler: "nexcage"})
		defer func() {
			n.mustCrictl("stopp", pod)
			n.mustCrictl("rmp", pod)
		}()
		bundle := filepath.Join(n.dir, "state", "io.containerd.runtime.v2.task", criNamespace, pod)
		r := (&Nexcage{T: t, Bin: NexcageBin(t), Globals: []string{"--root", n.handlers["nexcage"], "--config", cfg}}).
			Must("route", "--bundle", bundle)
		if want := pod + ` -> crun (rule 0 (pod_namespace "nx-crun", container_type "sandbox"))` + "\n"; r.Stdout != want {
			t.Fatalf("route --bundle of the sandbox: %q, want %q", r.Stdout, want)
		}
		ctrCfg := filepath.Join(t.TempDir(), "pinned.json")
		writeJSON(t, ctrCfg, map[string]any{"metadata": map[string]any{"name": "pinned"}, "image": map[string]any{"image": ctrImage},
			"command": []string{"sleep", "100"}, "log_path": "pinned.log", "linux": map[string]any{}})
		// CRI's CreateContainer only records the container; the runtime's
		// create runs at start.
		id := n.mustCrictl("create", pod, ctrCfg, podCfg)
		defer n.mustCrictl("rm", id)
		res := n.crictl("start", id)
		if res.Code == 0 || !strings.Contains(res.Stderr, `of pod nx-crun/split): routing rule 1 (pod_namespace`) ||
			!strings.Contains(res.Stderr, `sends it to runc, but its pod runs on crun`) {
			t.Fatalf("crictl start of a container a rule would move off its pod's backend: %s", res)
		}
	})
}
