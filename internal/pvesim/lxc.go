package pvesim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// Tunables of the LXC half; variables so tests can shorten them.
var (
	// startTimeout is how long startCT waits for RUNNING (Proxmox's
	// monitor waits 10 s for the state change).
	startTimeout = 10 * time.Second
	// stopGrace is how long stopCT waits for the monitor to go away
	// after lxc-stop returned.
	stopGrace = 10 * time.Second
	// pollInterval paces the state polls.
	pollInterval = 10 * time.Millisecond
)

// ctDir is var/lib/lxc/<vmid>.
func (n *Node) ctDir(vmid int) string { return filepath.Join(n.LxcPath(), strconv.Itoa(vmid)) }

// stderrPath is /run/pve/ct-<vmid>.stderr.
func (n *Node) stderrPath(vmid int) string {
	return filepath.Join(n.RunPveDir(), "ct-"+strconv.Itoa(vmid)+".stderr")
}

// startCT writes the LXC configuration for conf and starts the container
// the way `pct start` does: `lxc-start -F` (the command Proxmox's systemd
// unit runs) as a detached session leader whose stdout is /dev/null and
// whose stderr is run/pve/ct-<vmid>.stderr, which init inherits because
// there is no console. It returns once LXC reports RUNNING. If the
// container does not come up, LXC's messages from the stderr file are
// printed to n.Stderr and the error is Proxmox's
// `startup for container '<vmid>' failed`.
func (n *Node) startCT(vmid int, conf *pvecfg.Config) error {
	cfg, err := n.buildLxcConfig(vmid, conf)
	if err != nil {
		return err
	}
	for _, w := range cfg.warnings {
		n.warnf("%s\n", w)
	}
	n.killDHClients(vmid) // clients left by a container that stopped on its own
	dir := n.ctDir(vmid)
	if err := os.MkdirAll(cfg.rootfs, 0o755); err != nil {
		return err
	}
	for name, data := range cfg.files {
		if err := renameio.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	if err := renameio.WriteFile(filepath.Join(dir, "config"), []byte(cfg.text.String()), 0o644); err != nil {
		return err
	}
	if v, _ := conf.Get("unprivileged"); v == "1" {
		if err := checkSubIDs(); err != nil {
			return err
		}
	}
	// The mapped root must be able to reach its rootfs (and LXC opens
	// the root volume through var/lib/lxc/<vmid>/rootfs).
	if err := makeTraversable(cfg.rootfs, n.Root); err != nil {
		return err
	}
	if err := os.MkdirAll(n.RunPveDir(), 0o755); err != nil {
		return err
	}
	logPath := n.stderrPath(vmid)
	_ = os.Remove(logPath) // systemd does not truncate log files either
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()

	cmd := exec.Command("lxc-start", "-F", "-n", strconv.Itoa(vmid), "-P", n.LxcPath())
	cmd.Stdin = nil  // /dev/null
	cmd.Stdout = nil // /dev/null: Proxmox discards the container's stdout
	cmd.Stderr = logFile
	cmd.Env = hostEnv()
	// Its own session, so the container outlives this process and its
	// terminal, like a systemd service.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Proxmox's pre-start hook mounts the root volume at
	// var/lib/lxc/<vmid>/rootfs and the mount points below it inside
	// the monitor's private mount namespace (lxc.monitor.unshare); LXC
	// then binds that tree recursively as the container's root and
	// mounts its /dev tmpfs over it. The simulator does the same mounts
	// in a private namespace that lxc-start inherits.
	err = withMountNamespace(func() error {
		if err := n.mountVolumes(conf, cfg.rootfs, false, true); err != nil {
			return &prestartError{vmid: vmid, err: err}
		}
		return cmd.Start()
	})
	var pe *prestartError
	if errors.As(err, &pe) {
		pe.log(logFile)
		n.printStartLog(vmid)
		return pe
	}
	if err != nil {
		return fmt.Errorf("unable to run lxc-start: %w", err)
	}
	pid := cmd.Process.Pid
	// From here on the monitor is on its own; the kernel keeps its status
	// for the Wait4 polls below.
	_ = cmd.Process.Release()

	deadline := time.Now().Add(startTimeout)
	for {
		var ws syscall.WaitStatus
		wpid, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if wpid == pid {
			n.printStartLog(vmid)
			return fmt.Errorf("startup for container '%d' failed", vmid)
		}
		state, _ := n.lxcState(vmid)
		if state == "RUNNING" {
			n.startHostManagedDHCP(vmid, conf)
			return nil
		}
		if time.Now().After(deadline) {
			// Proxmox: the monitor socket timed out; it warns and
			// carries on.
			n.warnf("problem with monitor socket, but continuing anyway: got timeout\n")
			n.startHostManagedDHCP(vmid, conf)
			return nil
		}
		time.Sleep(pollInterval)
	}
}

// prestartError is a failure of the pre-start mounts, i.e. of Proxmox's
// lxc.hook.pre-start. LXC logs only that the hook failed (the hook's own
// words are in its debug log); pct start then fails as for any container
// that does not come up.
type prestartError struct {
	vmid int
	err  error
}

func (e *prestartError) Error() string {
	return fmt.Sprintf("startup for container '%d' failed", e.vmid)
}

// log writes what lxc-start (lxc-pve 6.0) prints on stderr when the
// pre-start hook fails; the status is the hook's exit status, the errno
// Perl's die leaves (ENOENT for a missing directory, ENOTDIR, which
// openat(O_NOFOLLOW|O_DIRECTORY) returns for a symlink and for a file in
// a path), else 255.
func (e *prestartError) log(w io.Writer) {
	status := 255
	var he *hookError
	if errors.As(e.err, &he) {
		status = he.status
	}
	fmt.Fprintf(w, "lxc-start: %d: ../src/lxc/utils.c: run_buffer: 571 Script exited with status %d\n", e.vmid, status)
	fmt.Fprintf(w, "lxc-start: %d: ../src/lxc/start.c: lxc_init: 845 Failed to run lxc.hook.pre-start for container \"%d\"\n", e.vmid, e.vmid)
	fmt.Fprintf(w, "lxc-start: %d: ../src/lxc/start.c: __lxc_start: 2034 Failed to initialize container \"%d\"\n", e.vmid, e.vmid)
}

// debugLine is the line of LXC's debug log (`pct start --debug`) that
// carries the hook's own message.
func (e *prestartError) debugLine() string {
	return fmt.Sprintf("DEBUG    utils - ../src/lxc/utils.c:run_buffer:560 - Script exec /usr/share/lxc/hooks/lxc-pve-prestart-hook %d lxc pre-start produced output: %s",
		e.vmid, strings.TrimSuffix(errorText(e.err), "\n"))
}

// reLxcPrefix strips the `lxc-start: <vmid>: ` prefix of LXC messages, as
// pve-container's print_ct_stderr_log does.
var reLxcPrefix = regexp.MustCompile(`^\s*(lxc-start:?\s+\d+:?\s*\S+\s*)?(.*?)\s*$`)

func (n *Node) printStartLog(vmid int) {
	data, err := os.ReadFile(n.stderrPath(vmid))
	if err != nil || len(data) == 0 {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		m := reLxcPrefix.FindStringSubmatch(sc.Text())
		n.warnf("%s\n", m[2])
	}
}

// lxcState asks LXC for the container's state (RUNNING, STOPPED, ...).
func (n *Node) lxcState(vmid int) (string, error) {
	out, err := exec.Command("lxc-info", "-P", n.LxcPath(), "-n", strconv.Itoa(vmid), "-s", "-H").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// commandSocket is the abstract socket LXC's monitor listens on, which
// Proxmox's list_active_containers looks for in /proc/net/unix.
func (n *Node) commandSocket(vmid int) string {
	return "@" + filepath.Join(n.LxcPath(), strconv.Itoa(vmid), "command")
}

// socketListed reports whether the abstract socket name is bound.
func socketListed(name string) (bool, error) {
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[7] == name {
			return true, nil
		}
	}
	return false, nil
}

// ctStatus reports whether the container runs and the host PID of its
// init, like Proxmox's vmstatus: the monitor's command socket in
// /proc/net/unix says whether it is active, `lxc-info -p` gives the pid.
// A container whose pid cannot be read counts as stopped (with a warning).
func (n *Node) ctStatus(vmid int) (bool, int, error) {
	sock := n.commandSocket(vmid)
	var active bool
	if len(sock) <= 107 {
		var err error
		if active, err = socketListed(sock); err != nil {
			return false, 0, err
		}
	} else {
		// LXC hashes socket names that do not fit sun_path; ask it.
		st, _ := n.lxcState(vmid)
		active = st != "" && st != "STOPPED"
	}
	if !active {
		return false, 0, nil
	}
	out, err := exec.Command("lxc-info", "-P", n.LxcPath(), "-n", strconv.Itoa(vmid), "-p").Output()
	if err == nil {
		if m := regexp.MustCompile(`(?m)^PID:\s+(\d+)$`).FindSubmatch(out); m != nil {
			pid, _ := strconv.Atoi(string(m[1]))
			return true, pid, nil
		}
	}
	n.warnf("unable to get PID for CT %d (not running?)\n", vmid)
	return false, 0, nil
}

// stopCT kills the container at once (`lxc-stop --kill`) and waits until
// its monitor is gone. A container that is not running is left alone.
func (n *Node) stopCT(vmid int) error {
	if running, _, _ := n.ctStatus(vmid); !running {
		n.killDHClients(vmid)
		return nil
	}
	out, err := exec.Command("lxc-stop", "-P", n.LxcPath(), "-n", strconv.Itoa(vmid), "--kill").CombinedOutput()
	if err != nil {
		if running, _, _ := n.ctStatus(vmid); running {
			return fmt.Errorf("command 'lxc-stop -n %d --kill' failed: %s", vmid, strings.TrimSpace(string(out)))
		}
	}
	err = n.waitStopped(vmid, stopGrace)
	if err == nil {
		n.killDHClients(vmid) // vm_stop_cleanup
	}
	return err
}

// shutdownCT asks the container's init to halt (`lxc-stop` without
// --kill sends lxc.signal.halt, SIGPWR by default) and waits up to
// timeout. Without forceStop a container still running then fails with
// Proxmox's `container did not stop`; with it, LXC kills it.
func (n *Node) shutdownCT(vmid int, timeout time.Duration, forceStop bool) error {
	if running, _, _ := n.ctStatus(vmid); !running {
		return nil
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	args := []string{"-P", n.LxcPath(), "-n", strconv.Itoa(vmid)}
	if !forceStop {
		args = append(args, "--nokill")
	}
	args = append(args, "--timeout", strconv.Itoa(secs))
	out, err := exec.Command("lxc-stop", args...).CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			n.warnf("%s\n", msg)
		}
	}
	// lxc-stop already waited the timeout; give the monitor a moment to
	// go away before declaring failure.
	if err := n.waitStopped(vmid, time.Second); err != nil {
		return errors.New("container did not stop")
	}
	n.killDHClients(vmid) // vm_stop_cleanup
	return nil
}

