package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// seedBundle is the seed's "OCI bundle with mounts": a busybox bundle with
// a read-only directory, a single file and a writable directory bound in
// from the host, a memory limit, and an environment with blanks.
func seedBundle(t *testing.T, args []string) (bundle, out string) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	out = filepath.Join(dir, "out")
	for _, d := range []string{data, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The container is unprivileged: its root is an unmapped user on the
	// host, so the writable mount must be writable by anyone.
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "greeting"), []byte("greetings\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	limit := int64(128 << 20)
	bundle = testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), args, func(s *specs.Spec) {
		s.Process.Env = append(s.Process.Env, "GREETING=hello world", "EMPTY=")
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/etc/greeting", Type: "bind", Source: filepath.Join(dir, "greeting"), Options: []string{"bind", "ro", "nosuid"}},
			specs.Mount{Destination: "/out", Source: "../out", Options: []string{"rbind", "rw", "nodev"}},
		)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	})
	return bundle, out
}

// memoryLimit reads the memory limit of pid's cgroup (v1 or v2).
func memoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		var p string
		switch {
		case strings.Contains(","+f[1]+",", ",memory,"):
			p = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes")
		case f[0] == "0" && f[1] == "":
			p = filepath.Join("/sys/fs/cgroup", f[2], "memory.max")
			if _, err := os.Stat(p); err != nil {
				continue // hybrid host: the v2 tree has no memory controller
			}
		default:
			continue
		}
		v, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err != nil {
			t.Fatalf("%s: %q", p, v)
		}
		return n
	}
	t.Fatalf("no memory cgroup for pid %d in %q", pid, data)
	return 0
}

