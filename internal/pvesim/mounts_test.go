package pvesim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
	"github.com/nexcage/nexcage/internal/testutil"
)

// assertNoMounts fails when anything is mounted on the host at or below
// root: pvesim mounts only in private mount namespaces.
func assertNoMounts(t *testing.T, root string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == root || strings.HasPrefix(fields[4], root+"/")) {
			t.Errorf("left mounted on the host: %s", sc.Text())
		}
	}
}

// assertCreateRolledBack checks everything a failed create must remove.
func assertCreateRolledBack(t *testing.T, n *Node, root string, vmid int) {
	t.Helper()
	assertNoTrace(t, n, root, vmid)
	assertNoMounts(t, root)
	if _, err := os.Lstat(n.ctDir(vmid)); err == nil {
		t.Errorf("%s left behind", n.ctDir(vmid))
	}
}

// symlinkRunTemplate adds local:vztmpl/symrun-test.tar to n's cache: the
// debian test template whose /var/run is a symlink to /run, as in many
// real images.
func symlinkRunTemplate(t *testing.T, n *Node) string {
	t.Helper()
	dir := t.TempDir()
	testutil.BusyboxRootfs(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/run", filepath.Join(dir, "var/run")); err != nil {
		t.Fatal(err)
	}
	writeTemplateTar(t, dir, filepath.Join(n.TemplateCacheDir(), "symrun-test.tar"))
	return "local:vztmpl/symrun-test.tar"
}

// TestPctCreateRefusesBadBindSources: a bind mount point's source must be
// an existing directory reached without symlinks (__mountpoint_mount,
// __bindmount_prepare); the failure rolls the whole create back.
func TestPctCreateRefusesBadBindSources(t *testing.T) {
	n, root := initNode(t)
	hostFile := filepath.Join(root, "hosts")
	if err := os.WriteFile(hostFile, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	realDir := filepath.Join(root, "real")
	if err := os.MkdirAll(filepath.Join(realDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(realDir, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mps  []string
		want string
	}{
		{"file", []string{"--mp0", hostFile + ",mp=/etc/hosts"},
			"unable to create CT 100 - directory '" + hostFile + "' does not exist\n"},
		{"missing", []string{"--mp0", root + "/nothere,mp=/data"},
			"unable to create CT 100 - directory '" + root + "/nothere' does not exist\n"},
		// Proxmox walks the source from "/" and prints start + "/" + components.
		{"symlinked source", []string{"--mp0", link + "/sub,mp=/data"},
			"unable to create CT 100 - symlink encountered at: /" + link + "\n"},
		{"symlink as source", []string{"--mp0", link + ",mp=/data"},
			"unable to create CT 100 - symlink encountered at: /" + link + "\n"},
		// New volumes were allocated and mp0 mounted before mp1 failed.
		{"rollback after mounts", []string{"--mp0", "local:1,mp=/vol", "--mp1", realDir + ",mp=/ok", "--mp2", hostFile + ",mp=/bad"},
			"unable to create CT 100 - directory '" + hostFile + "' does not exist\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"create", "100", debianTmpl, "--unprivileged", "0", "--rootfs", "local:1"}, tc.mps...)
			stdout, stderr, code := pct(t, n, args...)
			if code != 255 || stderr != tc.want {
				t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr, tc.want)
			}
			// mount_all's warn is part of the create task's log, which
			// pct relays on stdout; the task's error goes to stderr.
			if !strings.Contains(stdout, "mounting container failed\n") {
				t.Errorf("no 'mounting container failed' in the task output:\n%s", stdout)
			}
			if strings.Contains(stdout, "extracting archive") {
				t.Errorf("template unpacked although mounting failed:\n%s", stdout)
			}
			assertCreateRolledBack(t, n, root, 100)
		})
	}
	if entries, _ := os.ReadDir(realDir); len(entries) != 1 {
		t.Errorf("the bind source was written to: %v", entries)
	}
}

// TestPctCreateUnpacksThroughMounts: at create the mount points are
// mounted while the template is unpacked, so members below a bind
// target land in the host directory (with tar --skip-old-files: what is
// there stays), and nothing stays mounted afterwards.
func TestPctCreateUnpacksThroughMounts(t *testing.T) {
	n, root := initNode(t)
	hostBin := filepath.Join(root, "hostbin")
	if err := os.MkdirAll(hostBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostBin, "ls"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pct(t, n, "destroy", "100") })
	if _, stderr, code := pct(t, n, "create", "100", debianTmpl, "--rootfs", "local:1",
		"--mp0", hostBin+",mp=/bin"); code != 0 {
		t.Fatalf("create: %s", stderr)
	}
	assertNoMounts(t, root)
	st, err := os.Lstat(filepath.Join(hostBin, "busybox"))
	if err != nil {
		t.Fatalf("template's /bin/busybox did not land in the bind source: %v", err)
	}
	// Unprivileged (the default): ids shifted as inside the container.
	if uid := statUID(st); uid != unprivIDBase {
		t.Errorf("bin/busybox in the host directory owned by %d, want %d", uid, unprivIDBase)
	}
	if b, _ := os.ReadFile(filepath.Join(hostBin, "ls")); string(b) != "mine\n" {
		t.Errorf("existing host file overwritten: %q", b)
	}
	vol := filepath.Join(root, "var/lib/vz/images/100/vm-100-disk-0.raw")
	if _, err := os.Lstat(filepath.Join(vol, "bin/busybox")); err == nil {
		t.Error("bin/busybox written into the root volume below the mount point")
	}
	if _, err := os.Stat(filepath.Join(vol, "etc/os-release")); err != nil {
		t.Errorf("rest of the template not in the root volume: %v", err)
	}
}