// waitStopped polls until the container's command socket is gone.
func (n *Node) waitStopped(vmid int, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		running, _, err := n.ctStatus(vmid)
		if err != nil {
			return err
		}
		if !running {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("container did not stop")
		}
		time.Sleep(pollInterval)
	}
}

// execCT runs argv inside the running container with `lxc-attach`, wired
// to n's stdio, and returns the command's exit status (as `pct exec`
// does by exec'ing lxc-attach). lxc-attach keeps the caller's environment
// and adds the container's lxc.environment; the simulator's own PVESIM_*
// variables are not passed on.
func (n *Node) execCT(vmid int, argv []string) (int, error) {
	if len(argv) == 0 {
		return 255, errors.New("missing command")
	}
	args := append([]string{"-P", n.LxcPath(), "-n", strconv.Itoa(vmid), "--"}, argv...)
	cmd := exec.Command("lxc-attach", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = n.Stdin, n.Stdout, n.Stderr
	cmd.Env = hostEnv()
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 255, fmt.Errorf("unable to run lxc-attach: %w", err)
	}
	return 0, nil
}

// hostEnv is this process's environment without the simulator's own
// variables, with the PATH Proxmox's CLI tools set for themselves.
func hostEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PVESIM_") || strings.HasPrefix(kv, "PATH=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PATH=/sbin:/bin:/usr/sbin:/usr/bin")
}

