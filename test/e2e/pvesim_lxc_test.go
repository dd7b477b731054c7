package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lxcSim is a pvesim node under a fresh root, driven through the built
// binary as pct/pveam/pvesh.
type lxcSim struct {
	t    *testing.T
	bin  string
	root string
}

func newLxcSim(t *testing.T) *lxcSim {
	t.Helper()
	root := t.TempDir()
	// Unprivileged containers run as host uid 100000, which must be able
	// to walk down to their rootfs; t.TempDir makes 0700 directories.
	for d := root; d != "/"; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := &lxcSim{t: t, bin: PvesimBin(t), root: root}
	s.must("pvesim", "init")
	return s
}

func (s *lxcSim) run(stdin string, tool string, args ...string) Result {
	s.t.Helper()
	argv := args
	if tool != "pvesim" {
		argv = append([]string{tool}, args...)
	}
	cmd := exec.Command(s.bin, argv...)
	cmd.Env = append(os.Environ(), "PVESIM_ROOT="+s.root, "PVESIM_NODE=pve")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("%s %v: %v", tool, args, err)
	}
	return r
}

func (s *lxcSim) must(tool string, args ...string) Result {
	s.t.Helper()
	r := s.run("", tool, args...)
	if r.Code != 0 {
		s.t.Fatalf("%s %v: %s", tool, args, r)
	}
	return r
}

// cleanupCT destroys the container whatever state the test left it in.
func (s *lxcSim) cleanupCT(vmid int) {
	id := strconv.Itoa(vmid)
	s.t.Cleanup(func() {
		s.run("", "pct", "stop", id)
		exec.Command("lxc-stop", "-P", filepath.Join(s.root, "var/lib/lxc"), "-n", id, "--kill").Run()
		s.run("", "pct", "destroy", id)
	})
}

func lxcMemoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		p := strings.SplitN(line, ":", 3)
		if len(p) == 3 && p[1] == "memory" {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", p[2], "memory.limit_in_bytes"))
			if err != nil {
				t.Fatal(err)
			}
			v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
	}
	t.Fatalf("pid %d has no memory cgroup", pid)
	return 0
}

func lxcHostUID(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no Uid line")
	}
	uid, _ := strconv.Atoi(string(m[1]))
	return uid
}