func readProc(t *testing.T, pid int, file string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// TestProxmoxSeedBundleScenario is the seed's "OCI Bundle Testing":
// `nexcage create --name test-oci --image <bundle with mounts>`, then the
// whole lifecycle, with the number of pct calls per verb.
func TestProxmoxSeedBundleScenario(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	// Arguments with blanks and quotes reach the init helper over its
	// socket; the final process is `sleep`, exec'd by the script's shell.
	bundle, out := seedBundle(t, []string{"sh", "-c", "echo \"it's up\" > /out/started; exec sleep 1000"})
	id := "test-oci"

	calls := e.countCalls(func() { n.Must("create", "--name", id, "--image", bundle) })
	// pct create, then pct start: the container runs its init helper, which
	// holds process.args until `nexcage start` (a real OCI created state).
	wantCalls(t, "create", calls, map[string]int{"create": 1, "start": 1})
	n.CleanupContainer(id)
	vmid := e.vmidOf(id)

	conf, err := os.ReadFile(e.confPath(vmid))
	if err != nil {
		t.Fatal(err)
	}
	bdir := filepath.Dir(bundle)
	for key, want := range map[string][]string{
		"mp0": {filepath.Join(bdir, "data"), "mp=/data", "ro=1"},
		"mp1": {filepath.Join(bdir, "out"), "mp=/out", "mountoptions=nodev"},
	} {
		m := regexp.MustCompile(`(?m)^` + key + `: (.*)$`).FindStringSubmatch(string(conf))
		if m == nil {
			t.Errorf("%d.conf has no %s:\n%s", vmid, key, conf)
			continue
		}
		got := strings.Split(m[1], ",")
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %q, want the properties %q", key, m[1], want)
		}
	}
	for _, want := range []string{
		"memory: 128\n", "tags: nexcage\n", "unprivileged: 1\n", "ostype: unmanaged\n",
		// A file bind cannot be an mpN on a real node (proxmox-pct.md §9.5).
		"lxc.mount.entry: " + filepath.Join(bdir, "greeting") + " etc/greeting none bind,ro,nosuid,create=file 0 0\n",
		// nexcage's init helper is init; it runs process.args on start
		// (its environment comes over the helper's socket, not through
		// lxc.environment lines, which PVE 8 and 9.0 drop).
		"lxc.init.cmd: /.nexcage/nexcage __nexcage-init /.nexcage/init.sock\n",
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("%d.conf lacks %q:\n%s", vmid, want, conf)
		}
	}
	if strings.Contains(string(conf), "lxc.environment") {
		t.Errorf("%d.conf has lxc.environment lines:\n%s", vmid, conf)
	}
	// created with a pid: the init helper's, waiting for start.
	if s := stateOf(t, n, id); s.Status != "created" || s.Pid <= 1 || s.Backend != "proxmox-lxc" {
		t.Errorf("after create: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(out, "started")); err == nil {
		t.Error("create ran process.args (created must not be running)")
	}

	// start only releases the init helper: no pct call.
	calls = e.countCalls(func() { n.Must("start", id) })
	wantCalls(t, "start", calls, nil)

	var s ociState
	calls = e.countCalls(func() { s = stateOf(t, n, id) })
	wantCalls(t, "state", calls, nil)
	if s.Status != "running" || s.Pid <= 1 {
		t.Fatalf("after start: %+v", s)
	}
	// The pid is the host pid of the container's init, running our args.
	Eventually(t, 10*time.Second, "init to exec sleep", func() bool {
		c := readProc(t, s.Pid, "cmdline")
		return len(c) == 2 && c[0] == "sleep" && c[1] == "1000"
	})
	env := strings.Join(readProc(t, s.Pid, "environ"), "\n") + "\n"
	for _, want := range []string{"GREETING=hello world\n", "EMPTY=\n", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n", "TERM=xterm\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("environment of pid %d lacks %q:\n%s", s.Pid, want, env)
		}
	}
	if got := memoryLimit(t, s.Pid); got != 128<<20 {
		t.Errorf("memory limit in the cgroup = %d, want %d", got, 128<<20)
	}
	started, err := os.ReadFile(filepath.Join(out, "started"))
	if err != nil || string(started) != "it's up\n" {
		t.Errorf("out/started = %q, %v", started, err)
	}
	// The bind mounts are visible inside the container.
	for path, want := range map[string]string{"/data/hello.txt": "hello from the host\n", "/etc/greeting": "greetings\n", "/out/started": "it's up\n"} {
		got, err := e.pctRun("exec", strconv.Itoa(vmid), "--", "cat", path)
		if err != nil || got != want {
			t.Errorf("pct exec cat %s = %q, %v; want %q", path, got, err, want)
		}
	}
	if got, err := e.pctRun("exec", strconv.Itoa(vmid), "--", "touch", "/data/x"); err == nil {
		t.Errorf("read-only mount /data is writable: %q", got)
	}

	calls = e.countCalls(func() { n.Must("kill", id, "KILL") })
	wantCalls(t, "kill", calls, nil)
	calls = e.countCalls(func() { waitStatus(t, n, id, "stopped") })
	wantCalls(t, "state after exit", calls, nil)
	// OCI: kill on a stopped container fails.
	n.Fails(10, "not running", "kill", id, "TERM")

	calls = e.countCalls(func() { n.Must("delete", id) })
	wantCalls(t, "delete", calls, map[string]int{"destroy": 1})
	e.assertNothingLeft("after delete")
	n.Fails(3, "", "state", id)
}

// TestProxmoxRuncStyle drives an lxc-routed id with the runc command
// line: create --bundle B id, start, state, delete --force on a running
// container (pct stop + pct destroy).
func TestProxmoxRuncStyle(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	id := "lxc-runc-style"
	calls := e.countCalls(func() { n.Must("create", "--bundle", bundle, id) })
	wantCalls(t, "create", calls, map[string]int{"create": 1, "start": 1})
	n.CleanupContainer(id)
	if s := stateOf(t, n, id); s.Backend != "proxmox-lxc" || s.Status != "created" || s.Bundle != bundle {
		t.Fatalf("state after create: %+v", s)
	}
	conf, _ := os.ReadFile(e.confPath(e.vmidOf(id)))
	// runc spec's readonly root and hostname.
	for _, re := range []string{`(?m)^rootfs: .*,ro=1`, `(?m)^hostname: runc$`, `(?m)^lxc.init.cmd: /.nexcage/nexcage __nexcage-init /.nexcage/init.sock$`} {
		if !regexp.MustCompile(re).Match(conf) {
			t.Errorf("conf does not match %s:\n%s", re, conf)
		}
	}
	wantCalls(t, "start", e.countCalls(func() { n.Must("start", id) }), nil)
	s := stateOf(t, n, id)
	if s.Status != "running" || s.Pid <= 1 {
		t.Fatalf("state after start: %+v", s)
	}
	if c := readProc(t, s.Pid, "cmdline"); strings.Join(c, " ") != "sleep 1000" {
		t.Errorf("init cmdline = %q", c)
	}
	// Starting twice is refused, without pct.
	n.Fails(10, "", "start", id)
	// A running container is not deleted without --force.
	wantCalls(t, "delete running", e.countCalls(func() { n.Fails(10, "running", "delete", id) }), nil)
	wantCalls(t, "delete --force", e.countCalls(func() { n.Must("delete", "--force", id) }), map[string]int{"stop": 1, "destroy": 1})
	e.assertNothingLeft("after delete --force")
}

