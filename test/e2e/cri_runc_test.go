package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// criPodStatus is the part of `crictl inspectp -o json` the tests read.
type criPodStatus struct {
	Status struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
		Linux struct {
			Namespaces struct {
				Options map[string]string `json:"options"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"status"`
	Info struct {
		Pid         int    `json:"pid"`
		RuntimeType string `json:"runtimeType"`
		Config      struct {
			Metadata map[string]any `json:"metadata"`
		} `json:"config"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	} `json:"info"`
}

// netnsPath is the network namespace path CRI gave the sandbox.
func (s criPodStatus) netnsPath() string {
	for _, ns := range s.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			return ns.Path
		}
	}
	return ""
}

// criContainerStatus is the part of `crictl inspect -o json` the tests read.
type criContainerStatus struct {
	Status struct {
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
	} `json:"status"`
	Info struct {
		Pid int `json:"pid"`
	} `json:"info"`
}

// criTwoContainerPod runs the regression pod on handler: a sandbox and two
// busybox containers (an HTTP server and a client), checks localhost
// between them, the pod IP from the test's namespace, exec with exit
// codes and logs, then stop, rm, rmp, and that nothing is left. The
// sandbox and both containers must have been routed to backend. It
// returns the pod's sandbox id.
func criTwoContainerPod(t *testing.T, n *criNode, handler, namespace, backend string) string {
	pod, podCfg := n.runPod(criPod{Name: "web", Namespace: namespace, Handler: handler})
	var ps criPodStatus
	n.inspect("inspectp", pod, &ps)
	if ps.Status.State != "SANDBOX_READY" || ps.Status.Network.IP == "" || ps.Info.Pid == 0 {
		t.Fatalf("pod %s: state %q, ip %q, pid %d", pod, ps.Status.State, ps.Status.Network.IP, ps.Info.Pid)
	}
	ip, netns := ps.Status.Network.IP, ps.netnsPath()
	if !strings.HasPrefix(netns, "/var/run/netns/cni-") && !strings.HasPrefix(netns, "/run/netns/cni-") {
		t.Fatalf("pod netns path %q: want CNI's /var/run/netns/cni-*", netns)
	}

	server := n.createContainer(pod, podCfg, "server", "sh", "-c",
		"mkdir -p /www && echo hello-from-server > /www/index.html && echo server-up && exec httpd -f -p 8080 -h /www")
	client := n.createContainer(pod, podCfg, "client", "sh", "-c", "echo client-up; echo client-err >&2; exec sleep 100000")
	n.mustCrictl("start", server)
	n.mustCrictl("start", client)
	pids := []int{ps.Info.Pid}
	for _, id := range []string{server, client} {
		var cs criContainerStatus
		n.inspect("inspect", id, &cs)
		if cs.Status.State != "CONTAINER_RUNNING" || cs.Info.Pid == 0 {
			t.Fatalf("container %s: state %q pid %d", id, cs.Status.State, cs.Info.Pid)
		}
		pids = append(pids, cs.Info.Pid)
	}
	if found, _ := filepath.Glob("/var/lib/cni/results/nxcri-" + pod + "-*"); len(found) != 1 {
		t.Fatalf("CNI result cache of the running pod: %v (the check after rmp would prove nothing)", found)
	}
	got := n.backends(handler)
	for _, id := range []string{pod, server, client} {
		if got[id] != backend {
			t.Fatalf("nexcage routed %s to %q, want %q (all: %v)", id, got[id], backend, got)
		}
	}

	t.Run("localhost between the containers", func(t *testing.T) {
		var r Result
		Eventually(t, 30*time.Second, "the server to answer on localhost", func() bool {
			r = n.crictl("exec", client, "wget", "-qO-", "http://127.0.0.1:8080/")
			return r.Code == 0 && r.Stdout == "hello-from-server\n"
		})
	})
	t.Run("pod IP from the test namespace", func(t *testing.T) {
		if r := n.inNetns(time.Minute, testutil.BusyboxPath, "wget", "-qO-", "http://"+ip+":8080/"); r.Code != 0 || r.Stdout != "hello-from-server\n" {
			t.Fatalf("wget http://%s:8080/ from the test namespace: %s", ip, r)
		}
	})
	t.Run("exec with exit codes", func(t *testing.T) {
		if r := n.crictl("exec", client, "sh", "-c", "echo exec-out; echo exec-err >&2"); r.Code != 0 || r.Stdout != "exec-out\n" || !strings.Contains(r.Stderr, "exec-err") {
			t.Fatalf("crictl exec: %s", r)
		}
		// crictl 1.37 exits 1 for any failing command; the code is only in
		// its message, streaming (Exec) or not (ExecSync).
		if r := n.crictl("exec", client, "sh", "-c", "exit 7"); r.Code != 1 || !strings.Contains(r.Stderr, "exit code 7") {
			t.Fatalf("crictl exec of exit 7: %s", r)
		}
		if r := n.crictl("exec", "--sync", client, "sh", "-c", "exit 9"); r.Code != 1 || !strings.Contains(r.Stderr, "exited with 9") {
			t.Fatalf("crictl exec --sync of exit 9: %s", r)
		}
		if r := n.crictl("exec", "--sync", client, "sh", "-c", "echo sync-out"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "sync-out\n") {
			t.Fatalf("crictl exec --sync: %s", r)
		}
		if r := n.crictl("exec", server, "cat", "/www/index.html"); r.Code != 0 || r.Stdout != "hello-from-server\n" {
			t.Fatalf("crictl exec in the server: %s", r)
		}
	})
	t.Run("logs", func(t *testing.T) {
		Eventually(t, 10*time.Second, "the containers' logs", func() bool {
			a, b := n.crictl("logs", server), n.crictl("logs", client)
			return a.Code == 0 && strings.Contains(a.Stdout, "server-up") &&
				b.Code == 0 && strings.Contains(b.Stdout, "client-up") && strings.Contains(b.Stderr, "client-err")
		})
	})

	n.mustCrictl("stop", "--timeout", "2", server, client)
	for _, id := range []string{server, client} {
		var cs criContainerStatus
		n.inspect("inspect", id, &cs)
		if cs.Status.State != "CONTAINER_EXITED" {
			t.Fatalf("container %s after stop: %q", id, cs.Status.State)
		}
	}
	n.mustCrictl("rm", server, client)
	n.mustCrictl("stopp", pod)
	n.mustCrictl("rmp", pod)

	// Nothing left: CRI objects, processes, mounts, the pod's netns,
	// nexcage's and runc's state, the shim.
	if out := n.mustCrictl("pods", "-q"); out != "" {
		t.Errorf("pods left: %s", out)
	}
	if out := n.mustCrictl("ps", "-a", "-q"); out != "" {
		t.Errorf("containers left: %s", out)
	}
	for _, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("process %d of the pod still runs", pid)
		}
	}
	for _, id := range []string{pod, server, client} {
		if m := n.mountsMentioning(id); len(m) > 0 {
			t.Errorf("mounts of %s left:\n%s", id, strings.Join(m, "\n"))
		}
	}
	if m := n.mountsMentioning(netns); len(m) > 0 {
		t.Errorf("netns mount %s left: %v", netns, m)
	}
	if _, err := os.Stat(n.pathInNode(netns)); !os.IsNotExist(err) {
		t.Errorf("pod netns %s left: %v", netns, err)
	}
	// libcni's result cache (containerd 1.6 cannot move it off the host's
	// /var/lib/cni) must not keep the pod's entry.
	if left, _ := filepath.Glob("/var/lib/cni/results/nxcri-" + pod + "-*"); len(left) > 0 {
		t.Errorf("CNI result cache of the pod left: %v", left)
	}
	criAssertNoState(t, n.handlers[handler], pod, server, client)
	Eventually(t, 30*time.Second, "the pod's shim to exit", func() bool { return len(shimsOf(n.sock)) == 0 })
	return pod
}

// criAssertNoState checks that nexcage's state root (and runc's below
// it) holds nothing of ids.
func criAssertNoState(t *testing.T, root string, ids ...string) {
	t.Helper()
	var left []string
	for _, dir := range []string{root, root + "/@runc", root + "/@crun"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			for _, id := range ids {
				if strings.Contains(e.Name(), id) {
					left = append(left, dir+"/"+e.Name())
				}
			}
		}
	}
	if len(left) > 0 {
		t.Errorf("state left: %v", left)
	}
}

// TestCRIRuncPod is the regression guard for nexcage under Kubernetes'
// container runtime interface: containerd's CRI plugin, driven by
// crictl, with a RuntimeClass handler whose runtime binary is nexcage
// routing every container to runc.
func TestCRIRuncPod(t *testing.T) {
	cfg := WriteConfig(t, `{"runtime": {"routing": [{"pattern": ".*", "runtime": "runc"}]}}`)
	n := newCRINode(t, []string{"NEXCAGE_CONFIG=" + cfg}, criHandler{Name: "nexcage", Binary: NexcageBin(t)})
	criTwoContainerPod(t, n, "nexcage", "nxtest", "runc")
}
