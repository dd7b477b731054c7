package pvesim

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// pctProcess is a pct command run as its own process (this test binary
// through a symlink named pct, see TestMain), so that tests can signal it.
type pctProcess struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
}

func startPct(t *testing.T, root string, env []string, args ...string) *pctProcess {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pct")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	p := &pctProcess{cmd: exec.Command(bin, args...)}
	p.cmd.Env = append(os.Environ(), append([]string{"PVESIM_ROOT=" + root}, env...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// wait returns pct's exit status.
func (p *pctProcess) wait(t *testing.T) int {
	t.Helper()
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitPaused waits until the worker reached the PVESIM_PAUSE point whose
// release file is file, and returns the worker's pid. The deadline only
// keeps a broken worker from hanging the test.
func waitPaused(t *testing.T, p *pctProcess, file string) int {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if data, err := os.ReadFile(file + ".reached"); err == nil && strings.HasSuffix(string(data), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker never paused; stdout %q stderr %q", p.stdout.String(), p.stderr.String())
		}
	}
}

// processGone reports whether pid has exited (gone or a zombie).
func processGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	return i < 0 || strings.HasPrefix(s[i+1:], " Z")
}

func waitProcessGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !processGone(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
	}
}

// mountsUnder lists the mount points below root.
func mountsUnder(t *testing.T, root string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var res []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], root+"/") {
			res = append(res, fields[4])
		}
	}
	return res
}

// cleanupMounts detaches whatever a killed create left mounted under root.
func cleanupMounts(t *testing.T, root string) {
	t.Cleanup(func() {
		m := mountsUnder(t, root)
		for i := len(m) - 1; i >= 0; i-- {
			_ = unix.Unmount(m[i], unix.MNT_DETACH)
		}
	})
}

