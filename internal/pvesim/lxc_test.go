package pvesim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// lxcNode prepares a node whose root every uid can traverse (unprivileged
// containers need it) and registers the cleanup of container vmid.
func lxcNode(t *testing.T) *Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("LXC integration tests must run as root")
	}
	root := t.TempDir()
	// t.TempDir creates 0700 directories; the mapped root of an
	// unprivileged container (uid 100000) must pass through them.
	if err := makeTraversable(root, "/"); err != nil {
		t.Fatal(err)
	}
	n := &Node{Root: root, Name: "pve", Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	if err := os.MkdirAll(n.EtcPve(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.StorageCfgPath(), []byte(defaultStorageCfg(root)), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// cleanupCT kills and forgets container vmid of n when the test ends.
func cleanupCT(t *testing.T, n *Node, vmid int) {
	t.Cleanup(func() {
		id := strconv.Itoa(vmid)
		exec.Command("lxc-stop", "-P", n.LxcPath(), "-n", id, "--kill").Run()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if ok, _ := socketListed(n.commandSocket(vmid)); !ok {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// rootfsVolume extracts the debian catalogue template as vmid's rootfs
// volume and returns its volume id and path.
func rootfsVolume(t *testing.T, n *Node, vmid int, unpriv bool) (string, string) {
	t.Helper()
	e := catalogue[3] // debian-12
	data, err := buildTemplate(e)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), e.Name)
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	volname := fmt.Sprintf("%d/subvol-%d-disk-0.subvol", vmid, vmid)
	volid := "local:" + volname
	p, err := n.volumePath(volid)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.extractTemplate(archive, p, unpriv); err != nil {
		t.Fatal(err)
	}
	return volid, p
}

func writeScript(t *testing.T, rootfs, rel, body string, unpriv bool) {
	t.Helper()
	p := filepath.Join(rootfs, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	if unpriv {
		os.Chown(p, unprivIDBase, unprivIDBase)
		os.Chown(filepath.Dir(p), unprivIDBase, unprivIDBase)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runIn runs argv in the container and returns its exit code and output.
func runIn(t *testing.T, n *Node, vmid int, argv ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	m := *n
	m.Stdin, m.Stdout, m.Stderr = nil, &out, &errb
	code, err := m.execCT(vmid, argv)
	if err != nil {
		t.Fatalf("execCT %v: %v", argv, err)
	}
	return code, out.String(), errb.String()
}

func memoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[1] == "memory" {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
			if err != nil {
				t.Fatal(err)
			}
			v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
	}
	t.Fatalf("no memory cgroup for pid %d", pid)
	return 0
}

func hostUID(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatal("no Uid line")
	return -1
}

func testLifecycle(t *testing.T, unpriv bool) {
	n := lxcNode(t)
	vmid := 100
	if unpriv {
		vmid = 101
	}
	cleanupCT(t, n, vmid)
	volid, rootfs := rootfsVolume(t, n, vmid, unpriv)
	writeScript(t, rootfs, "usr/local/bin/start.sh", "echo to-stdout\necho to-stderr >&2\nexec sleep 1000\n", unpriv)

	roDir := filepath.Join(n.Root, "host-ro")
	rwDir := filepath.Join(n.Root, "host-rw")
	os.MkdirAll(roDir, 0o755)
	os.MkdirAll(rwDir, 0o777)
	os.Chmod(rwDir, 0o777)
	os.WriteFile(filepath.Join(roDir, "data.txt"), []byte("from the host\n"), 0o644)

	conf := pvecfg.NewConfig()
	for k, v := range map[string]string{
		"arch": "amd64", "hostname": "lxc-test", "memory": "192", "swap": "64",
		"ostype": "debian", "rootfs": volid + ",size=1G", "cores": "1", "cpulimit": "0.5",
		"mp0": roDir + ",mp=/mnt/ro,ro=1", "mp1": rwDir + ",mp=/mnt/rw",
		"entrypoint": "/usr/local/bin/start.sh", "unprivileged": map[bool]string{true: "1", false: "0"}[unpriv],
	} {
		conf.Set(k, v)
	}
	conf.Env = []string{"GREETING=hello world", "SECOND=2"}

	if err := n.startCT(vmid, conf); err != nil {
		t.Fatalf("startCT: %v\nstderr: %s", err, n.Stderr)
	}
	running, pid, err := n.ctStatus(vmid)
	if err != nil || !running || pid <= 1 {
		t.Fatalf("ctStatus = %v, %d, %v", running, pid, err)
	}
	// The host sees the entrypoint as the container's init.
	// (start.sh prints, then execs sleep: poll, RUNNING may come first.)
	waitFor(t, "init to exec sleep", func() bool {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return strings.Contains(string(cmdline), "sleep")
	})
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if !bytes.Contains(environ, []byte("GREETING=hello world\x00")) {
		t.Errorf("init environment lacks GREETING: %q", environ)
	}
	// stderr goes to run/pve/ct-<vmid>.stderr, stdout is discarded.
	waitFor(t, "init's stderr in the log", func() bool {
		b, _ := os.ReadFile(n.stderrPath(vmid))
		return strings.Contains(string(b), "to-stderr")
	})
	if b, _ := os.ReadFile(n.stderrPath(vmid)); strings.Contains(string(b), "to-stdout") {
		t.Errorf("stdout reached the stderr log: %q", b)
	}

	if got := memoryLimit(t, pid); got != 192<<20 {
		t.Errorf("memory.limit_in_bytes = %d, want %d", got, 192<<20)
	}
	wantUID := 0
	if unpriv {
		wantUID = unprivIDBase
	}
	if got := hostUID(t, pid); got != wantUID {
		t.Errorf("init runs as host uid %d, want %d", got, wantUID)
	}

	if code, out, _ := runIn(t, n, vmid, "cat", "/mnt/ro/data.txt"); code != 0 || out != "from the host\n" {
		t.Errorf("cat ro mount: %d %q", code, out)
	}
	if code, _, _ := runIn(t, n, vmid, "sh", "-c", "echo x > /mnt/ro/new"); code == 0 {
		t.Error("write to the read-only mount point succeeded")
	}
	if code, _, errOut := runIn(t, n, vmid, "sh", "-c", "echo inside > /mnt/rw/new"); code != 0 {
		t.Errorf("write to rw mount point: %d %s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(rwDir, "new")); string(b) != "inside\n" {
		t.Errorf("rw mount point not shared with the host: %q", b)
	}
	if code, out, _ := runIn(t, n, vmid, "sh", "-c", `echo "$GREETING/$SECOND"; hostname; id -u`); code != 0 || out != "hello world/2\nlxc-test\n0\n" {
		t.Errorf("env/hostname/uid inside: %d %q", code, out)
	}
	if code, _, _ := runIn(t, n, vmid, "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exit code = %d, want 7", code)
	}
	var stdin bytes.Buffer
	stdin.WriteString("piped\n")
	var out bytes.Buffer
	m := *n
	m.Stdin, m.Stdout = &stdin, &out
	if code, err := m.execCT(vmid, []string{"cat"}); err != nil || code != 0 || out.String() != "piped\n" {
		t.Errorf("stdin passthrough: %d %v %q", code, err, out.String())
	}

	if err := n.stopCT(vmid); err != nil {
		t.Fatal(err)
	}
	if running, _, _ := n.ctStatus(vmid); running {
		t.Fatal("still running after stopCT")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("init pid %d still exists", pid)
	}
	// Stopping a stopped container is a no-op.
	if err := n.stopCT(vmid); err != nil {
		t.Fatal(err)
	}
}

func TestLXCLifecyclePrivileged(t *testing.T)   { testLifecycle(t, false) }
func TestLXCLifecycleUnprivileged(t *testing.T) { testLifecycle(t, true) }

func TestLXCShutdown(t *testing.T) {
	n := lxcNode(t)
	vmid := 102
	cleanupCT(t, n, vmid)
	volid, rootfs := rootfsVolume(t, n, vmid, false)
	// Graceful: init exits on SIGPWR, the halt signal lxc-stop sends.
	writeScript(t, rootfs, "graceful.sh", "trap 'echo bye >&2; exit 0' PWR\nsleep 1000 &\nwait\n", false)
	// Stubborn: sleep as PID 1 ignores SIGPWR.
	writeScript(t, rootfs, "stubborn.sh", "exec sleep 1000\n", false)
	conf := pvecfg.NewConfig()
	conf.Set("ostype", "debian")
	conf.Set("rootfs", volid)
	conf.Set("entrypoint", "/graceful.sh")
	if err := n.startCT(vmid, conf); err != nil {
		t.Fatalf("%v: %s", err, n.Stderr)
	}
	if err := n.shutdownCT(vmid, 10*time.Second, false); err != nil {
		t.Fatal(err)
	}
	if running, _, _ := n.ctStatus(vmid); running {
		t.Fatal("running after shutdown")
	}
	if b, _ := os.ReadFile(n.stderrPath(vmid)); !strings.Contains(string(b), "bye") {
		t.Errorf("init did not see the halt signal: %q", b)
	}

	conf.Set("entrypoint", "/stubborn.sh")
	if err := n.startCT(vmid, conf); err != nil {
		t.Fatalf("%v: %s", err, n.Stderr)
	}
	err := n.shutdownCT(vmid, time.Second, false)
	if err == nil || err.Error() != "container did not stop" {
		t.Fatalf("shutdown of a stubborn init: %v", err)
	}
	if running, _, _ := n.ctStatus(vmid); !running {
		t.Fatal("stopped without forceStop")
	}
	if err := n.shutdownCT(vmid, time.Second, true); err != nil {
		t.Fatalf("forced shutdown: %v", err)
	}
	if running, _, _ := n.ctStatus(vmid); running {
		t.Fatal("running after forced shutdown")
	}
}

func TestLXCStartFailureReportsLog(t *testing.T) {
	n := lxcNode(t)
	vmid := 103
	cleanupCT(t, n, vmid)
	volid, _ := rootfsVolume(t, n, vmid, false)
	conf := pvecfg.NewConfig()
	conf.Set("ostype", "debian")
	conf.Set("rootfs", volid)
	conf.Set("entrypoint", "/no/such/init")
	err := n.startCT(vmid, conf)
	if err == nil || err.Error() != "startup for container '103' failed" {
		t.Fatalf("err = %v", err)
	}
	if stderr := n.Stderr.(*bytes.Buffer).String(); stderr == "" || strings.Contains(stderr, "lxc-start: 103:") {
		t.Errorf("LXC log not printed (or not stripped of its prefix): %q", stderr)
	}
	if running, _, _ := n.ctStatus(vmid); running {
		t.Fatal("failed container counts as running")
	}
}

func TestLXCExecStoppedContainer(t *testing.T) {
	n := lxcNode(t)
	code, _, _ := runIn(t, n, 104, "true")
	if code == 0 {
		t.Fatal("exec in a container that does not run succeeded")
	}
}