// TestSymlinkedTargetInsideRootfs: the mount target is walked inside the
// rootfs with O_NOFOLLOW. At create the rootfs is still empty, so the
// walk makes /var/run a directory and tar keeps it (--skip-old-files
// skips the image's /var/run symlink); a mount point added later to a
// container whose image has /var/run -> /run fails at start.
func TestSymlinkedTargetInsideRootfs(t *testing.T) {
	n, root := initNode(t)
	tmpl := symlinkRunTemplate(t, n)
	hostDir := filepath.Join(root, "hostdir")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pct(t, n, "stop", "102")
		pct(t, n, "destroy", "101")
		pct(t, n, "destroy", "102")
	})

	if _, stderr, code := pct(t, n, "create", "101", tmpl, "--unprivileged", "0", "--rootfs", "local:1",
		"--mp0", hostDir+",mp=/var/run/x"); code != 0 {
		t.Fatalf("create with the mount point: %s", stderr)
	}
	st, err := os.Lstat(filepath.Join(root, "var/lib/vz/images/101/vm-101-disk-0.raw/var/run"))
	if err != nil || !st.IsDir() {
		t.Fatalf("var/run after create with a mount point below it: %v %v (want a directory)", st, err)
	}

	if _, stderr, code := pct(t, n, "create", "102", tmpl, "--unprivileged", "0", "--rootfs", "local:1"); code != 0 {
		t.Fatalf("create: %s", stderr)
	}
	if _, stderr, code := pct(t, n, "set", "102", "--mp0", hostDir+",mp=/var/run/x"); code != 0 {
		t.Fatalf("set: %s", stderr)
	}
	// LXC reports only that the pre-start hook failed (exit status: the
	// errno of the failed openat, ENOTDIR for a symlink opened with
	// O_NOFOLLOW|O_DIRECTORY); the hook's message is in the debug log. At start the
	// target is walked as "./<mp>" from "/" (mountpoint_insert_staged).
	lxcLines := "run_buffer: 571 Script exited with status 20\n" +
		"lxc_init: 845 Failed to run lxc.hook.pre-start for container \"102\"\n" +
		"__lxc_start: 2034 Failed to initialize container \"102\"\n"
	_, stderr, code := pct(t, n, "start", "102")
	if want := lxcLines + "startup for container '102' failed\n"; code != 255 || stderr != want {
		t.Errorf("start: exit %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}
	_, stderr, code = pct(t, n, "start", "102", "--debug")
	if want := lxcLines + "DEBUG    utils - ../src/lxc/utils.c:run_buffer:560 - Script exec /usr/share/lxc/hooks/lxc-pve-prestart-hook 102 lxc pre-start produced output: symlink encountered at: //./var/run\n" +
		"startup for container '102' failed\n"; code != 255 || stderr != want {
		t.Errorf("start --debug: exit %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}
	if b, _ := os.ReadFile(n.stderrPath(102)); !strings.Contains(string(b), "lxc-start: 102: ../src/lxc/start.c: lxc_init: 845 Failed to run lxc.hook.pre-start") {
		t.Errorf("ct-102.stderr lacks LXC's lines: %q", b)
	}
	if stdout, _, _ := pct(t, n, "status", "102"); stdout != "status: stopped\n" {
		t.Errorf("status after the failed start: %q", stdout)
	}
	assertNoMounts(t, root)
	if entries, _ := os.ReadDir(hostDir); len(entries) != 0 {
		t.Errorf("host directory written to: %v", entries)
	}
}

// TestStartMountsAndDev runs real containers: mount points are mounted
// before LXC's autodev tmpfs (so one under /dev is hidden), LXC never
// mounts /dev/shm, lxc.mount.entry lines come after autodev, and an
// empty raw lxc.cap.drop clears the common config's list so that
// lxc.cap.keep is accepted.
func TestStartMountsAndDev(t *testing.T) {
	n := lxcNode(t)
	vmid := 110
	cleanupCT(t, n, vmid)
	volid, _ := rootfsVolume(t, n, vmid, false)
	hostDir := filepath.Join(n.Root, "hostdir")
	os.MkdirAll(hostDir, 0o755)
	os.WriteFile(filepath.Join(hostDir, "marker"), []byte("host data\n"), 0o644)
	hostFile := filepath.Join(n.Root, "hostfile")
	os.WriteFile(hostFile, []byte("one file\n"), 0o644)

	base := func() *pvecfg.Config {
		conf := pvecfg.NewConfig()
		conf.Set("ostype", "debian")
		conf.Set("rootfs", volid)
		conf.Set("mp0", hostDir+",mp=/dev/hidden")
		conf.Set("mp1", hostDir+",mp=/mnt/seen")
		return conf
	}
	start := func(conf *pvecfg.Config) int {
		t.Helper()
		n.Stderr = &bytes.Buffer{}
		if err := n.startCT(vmid, conf); err != nil {
			t.Fatalf("startCT: %v\n%s", err, n.Stderr)
		}
		_, pid, _ := n.ctStatus(vmid)
		// The mounts live in the container's namespaces only.
		assertNoMounts(t, n.Root)
		return pid
	}
	stop := func() {
		t.Helper()
		if err := n.stopCT(vmid); err != nil {
			t.Fatal(err)
		}
	}
	sh := func(script string) (int, string) {
		t.Helper()
		code, out, _ := runIn(t, n, vmid, "sh", "-c", script)
		return code, out
	}

	// 1. Defaults: the system container's own init (no entrypoint).
	start(base())
	if code, out := sh("cat /mnt/seen/marker"); code != 0 || out != "host data\n" {
		t.Errorf("mount point outside /dev: %d %q", code, out)
	}
	if code, _ := sh("test -e /dev/hidden/marker"); code == 0 {
		t.Error("an mpN under /dev is visible: LXC's autodev tmpfs must cover it")
	}
	if code, out := sh("test -e /dev/shm || echo absent"); code != 0 || out != "absent\n" {
		t.Errorf("/dev/shm exists without anyone asking for it: %d %q", code, out)
	}
	stop()

	// 2. Raw lines after the includes: mount entries under /dev and the
	// capability lists.
	conf := base()
	conf.Raw = append(conf.Raw,
		pvecfg.RawLine{Key: "lxc.mount.entry", Value: hostFile + " dev/hostfile none bind,create=file 0 0"},
		pvecfg.RawLine{Key: "lxc.mount.entry", Value: "shm dev/shm tmpfs rw,nosuid,nodev,create=dir 0 0"},
		pvecfg.RawLine{Key: "lxc.mount.entry", Value: "mqueue dev/mqueue mqueue rw,nosuid,nodev,noexec,create=dir 0 0"},
		pvecfg.RawLine{Key: "lxc.cap.drop", Value: ""},
		pvecfg.RawLine{Key: "lxc.cap.keep", Value: "chown dac_override fowner kill setgid setuid sys_chroot"},
	)
	pid := start(conf)
	if code, out := sh("cat /dev/hostfile"); code != 0 || out != "one file\n" {
		t.Errorf("file bind entry under /dev: %d %q", code, out)
	}
	if code, out := sh("grep ' /dev/shm tmpfs ' /proc/mounts | wc -l"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("/dev/shm tmpfs entry: %d %q", code, out)
	}
	if code, out := sh("grep ' /dev/mqueue mqueue ' /proc/mounts | wc -l"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("/dev/mqueue entry: %d %q", code, out)
	}
	bnd := capBound(t, pid)
	if bnd&(1<<0) == 0 || bnd&(1<<21) != 0 {
		t.Errorf("init's bounding set %#x: want chown (bit 0) kept and sys_admin (bit 21) dropped", bnd)
	}
	stop()

	// 3. An application container (entrypoint other than /sbin/init):
	// PVE 9.1 mounts a /dev/shm tmpfs for it.
	conf = base()
	conf.Set("entrypoint", "/bin/sleep 1000")
	start(conf)
	if code, out := sh("grep ' /dev/shm tmpfs ' /proc/mounts | wc -l"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("/dev/shm of an application container: %d %q", code, out)
	}
	stop()

	// 4. rootfs ro=1: the root volume is mounted read-only, the mount
	// points below it (made at the earlier starts) stay writable.
	conf = base()
	conf.Set("rootfs", volid+",ro=1")
	start(conf)
	if code, out := sh("touch /rootfile 2>&1"); code == 0 || !strings.Contains(out, "Read-only file system") {
		t.Errorf("write to a read-only rootfs: %d %q", code, out)
	}
	if code, _ := sh("touch /mnt/seen/new"); code != 0 {
		t.Error("mount point below a read-only rootfs is not writable")
	}
	stop()
	assertNoMounts(t, n.Root)
}

// capBound reads CapBnd of pid from the host's /proc.
func capBound(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapBnd in /proc/%d/status", pid)
	return 0
}

// TestStartRefusesBadMounts: the pre-start mounts fail the start with
// Proxmox's messages and leave nothing mounted.
func TestStartRefusesBadMounts(t *testing.T) {
	n := lxcNode(t)
	vmid := 111
	cleanupCT(t, n, vmid)
	volid, rootfs := rootfsVolume(t, n, vmid, false)
	os.RemoveAll(filepath.Join(rootfs, "var/run"))
	if err := os.Symlink("/run", filepath.Join(rootfs, "var/run")); err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(n.Root, "hostdir")
	os.MkdirAll(hostDir, 0o755)
	link := filepath.Join(n.Root, "hostlink")
	os.Symlink(hostDir, link)
	for _, tc := range []struct {
		mp, want string
		status   int
	}{
		{hostDir + ",mp=/var/run/x", "symlink encountered at: //./var/run", 20},
		{hostDir + ",mp=/etc/passwd/x", "symlink encountered at: //./etc/passwd", 20},
		{link + ",mp=/mnt/x", "symlink encountered at: /" + link, 20},
		{filepath.Join(n.Root, "missing") + ",mp=/mnt/x", "directory '" + filepath.Join(n.Root, "missing") + "' does not exist", 2},
	} {
		conf := pvecfg.NewConfig()
		conf.Set("ostype", "debian")
		conf.Set("rootfs", volid)
		conf.Set("mp0", tc.mp)
		var stderr bytes.Buffer
		n.Stderr = &stderr
		err := n.startCT(vmid, conf)
		var pe *prestartError
		if !errors.As(err, &pe) || err.Error() != fmt.Sprintf("startup for container '%d' failed", vmid) {
			t.Fatalf("%s: err = %v", tc.mp, err)
		}
		if got := errorText(pe.err); got != tc.want {
			t.Errorf("%s: hook message %q, want %q", tc.mp, got, tc.want)
		}
		want := fmt.Sprintf("run_buffer: 571 Script exited with status %d\n", tc.status) +
			"lxc_init: 845 Failed to run lxc.hook.pre-start for container \"111\"\n" +
			"__lxc_start: 2034 Failed to initialize container \"111\"\n"
		if stderr.String() != want {
			t.Errorf("%s: stderr %q, want %q", tc.mp, stderr.String(), want)
		}
		if running, _, _ := n.ctStatus(vmid); running {
			t.Fatalf("%s: container runs", tc.mp)
		}
		assertNoMounts(t, n.Root)
	}
}

// TestWalkTreeNoFollowOpensRealDirectories checks the walk itself: it
// creates what is missing (owned as asked) and stops at symlinks and
// files, printing the path the way Proxmox builds it.
func TestWalkTreeNoFollowOpensRealDirectories(t *testing.T) {
	n := &Node{Root: t.TempDir(), Stderr: &bytes.Buffer{}}
	start := filepath.Join(n.Root, "var/lib/lxc/100/rootfs")
	os.MkdirAll(filepath.Join(start, "a"), 0o755)
	os.Symlink("a", filepath.Join(start, "l"))
	fd, parent, last, err := n.walkTreeNoFollow(start, n.shownPath(start), "/a//b/c", true, 4242, 4343)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(fd, parent)
	if last != "c" {
		t.Errorf("last = %q", last)
	}
	st, err := os.Stat(filepath.Join(start, "a/b/c"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 4242 || sys.Gid != 4343 || st.Mode().Perm() != 0o755 {
		t.Errorf("created dir %v owned %d:%d", st.Mode(), sys.Uid, sys.Gid)
	}
	if _, _, _, err := n.walkTreeNoFollow(start, n.shownPath(start), "l/b", true, -1, -1); err == nil || err.Error() != "symlink encountered at: /var/lib/lxc/100/rootfs/l" {
		t.Errorf("through a symlink: %v", err)
	}
	if _, _, _, err := n.walkTreeNoFollow(start, n.shownPath(start), "a/nothere", false, -1, -1); err == nil || err.Error() != "cannot open directory /var/lib/lxc/100/rootfs/a/nothere: No such file or directory" {
		t.Errorf("missing without mkdir: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(start, "a/nothere")); err == nil {
		t.Error("created a directory without mkdir")
	}
}

// TestWithMountNamespace: fn runs in a mount namespace of its own, and
// the process's (its main thread's, which /proc/self shows) never
// changes, however the goroutines land on threads.
func TestWithMountNamespace(t *testing.T) {
	before, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		var inner string
		if err := withMountNamespace(func() error {
			var err error
			inner, err = os.Readlink("/proc/thread-self/ns/mnt")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inner == before {
			t.Fatal("fn ran in the process's mount namespace")
		}
		if now, _ := os.Readlink("/proc/self/ns/mnt"); now != before {
			t.Fatalf("the main thread's mount namespace changed: %s -> %s", before, now)
		}
	}
}

// TestStartWithRawIDMap: a raw lxc.idmap makes the container
// unprivileged without `unprivileged: 1` (userns include, seccomp rules,
// sys:mixed) and replaces the default map; LXC accepts the result.
func TestStartWithRawIDMap(t *testing.T) {
	n := lxcNode(t)
	vmid := 112
	cleanupCT(t, n, vmid)
	volid, _ := rootfsVolume(t, n, vmid, true)
	conf := pvecfg.NewConfig()
	conf.Set("ostype", "debian")
	conf.Set("rootfs", volid)
	conf.Set("entrypoint", "/bin/sleep 1000")
	conf.Raw = []pvecfg.RawLine{
		{Key: "lxc.idmap", Value: "u 0 100000 65536"},
		{Key: "lxc.idmap", Value: "g 0 100000 65536"},
	}
	if err := n.startCT(vmid, conf); err != nil {
		t.Fatalf("startCT: %v\n%s", err, n.Stderr)
	}
	_, pid, _ := n.ctStatus(vmid)
	if uid := hostUID(t, pid); uid != unprivIDBase {
		t.Errorf("init runs as host uid %d, want %d", uid, unprivIDBase)
	}
	b, _ := os.ReadFile(filepath.Join(n.ctDir(vmid), "config"))
	if strings.Count(string(b), "lxc.idmap = ") != 2 || !strings.Contains(string(b), "lxc.seccomp.profile = "+filepath.Join(n.ctDir(vmid), "rules.seccomp")) {
		t.Errorf("generated config:\n%s", b)
	}
	if err := n.stopCT(vmid); err != nil {
		t.Fatal(err)
	}
}