func testLxcSimContainer(t *testing.T, vmid int, unprivileged bool) {
	s := newLxcSim(t)
	tmpl := "debian-12-standard_12.7-1_amd64.tar.zst"
	r := s.must("pveam", "download", "local", tmpl)
	if !strings.HasSuffix(r.Stdout, "download finished\n") {
		t.Fatalf("pveam download: %s", r)
	}
	if r := s.must("pveam", "list", "local"); !strings.Contains(r.Stdout, "local:vztmpl/"+tmpl) {
		t.Fatalf("pveam list: %s", r)
	}

	roDir := filepath.Join(s.root, "share-ro")
	rwDir := filepath.Join(s.root, "share-rw")
	os.MkdirAll(roDir, 0o755)
	os.MkdirAll(rwDir, 0o777)
	os.Chmod(rwDir, 0o777)
	os.WriteFile(filepath.Join(roDir, "hello.txt"), []byte("hello from the host\n"), 0o644)

	id := strconv.Itoa(vmid)
	s.cleanupCT(vmid)
	unpriv := "0"
	if unprivileged {
		unpriv = "1"
	}
	s.must("pct", "create", id, "local:vztmpl/"+tmpl,
		"--hostname", "sim"+id, "--memory", "160", "--swap", "0",
		"--rootfs", "local:1",
		"--mp0", roDir+",mp=/srv/ro,ro=1",
		"--mp1", rwDir+",mp=/srv/rw",
		// LXC splits lxc.init.cmd on blanks, so a script carries the
		// shell logic (written into the volume below).
		"--entrypoint", "/start.sh 1000",
		"--env", "APP_MODE=e2e",
		"--unprivileged", unpriv)
	conf, _ := os.ReadFile(filepath.Join(s.root, "etc/pve/nodes/pve/lxc", id+".conf"))
	vm := regexp.MustCompile(`(?m)^rootfs: local:([^,\n]+)`).FindSubmatch(conf)
	if vm == nil {
		t.Fatalf("no rootfs volume in:\n%s", conf)
	}
	script := filepath.Join(s.root, "var/lib/vz/images", string(vm[1]), "start.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho to-stdout\necho started >&2\nexec sleep \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := s.must("pct", "status", id); r.Stdout != "status: stopped\n" {
		t.Fatalf("status after create: %s", r)
	}

	s.must("pct", "start", id)
	r = s.must("pct", "status", id, "--verbose")
	m := regexp.MustCompile(`(?m)^pid: (\d+)$`).FindStringSubmatch(r.Stdout)
	if m == nil || !strings.Contains(r.Stdout, "status: running\n") {
		t.Fatalf("status --verbose: %s", r)
	}
	pid, _ := strconv.Atoi(m[1])
	// The process runs on the host, as the container's init.
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("init pid %d not on the host: %v", pid, err)
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.Contains(cmdline, []byte("sleep\x001000")) {
		t.Errorf("init cmdline %q", cmdline)
	}
	if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); !bytes.Contains(env, []byte("APP_MODE=e2e\x00")) {
		t.Errorf("init environment %q", env)
	}
	if got := lxcMemoryLimit(t, pid); got != 160<<20 {
		t.Errorf("memory limit %d, want %d", got, 160<<20)
	}
	wantUID := 0
	if unprivileged {
		wantUID = 100000
	}
	if got := lxcHostUID(t, pid); got != wantUID {
		t.Errorf("init host uid %d, want %d", got, wantUID)
	}
	stderrLog := filepath.Join(s.root, "run/pve/ct-"+id+".stderr")
	Eventually(t, 10*time.Second, "the container's stderr log", func() bool {
		b, _ := os.ReadFile(stderrLog)
		return strings.Contains(string(b), "started")
	})
	if b, _ := os.ReadFile(stderrLog); strings.Contains(string(b), "to-stdout") {
		t.Errorf("the container's stdout reached %s: %q", stderrLog, b)
	}

	if r := s.must("pct", "exec", id, "--", "cat", "/srv/ro/hello.txt"); r.Stdout != "hello from the host\n" {
		t.Errorf("read bind mount: %s", r)
	}
	if r := s.run("", "pct", "exec", id, "--", "sh", "-c", "echo no > /srv/ro/x"); r.Code == 0 {
		t.Errorf("write to ro mount point succeeded: %s", r)
	}
	s.must("pct", "exec", id, "--", "sh", "-c", "echo from-ct > /srv/rw/out.txt")
	if b, _ := os.ReadFile(filepath.Join(rwDir, "out.txt")); string(b) != "from-ct\n" {
		t.Errorf("rw mount point: %q", b)
	}
	if r := s.must("pct", "exec", id, "--", "sh", "-c", "echo $APP_MODE; hostname; id -u"); r.Stdout != "e2e\nsim"+id+"\n0\n" {
		t.Errorf("inside: %s", r)
	}
	if r := s.run("", "pct", "exec", id, "--", "sh", "-c", "exit 3"); r.Code != 3 {
		t.Errorf("exit status not passed through: %s", r)
	}
	if r := s.run("piped\n", "pct", "exec", id, "--", "cat"); r.Stdout != "piped\n" {
		t.Errorf("stdin not passed through: %s", r)
	}

	// The API view agrees.
	if r := s.must("pvesh", "get", "/nodes/pve/lxc", "--output-format", "json"); !strings.Contains(r.Stdout, `"status":"running"`) ||
		!strings.Contains(r.Stdout, fmt.Sprintf(`"pid":%d`, pid)) {
		t.Errorf("pvesh lxc index: %s", r)
	}

	if r := s.run("", "pct", "destroy", id); r.Code == 0 || !strings.Contains(r.Stderr, "unable to destroy CT "+id+" - container is running") {
		t.Errorf("destroy of a running CT: %s", r)
	}
	s.must("pct", "stop", id)
	if r := s.must("pct", "status", id); r.Stdout != "status: stopped\n" {
		t.Fatalf("status after stop: %s", r)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("init pid %d survived pct stop", pid)
	}
	s.must("pct", "destroy", id)
	if _, err := os.Stat(filepath.Join(s.root, "etc/pve/nodes/pve/lxc", id+".conf")); err == nil {
		t.Error("config left after destroy")
	}
	if r := s.must("pct", "list"); r.Stdout != "" {
		t.Errorf("pct list after destroy: %s", r)
	}
	if r := s.must("pvesh", "get", "/cluster/nextid"); r.Stdout != "100\n" {
		t.Errorf("nextid after destroy: %s", r)
	}
}

func TestPvesimLXCPrivileged(t *testing.T)   { testLxcSimContainer(t, 200, false) }
func TestPvesimLXCUnprivileged(t *testing.T) { testLxcSimContainer(t, 201, true) }

