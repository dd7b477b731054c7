package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// CRI test images, imported into containerd's k8s.io namespace.
const (
	criPauseImage = "localhost/nexcage-pause:latest"
	criNamespace  = "k8s.io"
	// criCNIBin is where Debian's containernetworking-plugins installs
	// the CNI plugins.
	criCNIBin = "/usr/lib/cni"
	// criPausePkg is the tests' pause program (a static Go binary).
	criPausePkg = "github.com/nexcage/nexcage/test/e2e/testdata/pause"
)

// criHandler is one containerd runtime (a Kubernetes RuntimeClass
// handler) whose runc v2 shims run Binary as their runc.
type criHandler struct {
	Name   string
	Binary string
}

// criNode is a private containerd with its CRI plugin on (own config,
// root, state and socket under a temp dir), running in a network
// namespace the test created, with a CNI bridge + host-local network
// that exists only in that namespace. crictl talks to it from inside the
// namespace (its streaming server, used by exec, listens on that
// namespace's loopback).
type criNode struct {
	t         *testing.T
	dir       string
	sock      string
	netns     string
	crictlBin string
	handlers  map[string]string // handler name -> nexcage --root given by the shim (Root/k8s.io)
	cmd       *exec.Cmd
	exited    chan struct{}
	logFile   string
}

// criCrictl is the crictl the tests drive: $CRICTL_BIN, else bin/crictl
// (what `make deps` builds from sigs.k8s.io/cri-tools), else PATH.
func criCrictl(t *testing.T) string {
	if p := os.Getenv("CRICTL_BIN"); p != "" {
		return p
	}
	if p := filepath.Join(moduleRoot(t), "bin", "crictl"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("crictl")
	if err != nil {
		t.Fatalf("crictl is required: run `make deps` (builds bin/crictl from sigs.k8s.io/cri-tools) or set CRICTL_BIN")
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newCRINode starts containerd's CRI with the given handlers, env added
// to containerd's environment (shims and nexcage inherit it), and the
// pause and busybox images imported.
func newCRINode(t *testing.T, env []string, handlers ...criHandler) *criNode {
	t.Helper()
	for _, tool := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (make deps): %v", tool, err)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if !fileExists(filepath.Join(criCNIBin, p)) {
			t.Fatalf("CNI plugin %s/%s is required (apt-get install containernetworking-plugins, or make deps)", criCNIBin, p)
		}
	}
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "nxcri-")
	if err != nil {
		t.Fatal(err)
	}
	n := &criNode{t: t, dir: dir, sock: filepath.Join(dir, "ctd.sock"), crictlBin: criCrictl(t),
		handlers: map[string]string{}, exited: make(chan struct{}), logFile: filepath.Join(dir, "containerd.log")}
	t.Cleanup(n.stop)

	n.netns = "nxcri-" + randHex(t, 4)
	if out, err := exec.Command("ip", "netns", "add", n.netns).CombinedOutput(); err != nil {
		n.netns = ""
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", n.netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", n.netns, err, out)
	}

	crictlCfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\n", n.sock, n.sock)
	if err := os.WriteFile(filepath.Join(dir, "crictl.yaml"), []byte(crictlCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cniDir := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The bridge and its subnet exist only inside n.netns.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "nxcri",
  "plugins": [{
    "type": "bridge", "bridge": "nxcri0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.250.7.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
`, filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(cniDir, "10-nxcri.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}

	var rt strings.Builder
	for _, h := range handlers {
		root := filepath.Join(dir, "nx-"+h.Name)
		n.handlers[h.Name] = filepath.Join(root, criNamespace)
		fmt.Fprintf(&rt, `
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]s]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]s.options]
        BinaryName = %[2]q
        Root = %[3]q
`, h.Name, h.Binary, root)
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # This machine may not lower oom_score_adj (e.g. it is itself a
  # container): clamp the pause container's -998 to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %q
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), n.sock, n.sock+".ttrpc",
		criPauseImage, criCNIBin, cniDir, filepath.Join(dir, "runc"), rt.String())
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(n.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// containerd runs in the namespace and in a mount namespace of its
	// own (a slave of the host's): the netns mounts CRI makes for pods
	// stay private to it, its shims and their runtimes. Not `ip netns
	// exec`: it mounts a new /sys, hiding the cgroup mounts runc needs.
	n.cmd = exec.Command("unshare", "--mount", "--propagation", "slave",
		"nsenter", "--net=/run/netns/"+n.netns, "containerd", "--config", cfgPath)
	n.cmd.Env = append(os.Environ(), env...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	Eventually(t, 60*time.Second, "containerd's CRI to serve", func() bool {
		select {
		case <-n.exited:
			t.Fatalf("containerd exited:\n%s", n.log())
		default:
		}
		return n.crictlTimeout(30*time.Second, "info").Code == 0
	})

	pauseRoot := t.TempDir()
	pause := testutil.Binary(t, "", criPausePkg, "nexcage-pause")
	data, err := os.ReadFile(pause)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pauseRoot, "pause"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, archive := range []string{
		ociArchive(t, pauseRoot, criPauseImage, map[string]any{"Entrypoint": []string{"/pause"}}),
		busyboxOCIArchive(t),
	} {
		if r := runTimeout(t, 2*time.Minute, "ctr", "-a", n.sock, "-n", criNamespace, "images", "import", archive); r.Code != 0 {
			t.Fatalf("ctr images import: %s", r)
		}
	}
	return n
}

func (n *criNode) log() string {
	data, _ := os.ReadFile(n.logFile)
	return string(data)
}

// crictl runs crictl against this node from inside its network namespace.
func (n *criNode) crictl(args ...string) Result {
	n.t.Helper()
	return n.crictlTimeout(3*time.Minute, args...)
}