// subIDFiles are where newuidmap/newgidmap look up root's id ranges.
var subIDFiles = []string{"/etc/subuid", "/etc/subgid"}

// checkSubIDs fails early, with the fix, when the host does not delegate
// 100000-165535 to root as a Proxmox host does; LXC run as root maps ids
// through newuidmap whenever the uidmap package is installed.
func checkSubIDs() error {
	if _, err := exec.LookPath("newuidmap"); err != nil {
		return nil // LXC writes the maps itself
	}
	for _, f := range subIDFiles {
		data, _ := os.ReadFile(f)
		ok := false
		for _, line := range strings.Split(string(data), "\n") {
			p := strings.Split(strings.TrimSpace(line), ":")
			if len(p) != 3 || (p[0] != "root" && p[0] != "0") {
				continue
			}
			start, err1 := strconv.Atoi(p[1])
			count, err2 := strconv.Atoi(p[2])
			if err1 == nil && err2 == nil && start <= unprivIDBase && start+count >= unprivIDBase+unprivIDCount {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("unprivileged containers need 'root:100000:65536' in %s, as on a Proxmox host (run 'make deps')", f)
		}
	}
	return nil
}

// unixStat is the part of a device's stat startCT needs.
type unixStat struct {
	kind         byte // 'c' or 'b'
	major, minor uint32
}

func statDevice(p string, st *unixStat) error {
	var s unix.Stat_t
	if err := unix.Stat(p, &s); err != nil {
		return err
	}
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		st.kind = 'c'
	case unix.S_IFBLK:
		st.kind = 'b'
	default:
		return fmt.Errorf("%s is not a device", p)
	}
	st.major, st.minor = unix.Major(s.Rdev), unix.Minor(s.Rdev)
	return nil
}