func TestPvesimInitWithTemplatesAndCatalogue(t *testing.T) {
	s := &lxcSim{t: t, bin: PvesimBin(t), root: t.TempDir()}
	s.must("pvesim", "init", "--with-templates")
	s.must("pvesim", "init", "--with-templates") // idempotent
	r := s.must("pveam", "list", "local")
	for _, want := range []string{
		"local:vztmpl/alpine-3.22-default_20250617_amd64.tar.xz",
		"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
		"local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("pveam list lacks %s: %s", want, r)
		}
	}
	if r := s.run("", "pveam", "download", "local", "no-such-template.tar.zst"); r.Code != 255 ||
		!strings.Contains(r.Stderr, "template: no such template") {
		t.Errorf("unknown template: %s", r)
	}
	// Templates of every compression detect as their distribution.
	for i, tmpl := range []string{"alpine-3.22-default_20250617_amd64.tar.xz", "ubuntu-20.04-standard_20.04-1_amd64.tar.gz"} {
		if !strings.HasSuffix(tmpl, ".tar.xz") {
			s.must("pveam", "download", "local", tmpl)
		}
		id := strconv.Itoa(300 + i)
		s.cleanupCT(300 + i)
		s.must("pct", "create", id, "local:vztmpl/"+tmpl)
		conf, _ := os.ReadFile(filepath.Join(s.root, "etc/pve/nodes/pve/lxc", id+".conf"))
		want := "ostype: " + strings.SplitN(tmpl, "-", 2)[0] + "\n"
		if !strings.Contains(string(conf), want) {
			t.Errorf("%s: conf lacks %q:\n%s", tmpl, want, conf)
		}
	}
}

// hostMountsUnder lists the host's mount points at or below root.
func hostMountsUnder(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == root || strings.HasPrefix(f[4], root+"/")) {
			found = append(found, f[4])
		}
	}
	return found
}

// TestPvesimBindMountRules drives the built pct: a file or a missing path
// as a bind mount point fails the create with Proxmox's words and leaves
// nothing; a good one receives the template's files below its target;
// a mount point under /dev is hidden by LXC's /dev; nothing is ever
// mounted on the host.
func TestPvesimBindMountRules(t *testing.T) {
	s := newLxcSim(t)
	tmpl := "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
	s.must("pveam", "download", "local", "debian-12-standard_12.7-1_amd64.tar.zst")
	hostFile := filepath.Join(s.root, "hosts")
	os.WriteFile(hostFile, []byte("127.0.0.1 localhost\n"), 0o644)
	hostEtc := filepath.Join(s.root, "host-etc")
	os.MkdirAll(hostEtc, 0o755)
	hostDev := filepath.Join(s.root, "host-dev")
	os.MkdirAll(hostDev, 0o755)
	os.WriteFile(filepath.Join(hostDev, "marker"), []byte("x\n"), 0o644)

	for _, src := range []string{hostFile, filepath.Join(s.root, "nothere")} {
		r := s.run("", "pct", "create", "210", tmpl, "--rootfs", "local:1", "--mp0", src+",mp=/etc/hosts")
		// mount_all's warning is in the create task's log (pct's stdout),
		// the task's error on stderr.
		if want := "unable to create CT 210 - directory '" + src + "' does not exist\n"; r.Code != 255 || r.Stderr != want ||
			!strings.Contains(r.Stdout, "mounting container failed\n") {
			t.Errorf("create with mp0 %s: %s\nwant stderr %q and the mount warning on stdout", src, r, want)
		}
		if r := s.run("", "pct", "config", "210"); r.Code == 0 {
			t.Errorf("config left after a failed create:\n%s", r.Stdout)
		}
		if ents, _ := os.ReadDir(filepath.Join(s.root, "var/lib/vz/images")); len(ents) != 0 {
			t.Errorf("volumes left after a failed create: %v", ents)
		}
	}

	s.cleanupCT(211)
	s.must("pct", "create", "211", tmpl, "--rootfs", "local:1", "--unprivileged", "0",
		"--mp0", hostEtc+",mp=/etc", "--mp1", hostDev+",mp=/dev/host")
	if _, err := os.Lstat(filepath.Join(hostEtc, "os-release")); err != nil {
		t.Errorf("the template's /etc did not land in the bind source: %v", err)
	}
	if m := hostMountsUnder(t, s.root); len(m) != 0 {
		t.Fatalf("mounted on the host after create: %v", m)
	}
	s.must("pct", "start", "211")
	if m := hostMountsUnder(t, s.root); len(m) != 0 {
		t.Errorf("mounted on the host while running: %v", m)
	}
	if r := s.run("", "pct", "exec", "211", "--", "sh", "-c", "cat /etc/os-release >/dev/null && test ! -e /dev/host/marker && test ! -e /dev/shm"); r.Code != 0 {
		t.Errorf("inside: /etc from the host, /dev/host hidden, no /dev/shm: %s", r)
	}
	s.must("pct", "stop", "211")
}