// TestProxmoxStop covers the nexcage stop verb (pct shutdown with
// forceStop: sh as init ignores the halt signal).
func TestProxmoxStop(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	id := "lxc-stop"
	n.Must("create", "--bundle", bundle, id)
	n.CleanupContainer(id)
	n.Must("start", id)
	s := stateOf(t, n, id)
	calls := e.countCalls(func() { n.Must("stop", "--timeout", "1", id) })
	if calls["shutdown"] != 1 {
		t.Errorf("stop: pct calls %v, want one shutdown", calls)
	}
	if st := waitStatus(t, n, id, "stopped"); st.Pid != 0 {
		t.Errorf("stopped container has pid %d", st.Pid)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(s.Pid)); err == nil {
		if c := readProc(t, s.Pid, "cmdline"); strings.Join(c, " ") == "sleep 1000" {
			t.Errorf("init %d still alive after stop", s.Pid)
		}
	}
	wantCalls(t, "delete", e.countCalls(func() { n.Must("delete", id) }), map[string]int{"destroy": 1})
	e.assertNothingLeft("after delete")
}

// TestProxmoxSeedTemplate is the seed's "Template Testing" command, plus
// the error for a template that does not exist.
func TestProxmoxSeedTemplate(t *testing.T) {
	e := newPveEnv(t, true, "")
	n := e.n
	id := "test-template"
	calls := e.countCalls(func() {
		n.Must("create", "--name", id, "--image", "local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst")
	})
	wantCalls(t, "create", calls, map[string]int{"create": 1})
	n.CleanupContainer(id)
	conf, _ := os.ReadFile(e.confPath(e.vmidOf(id)))
	if !strings.Contains(string(conf), "hostname: test-template\n") || strings.Contains(string(conf), "lxc.init.cmd") {
		t.Errorf("template container config:\n%s", conf)
	}
	wantCalls(t, "start", e.countCalls(func() { n.Must("start", id) }), map[string]int{"start": 1})
	if s := stateOf(t, n, id); s.Status != "running" || s.Pid <= 1 {
		t.Fatalf("state: %+v", s)
	}
	wantCalls(t, "delete --force", e.countCalls(func() { n.Must("delete", "--force", id) }), map[string]int{"stop": 1, "destroy": 1})

	// A missing template names the problem and lists what exists, without
	// calling pct (the template resolver's error, see docs/IMAGES.md).
	calls = e.countCalls(func() {
		r := n.Run("create", "--name", "t2", "--image", "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
		if r.Code != 3 && r.Code != 7 {
			t.Errorf("missing template: exit %d, want 3 (not found) or 7 (template): %s", r.Code, r)
		}
		for _, want := range []string{"t2", "ubuntu-24.04-standard_24.04-2_amd64.tar.zst not found", "ubuntu-22.04-standard_22.04-1_amd64.tar.zst"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("missing template: stderr lacks %q: %s", want, r.Stderr)
			}
		}
	})
	wantCalls(t, "create with a missing template", calls, nil)
	// A bare file name is looked up in the template storage.
	n.Must("create", "--name", "t3", "--image", "debian-12-standard_12.7-1_amd64.tar.zst")
	n.Must("delete", "t3")
	// A template only offered by `pveam available` is downloaded first
	// (templates.auto_download defaults to on), still with one pct call.
	wantCalls(t, "create from a downloaded template", e.countCalls(func() {
		n.Must("create", "--name", "t4", "--image", "debian-11-standard_11.7-1_amd64.tar.zst")
	}), map[string]int{"create": 1})
	if _, err := os.Stat(filepath.Join(e.cacheDir(), "debian-11-standard_11.7-1_amd64.tar.zst")); err != nil {
		t.Errorf("template not downloaded into the cache: %v", err)
	}
	n.Must("delete", "t4")
	e.assertNothingLeft("end")
}