func (n *criNode) crictlTimeout(timeout time.Duration, args ...string) Result {
	n.t.Helper()
	// Its own config file: never the host's /etc/crictl.yaml.
	argv := append([]string{"netns", "exec", n.netns, n.crictlBin, "--config", filepath.Join(n.dir, "crictl.yaml"), "--runtime-endpoint", "unix://" + n.sock,
		"--image-endpoint", "unix://" + n.sock, "--timeout", "2m"}, args...)
	return runTimeout(n.t, timeout, "ip", argv...)
}

// mustCrictl runs crictl and fails the test unless it exits 0; it returns
// stdout without its trailing newline.
func (n *criNode) mustCrictl(args ...string) string {
	n.t.Helper()
	r := n.crictl(args...)
	if r.Code != 0 {
		n.t.Fatalf("crictl %s: %s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.Stdout)
}

// inNetns runs argv inside the node's network namespace.
func (n *criNode) inNetns(timeout time.Duration, argv ...string) Result {
	n.t.Helper()
	return runTimeout(n.t, timeout, "ip", append([]string{"netns", "exec", n.netns}, argv...)...)
}

// criPod is what a test asks crictl runp for.
type criPod struct {
	Name, Namespace string
	Handler         string
}

// runPod writes the pod config and runs `crictl runp --runtime <handler>`,
// returning the sandbox id and the config file (crictl create needs it).
func (n *criNode) runPod(p criPod) (id, config string) {
	n.t.Helper()
	logDir := filepath.Join(n.dir, "logs", p.Namespace+"_"+p.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	config = filepath.Join(n.t.TempDir(), "pod.json")
	writeJSON(n.t, config, map[string]any{
		"metadata":      map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": randHex(n.t, 8), "attempt": 0},
		"hostname":      p.Name,
		"log_directory": logDir,
		"linux":         map[string]any{},
	})
	return n.mustCrictl("runp", "--runtime", p.Handler, config), config
}

// createContainer creates (not starts) a busybox container named name in
// pod running args; it returns the container id.
func (n *criNode) createContainer(pod, podConfig, name string, args ...string) string {
	n.t.Helper()
	cfg := filepath.Join(n.t.TempDir(), "container.json")
	writeJSON(n.t, cfg, map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": ctrImage},
		"command":  args,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
	return n.mustCrictl("create", pod, cfg, podConfig)
}

// inspect runs `crictl inspect[p] -o json id` and decodes it into v.
func (n *criNode) inspect(verb, id string, v any) {
	n.t.Helper()
	out := n.mustCrictl(verb, "-o", "json", id)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		n.t.Fatalf("crictl %s %s: %v\n%s", verb, id, err, out)
	}
}

// backends is `nexcage list` of handler's state root: container id ->
// the backend nexcage routed it to.
func (n *criNode) backends(handler string) map[string]string {
	n.t.Helper()
	r := &Nexcage{T: n.t, Bin: NexcageBin(n.t), Globals: []string{"--root", n.handlers[handler], "--config", WriteConfig(n.t, `{}`)}}
	out := r.Must("list", "--format", "json")
	var list []struct{ ID, Backend string }
	if err := json.Unmarshal([]byte(out.Stdout), &list); err != nil {
		n.t.Fatalf("nexcage list: %v\n%s", err, out.Stdout)
	}
	m := map[string]string{}
	for _, c := range list {
		m[c.ID] = c.Backend
	}
	return m
}

// containerdPid is the pid of containerd (unshare and nsenter exec it).
func (n *criNode) containerdPid() int { return n.cmd.Process.Pid }

// mountsMentioning lists the mounts of containerd's mount namespace
// whose mount point or source contains s.
func (n *criNode) mountsMentioning(s string) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", n.containerdPid()))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// pathInNode is p as containerd sees it (its mount namespace).
func (n *criNode) pathInNode(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", n.containerdPid(), p)
}

// stop removes what is left (pods first), stops containerd, kills shims
// it left, deletes the namespace and the directory.
func (n *criNode) stop() {
	t := n.t
	if n.cmd != nil {
		select {
		case <-n.exited:
		default:
			if r := n.crictlTimeout(2*time.Minute, "pods", "-q"); r.Code == 0 {
				for _, id := range strings.Fields(r.Stdout) {
					t.Errorf("pod %s left at the end of the test; removing it", id)
					n.crictlTimeout(2*time.Minute, "stopp", id)
					n.crictlTimeout(2*time.Minute, "rmp", "-f", id)
				}
			}
			_ = syscall.Kill(n.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-n.exited:
			case <-time.After(20 * time.Second):
				_ = syscall.Kill(n.cmd.Process.Pid, syscall.SIGKILL)
				<-n.exited
			}
		}
		for _, pid := range shimsOf(n.sock) {
			t.Errorf("containerd shim %d left running; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if n.netns != "" {
		if out, err := exec.Command("ip", "netns", "del", n.netns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.netns, err, out)
		}
	}
	if t.Failed() {
		t.Logf("containerd log:\n%s", n.log())
	}
	unmountUnder(t, n.dir)
	if err := os.RemoveAll(n.dir); err != nil {
		t.Errorf("cleanup of the CRI node's dir: %v", err)
	}
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runTimeout runs name with args, killing it after timeout (a test
// failure), and returns its output and exit code.
func runTimeout(t testing.TB, timeout time.Duration, name string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(name, args...)
	stdout, stderr := tempFile(t, "stdout"), tempFile(t, "stderr")
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not finish in %v; stdout %q stderr %q", name, args, timeout, readAll(t, stdout), readAll(t, stderr))
	}
	res := Result{Stdout: readAll(t, stdout), Stderr: readAll(t, stderr)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return res
}

// pidAlive reports whether pid still exists (and is not a zombie).
func pidAlive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}