// SIGTERM (or SIGINT) to pct create is forwarded to the worker, which rolls back
// wherever it is: no config, no volume, no .vmlist entry, no mount, no
// process; pct prints the task error and exits 255.
func TestCreateWorkerSIGTERMRollsBack(t *testing.T) {
	n, root := initNode(t)
	cleanupMounts(t, root)
	for point, sig := range map[string]syscall.Signal{
		"create-after-lock": syscall.SIGTERM, "create-after-disks": syscall.SIGINT,
		"create-after-extract": syscall.SIGTERM, "create-after-config": syscall.SIGTERM,
	} {
		t.Run(point, func(t *testing.T) {
			release := filepath.Join(t.TempDir(), "go")
			p := startPct(t, root, []string{"PVESIM_PAUSE=" + point + ":" + release},
				"create", "150", debianTmpl, "--rootfs", "local:1", "--tags", "a")
			worker := waitPaused(t, p, release)
			// The worker is a child of pct in a session of its own.
			if sid, err := unix.Getsid(worker); err != nil || sid != worker || worker == p.cmd.Process.Pid {
				t.Errorf("worker %d (pct %d) session %d: %v", worker, p.cmd.Process.Pid, sid, err)
			}
			if point != "create-after-lock" {
				if _, err := os.Stat(filepath.Join(root, "var/lib/vz/images/150/vm-150-disk-0.raw")); err != nil {
					t.Errorf("volume not allocated at %s: %v", point, err)
				}
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code := p.wait(t)
			if code != 255 || p.stderr.String() != "unable to create CT 150 - received interrupt\n" {
				t.Errorf("exit %d stderr %q", code, p.stderr.String())
			}
			if !processGone(worker) {
				t.Errorf("worker %d survived", worker)
			}
			assertNoTrace(t, n, root, 150)
			if m := mountsUnder(t, root); len(m) != 0 {
				t.Errorf("mounts left: %v", m)
			}
		})
	}
}

// killedCreate runs pct create 150 paused at point, SIGKILLs pct, lets the
// worker go on and waits until it has ended on its own.
func killedCreate(t *testing.T, root, point string) {
	t.Helper()
	release := filepath.Join(t.TempDir(), "go")
	p := startPct(t, root, []string{"PVESIM_PAUSE=" + point + ":" + release},
		"create", "150", debianTmpl, "--rootfs", "local:1")
	worker := waitPaused(t, p, release)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitProcessGone(t, worker)
}

// SIGKILL to pct kills only pct. Paused before any output: the worker
// goes on, allocates the volume and dies at its next output line
// ("extracting archive ..."), leaving the `lock: create` placeholder, the
// .vmlist entry and the volume. pct unlock + pct destroy
// --destroy-unreferenced-disks 1 --purge 1 frees everything.
func TestCreateWorkerSIGKILLBeforeConfig(t *testing.T) {
	n, root := initNode(t)
	cleanupMounts(t, root)
	killedCreate(t, root, "create-after-lock")
	if data, err := os.ReadFile(n.ConfPath(150)); err != nil || string(data) != "lock: create\n" {
		t.Errorf("config %q %v", data, err)
	}
	list, _ := pvecfg.ReadVMList(n.VMListPath())
	if _, ok := list.Lookup(150); !ok {
		t.Error(".vmlist lost 150")
	}
	vol := filepath.Join(root, "var/lib/vz/images/150/vm-150-disk-0.raw")
	if entries, err := os.ReadDir(vol); err != nil || len(entries) != 0 {
		t.Errorf("volume: %v, %d entries (the worker died before unpacking)", err, len(entries))
	}
	if _, stderr, code := pct(t, n, "destroy", "150"); code != 255 || stderr != "CT is locked (create)\n" {
		t.Errorf("destroy locked: %d %q", code, stderr)
	}
	if _, stderr, code := pct(t, n, "unlock", "150"); code != 0 {
		t.Fatalf("unlock: %s", stderr)
	}
	stdout, stderr, code := pct(t, n, "destroy", "150", "--destroy-unreferenced-disks", "1", "--purge", "1")
	if code != 0 || stdout != "purging CT 150 from related configurations..\n" {
		t.Fatalf("destroy: %d %q %q", code, stdout, stderr)
	}
	assertNoTrace(t, n, root, 150)
}

// Paused after the config was written in full: the worker has no output
// left, finishes and leaves the full config without a lock; destroy with
// the flags frees everything.
func TestCreateWorkerSIGKILLAfterConfig(t *testing.T) {
	n, root := initNode(t)
	cleanupMounts(t, root)
	killedCreate(t, root, "create-after-config")
	conf, err := n.loadConf(150)
	if err != nil {
		t.Fatal(err)
	}
	if _, locked := conf.Get("lock"); locked {
		t.Errorf("config still locked: %v", conf.Options)
	}
	if v, _ := conf.Get("rootfs"); v != "local:150/vm-150-disk-0.raw,size=1G" {
		t.Errorf("rootfs %q", v)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/vz/images/150/vm-150-disk-0.raw/etc/os-release")); err != nil {
		t.Errorf("template not unpacked: %v", err)
	}
	if _, stderr, code := pct(t, n, "unlock", "150"); code != 255 || stderr != "no lock found trying to remove any lock\n" {
		t.Errorf("unlock: %d %q", code, stderr)
	}
	if _, stderr, code := pct(t, n, "destroy", "150", "--destroy-unreferenced-disks", "1", "--purge", "1"); code != 0 {
		t.Fatalf("destroy: %s", stderr)
	}
	assertNoTrace(t, n, root, 150)
}

// A create that is not interrupted, through the worker process: the task
// output reaches pct's stdout, the result its exit status.
func TestCreateWorkerProcess(t *testing.T) {
	n, root := initNode(t)
	p := startPct(t, root, nil, "create", "151", debianTmpl, "--rootfs", "local:1", "--tags", "Web;db,web")
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d stderr %q", code, p.stderr.String())
	}
	if !strings.Contains(p.stdout.String(), "extracting archive '") || p.stderr.String() != "" {
		t.Errorf("stdout %q stderr %q", p.stdout.String(), p.stderr.String())
	}
	if conf, err := n.loadConf(151); err != nil || conf.Options["tags"] != "db;web" {
		t.Errorf("tags: %v %v", conf, err)
	}
	// --start 1 starts the CT from the worker; the container's monitor
	// holds none of pct's pipes, so pct returns.
	t.Cleanup(func() {
		pct(t, n, "stop", "153")
		pct(t, n, "destroy", "153", "--force")
	})
	p = startPct(t, root, nil, "create", "153", debianTmpl, "--unprivileged", "0", "--rootfs", "local:1",
		"--memory", "64", "--entrypoint", "/bin/sleep 1000", "--start", "1")
	if code := p.wait(t); code != 0 {
		t.Fatalf("create --start: exit %d stderr %q", code, p.stderr.String())
	}
	if stdout, _, _ := pct(t, n, "status", "153"); stdout != "status: running\n" {
		t.Errorf("after create --start: %q", stdout)
	}
	p = startPct(t, root, nil, "create", "152", "local:vztmpl/nope.tar")
	if code := p.wait(t); code != 255 || p.stderr.String() != "unable to create CT 152 - can't find file 'local:vztmpl/nope.tar'\n" {
		t.Errorf("exit %d stderr %q", code, p.stderr.String())
	}
	assertNoTrace(t, n, root, 152)
}

// When pct's stdout breaks (whoever read it died), pct does not die of
// SIGPIPE: tee_worker stops, and kill_process_group's SIGTERM makes the
// worker roll back. The worker holds at create-after-extract, right after
// its first output line, so the SIGTERM finds it before it writes again.
func TestCreateWorkerBrokenStdoutRollsBack(t *testing.T) {
	n, root := initNode(t)
	cleanupMounts(t, root)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	release := filepath.Join(t.TempDir(), "go") // never created
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pct")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "create", "150", debianTmpl, "--rootfs", "local:1")
	cmd.Env = append(os.Environ(), "PVESIM_ROOT="+root, "PVESIM_PAUSE=create-after-extract:"+release)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	err = cmd.Run()
	w.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 255 || stderr.String() != "broken pipe \n" {
		t.Errorf("pct: %v, stderr %q", err, stderr.String())
	}
	assertNoTrace(t, n, root, 150)
}
