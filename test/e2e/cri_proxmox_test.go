package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// TestContainerdProxmoxCRIPodSandbox: a pod whose RuntimeClass handler
// runs nexcage as nexcage-proxmox (pvesim's node) is ONE Proxmox
// container: crictl runp creates exactly one CT (one .conf) whose
// network is the CNI interface of the pod's namespace, taken over as an
// LXC phys interface (no net0), so the pod IP containerd reports answers
// from the test's namespace and the CNI namespace no longer holds eth0.
// An app container asking for what a pod's CT cannot give (a device) is
// refused by name (at start, where containerd 1.6 runs the runtime's
// create), leaving nothing. stopp gives the
// interface back (CNI's DEL removes it: no link of it is left in the
// test's namespace) and rmp destroys the CT: nothing is left on the
// node. Its name puts it in make e2e's PVE 8.4 run as well.
func TestContainerdProxmoxCRIPodSandbox(t *testing.T) {
	e := newPveEnv(t, false, "")
	link := filepath.Join(t.TempDir(), "nexcage-proxmox")
	if err := os.Symlink(NexcageBin(t), link); err != nil {
		t.Fatal(err)
	}
	n := newCRINode(t, append([]string{"NEXCAGE_CONFIG=" + e.config}, e.env...), criHandler{Name: "proxmox", Binary: link})
	linksBefore := n.inNetns(time.Minute, "ip", "-o", "link", "show").Stdout

	pod, podCfg := n.runPod(criPod{Name: "web", Namespace: "lab", Handler: "proxmox"})
	var ps criPodStatus
	n.inspect("inspectp", pod, &ps)
	ip, netns := ps.Status.Network.IP, ps.netnsPath()
	if ps.Status.State != "SANDBOX_READY" || ip == "" || ps.Info.Pid == 0 || netns == "" {
		t.Fatalf("pod %s: state %q, ip %q, pid %d, netns %q", pod, ps.Status.State, ip, ps.Info.Pid, netns)
	}
	if got := n.backends("proxmox"); got[pod] != "proxmox-lxc" {
		t.Fatalf("nexcage routed the sandbox %s to %q, want proxmox-lxc", pod, got[pod])
	}

	t.Run("one Proxmox container with the CNI interface", func(t *testing.T) {
		confs, _ := filepath.Glob(filepath.Join(e.confDir(), "*.conf"))
		if len(confs) != 1 {
			t.Fatalf("Proxmox containers for the pod: %v, want exactly one", confs)
		}
		data, err := os.ReadFile(confs[0])
		if err != nil {
			t.Fatal(err)
		}
		conf := string(data)
		if strings.Contains(conf, "\nnet0:") || !strings.Contains(conf, "lxc.net.32.type: phys\n") || !strings.Contains(conf, "lxc.net.32.name: eth0\n") {
			t.Fatalf("the pod's CT config has no phys eth0 or has a net0:\n%s", conf)
		}
		// eth0 left CNI's namespace (it is the CT's now).
		if r := runTimeout(t, time.Minute, "nsenter", "--net="+n.pathInNode(netns), "ip", "link", "show", "eth0"); r.Code == 0 {
			t.Fatalf("eth0 is still in the pod's CNI namespace: %s", r)
		}
	})
	t.Run("pod IP from the test namespace", func(t *testing.T) {
		var r Result
		Eventually(t, 30*time.Second, "the pod IP "+ip+" to answer", func() bool {
			r = n.inNetns(time.Minute, testutil.BusyboxPath, "ping", "-c", "1", "-W", "2", ip)
			return r.Code == 0
		})
	})
	t.Run("what a pod's app container cannot have is refused by name", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "container.json")
		writeJSON(t, cfg, map[string]any{"metadata": map[string]any{"name": "app"}, "image": map[string]any{"image": ctrImage},
			"command": []string{"sleep", "100"}, "log_path": "app.log", "linux": map[string]any{},
			"devices": []map[string]any{{"container_path": "/dev/xnull", "host_path": "/dev/null", "permissions": "rwm"}}})
		// containerd 1.6 calls the runtime's create at StartContainer.
		ctr := n.mustCrictl("create", pod, cfg, podCfg)
		r := n.crictl("start", ctr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "container app of Kubernetes pod lab/web: devices and sysctls (linux.devices, linux.sysctl) are not given to a pod's app container") {
			t.Fatalf("crictl start of a container with a device in a Proxmox pod: %s", r)
		}
		n.mustCrictl("rm", ctr)
		if got := n.backends("proxmox"); len(got) != 1 {
			t.Fatalf("nexcage state after the refused container: %v, want the sandbox only", got)
		}
	})

	t.Run("a container that fails inside the CT leaves nothing", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "container.json")
		writeJSON(t, cfg, map[string]any{"metadata": map[string]any{"name": "broken"}, "image": map[string]any{"image": ctrImage},
			"command": []string{"/no/such/program"}, "log_path": "broken.log", "linux": map[string]any{}})
		ctr := n.mustCrictl("create", pod, cfg, podCfg)
		r := n.crictl("start", ctr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "/no/such/program") {
			t.Fatalf("crictl start of a missing program in a Proxmox pod: %s", r)
		}
		n.mustCrictl("rm", ctr)
		if got := n.backends("proxmox"); len(got) != 1 {
			t.Fatalf("nexcage state after the failed container: %v, want the sandbox only", got)
		}
		if ents, _ := filepath.Glob(filepath.Join(e.root, "var/lib/lxc/.nexcage/pod-*")); len(ents) > 0 {
			t.Fatalf("pod container directories left: %v", ents)
		}
	})

	n.mustCrictl("stopp", pod)
	// The interface went back and CNI's DEL removed it with its peer:
	// the test namespace has the links it had before the pod.
	if after := n.inNetns(time.Minute, "ip", "-o", "link", "show").Stdout; linkNames(after) != linkNames(linksBefore) {
		t.Errorf("links of the test namespace after stopp:\n%s\nbefore the pod:\n%s", after, linksBefore)
	}
	n.mustCrictl("rmp", pod)
	if out := n.mustCrictl("pods", "-q"); out != "" {
		t.Errorf("pods left: %s", out)
	}
	if pidAlive(ps.Info.Pid) {
		t.Errorf("the sandbox's process %d still runs", ps.Info.Pid)
	}
	if m := n.mountsMentioning(pod); len(m) > 0 {
		t.Errorf("mounts of %s left:\n%s", pod, strings.Join(m, "\n"))
	}
	if _, err := os.Stat(n.pathInNode(netns)); !os.IsNotExist(err) {
		t.Errorf("pod netns %s left: %v", netns, err)
	}
	if left, _ := filepath.Glob("/var/lib/cni/results/nxcri-" + pod + "-*"); len(left) > 0 {
		t.Errorf("CNI result cache of the pod left: %v", left)
	}
	e.assertNothingLeftOn(t, n.handlers["proxmox"], "after rmp")
	Eventually(t, 30*time.Second, "the pod's shim to exit", func() bool { return len(shimsOf(n.sock)) == 0 })
}

// linkNames is the sorted list of interface names in `ip -o link show`
// output, without the bridge's own (the bridge outlives the pod).
func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "nxcri0" {
			names = append(names, name)
		}
	}
	return strings.Join(names, " ")
}

// TestContainerdProxmoxCRIPod is issue 17's Done-when on the Proxmox
// backend: the two-container regression pod (an HTTP server and a
// client) on a nexcage-proxmox handler is exactly one Proxmox container
// while it runs; the containers reach each other on localhost, the pod
// IP answers from the test's namespace, exec (with exit codes) and logs
// work, and nothing is left on the node after rmp. A third container
// from a second image, as another user, sees its own rootfs and user and
// reaches the server on localhost too.
func TestContainerdProxmoxCRIPod(t *testing.T) {
	e := newPveEnv(t, false, "")
	link := filepath.Join(t.TempDir(), "nexcage-proxmox")
	if err := os.Symlink(NexcageBin(t), link); err != nil {
		t.Fatal(err)
	}
	n := newCRINode(t, append([]string{"NEXCAGE_CONFIG=" + e.config}, e.env...), criHandler{Name: "proxmox", Binary: link})
	const second = "localhost/nexcage-second:latest"
	rootfs := t.TempDir()
	testutil.BusyboxRootfs(t, rootfs)
	if err := os.WriteFile(filepath.Join(rootfs, "image-two"), []byte("second image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := ociArchive(t, rootfs, second, map[string]any{"Cmd": []string{"sh"}, "Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}})
	if r := runTimeout(t, 2*time.Minute, "ctr", "-a", n.sock, "-n", criNamespace, "images", "import", archive); r.Code != 0 {
		t.Fatalf("ctr images import: %s", r)
	}
	criTwoContainerPod(t, n, "proxmox", "lab", "proxmox-lxc", func(pod string) {
		if confs, _ := filepath.Glob(filepath.Join(e.confDir(), "*.conf")); len(confs) != 1 {
			t.Fatalf("Proxmox containers for the running pod: %v, want exactly one", confs)
		}
		var ps criPodStatus
		n.inspect("inspectp", pod, &ps)
		client := n.mustCrictl("ps", "-q", "--pod", pod, "--name", "client")
		cfgDir := t.TempDir()
		pc := filepath.Join(cfgDir, "pod.json")
		writeJSON(t, pc, map[string]any{"metadata": ps.Info.Config.Metadata, "log_directory": filepath.Join(n.dir, "logs", "lab_web"), "linux": map[string]any{}})
		cc := filepath.Join(cfgDir, "other.json")
		writeJSON(t, cc, map[string]any{"metadata": map[string]any{"name": "other"}, "image": map[string]any{"image": second},
			"command": []string{"sh", "-c", "echo other-up; exec sleep 100000"}, "log_path": "other.log",
			"linux": map[string]any{"security_context": map[string]any{"run_as_user": map[string]any{"value": 1000}}}})
		other := n.mustCrictl("create", pod, cc, pc)
		n.mustCrictl("start", other)
		if r := n.crictl("exec", other, "sh", "-c", "id -u; cat /image-two"); r.Code != 0 || r.Stdout != "1000\nsecond image\n" {
			t.Errorf("the second image's container (user and rootfs): %s", r)
		}
		if r := n.crictl("exec", client, "sh", "-c", "id -u; test -e /image-two || echo no-image-two"); r.Code != 0 || r.Stdout != "0\nno-image-two\n" {
			t.Errorf("the client's user and rootfs: %s", r)
		}
		var r Result
		Eventually(t, 30*time.Second, "the server to answer the second image's container on localhost", func() bool {
			r = n.crictl("exec", other, "wget", "-qO-", "http://127.0.0.1:8080/")
			return r.Code == 0 && r.Stdout == "hello-from-server\n"
		})
		n.mustCrictl("stop", "--timeout", "2", other)
		n.mustCrictl("rm", other)
	})
	e.assertNothingLeftOn(t, n.handlers["proxmox"], "after rmp")
}
