package proxmox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/atomicfile"
	"github.com/nexcage/nexcage/internal/cgroups"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/netsetup"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
	"github.com/nexcage/nexcage/internal/trust"
)

// A container created from a bundle with a process runs nexcage's init
// helper as its init (internal/inithelper): `create` does pct create and
// pct start, the helper connects to a supervisor process (internal/
// supervisor) left behind by `create`, and waits; `start` asks the
// supervisor to release it (no pct call), and the helper execs
// process.args with the stdio `create` was given. The supervisor's pid is
// what --pid-file gets: it lives as long as the container and exits with
// its status, which is what containerd's shim waits for.

// Keys of state.Container.Data for supervised containers.
const (
	DataHelperDir      = "helper_dir"       // host directory mounted at /.nexcage
	DataSupervisor     = "supervisor"       // pid of the supervisor
	DataSupervisorTime = "supervisor_start" // its start time, against pid reuse
	DataStarted        = "started"          // "1" once start released the process
	// DataCapBnd is the container's own bounding set (hex CapBnd of the
	// init helper as LXC started it), to which exec narrows its helper.
	DataCapBnd = "cap_bnd"
)

// helperBase is where the helper directories live. It is under the LXC
// path because an unprivileged container's setup (running as the mapped
// root) must be able to traverse to the bind mount's source, and
// /var/lib/lxc is world-traversable on Proxmox hosts.
func (b *Backend) helperBase() string { return filepath.Join(b.lxcPath, ".nexcage") }

// helperPaths are the files of one supervised container.
type helperPaths struct {
	dir, ctl, process, signal string
}

func (b *Backend) helperPaths(dir string) helperPaths {
	return helperPaths{dir: dir, ctl: dir + ".ctl", process: dir + ".json", signal: dir + ".signal"}
}

func supervised(c *state.Container) bool { return c.Data[DataHelperDir] != "" }

// wantsHelper tells whether create runs the container through the init
// helper: every spec with a process to run (from a bundle, or from the
// OCI image config of a template-only container). A template alone
// keeps the template's own init.
func wantsHelper(spec *specs.Spec) bool {
	return spec != nil && spec.Process != nil && len(spec.Process.Args) > 0
}

// prepareHelper makes the helper directory of c (with a copy of the
// static nexcage binary as the helper). It records the directory in
// c.Data and calls save (the create's checkpoint) before it makes it, so
// that a crash cannot leave a directory no record names.
func (b *Backend) prepareHelper(c *state.Container, save func() error) (string, error) {
	base, err := b.makeHelperBase()
	if err != nil {
		return "", addContainer(c.ID, err)
	}
	r := make([]byte, 6)
	_, _ = rand.Read(r)
	dir := filepath.Join(base, SanitizeHostname(c.ID)+"-"+hex.EncodeToString(r))
	c.Data[DataHelperDir] = dir
	if save != nil {
		if err := save(); err != nil {
			delete(c.Data, DataHelperDir)
			return "", err
		}
	}
	self, err := b.helperSelf()
	if err != nil {
		return "", addContainer(c.ID, err)
	}
	// 0700, root's until ownHelperDir gives it to the container's root.
	if err := os.Mkdir(dir, 0o700); err != nil {
		delete(c.Data, DataHelperDir) // never remove a directory we did not make
		return "", errs.Wrap(errs.KindBackend, err, "container %s: cannot create the helper directory", c.ID)
	}
	if err := b.placeHelper(self, filepath.Join(dir, inithelper.BinaryName)); err != nil {
		return "", errs.Wrap(errs.KindBackend, err, "container %s: cannot place the init helper", c.ID)
	}
	return dir, nil
}

// helperBaseMode lets everyone traverse the helper base (an unprivileged
// container's setup runs as its mapped root and must reach its directory)
// but nobody except root list it.
const helperBaseMode = 0o711

// makeHelperBase makes the helper base (and corrects its mode).
func (b *Backend) makeHelperBase() (string, error) {
	base := b.helperBase()
	if err := os.MkdirAll(base, helperBaseMode); err != nil {
		return "", errs.Wrap(errs.KindBackend, err, "cannot create %s", base)
	}
	if err := os.Chmod(base, helperBaseMode); err != nil {
		return "", errs.Wrap(errs.KindBackend, err, "cannot set the mode of %s", base)
	}
	return base, nil
}

// ownHelperDir gives the helper directory (0700) to the container's root,
// the only one that may reach the init socket inside; the files in it
// stay root's (the binary 0755, so the container's root can run it).
func ownHelperDir(id, dir string, uid, gid int) error {
	if err := os.Lchown(dir, uid, gid); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot give the helper directory to the container's root", id)
	}
	return os.Chmod(dir, 0o700)
}

// helperCopyPattern names the shared copies of nexcage in the helper base.
const helperCopyPattern = ".nexcage-*"

// helperSelf returns the running nexcage's path (SelfExe), refusing a
// binary that is not static: it runs inside containers.
func (b *Backend) helperSelf() (string, error) {
	self := b.SelfExe
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return "", errs.Wrap(errs.KindInternal, err, "cannot find the nexcage binary for the init helper")
		}
	}
	if _, err := os.Stat(self); err != nil {
		return "", errs.Wrap(errs.KindInternal, err, "cannot find the nexcage binary for the init helper")
	}
	if dynamic, err := isDynamic(self); err != nil || dynamic {
		return "", errs.New(errs.KindInvalidConfig, "%s is not a static binary and cannot run inside containers as their init helper", self).
			WithHint("build nexcage with CGO_ENABLED=0 (make build does)")
	}
	return self, nil
}

// placeHelper puts a copy of self at dst (in a container's helper
// directory). Containers get a copy, never the host's binary, so a
// container cannot alter what the host runs. The copies of one binary
// are hard links of a shared copy in the helper base (named by the
// binary's size and mtime), so that a create costs a link, not a copy.
//
// Nothing is ever written outside the recorded helper directory: a copy
// is made inside it (its temporary file too), and only then linked to the
// shared name, so a create killed at any point leaves nothing that
// delete --force (which removes the directory and unused shared copies)
// does not find.
func (b *Backend) placeHelper(self, dst string) error {
	fi, err := os.Stat(self)
	if err != nil {
		return err
	}
	name := strings.Replace(helperCopyPattern, "*", fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano()), 1)
	shared := filepath.Join(filepath.Dir(filepath.Dir(dst)), name)
	if err := os.Link(shared, dst); err == nil {
		return nil
	}
	// No shared copy yet (or it went with the last container that used
	// it, removeUnusedHelperCopies): copy the binary, then share it.
	if err := copyFile(self, dst, 0o755); err != nil {
		return err
	}
	if err := os.Link(dst, shared); err != nil && !errors.Is(err, fs.ErrExist) {
		b.log.Debug("cannot share the init helper copy", "copy", dst, "err", err)
	}
	return nil
}

// removeUnusedHelperCopies removes the shared copies of nexcage no
// container links any more (link count 1), so nothing stays in the helper
// base once the last container is gone. A create that loses the race (its
// link fails) copies the binary itself instead.
func (b *Backend) removeUnusedHelperCopies() {
	copies, _ := filepath.Glob(filepath.Join(b.helperBase(), helperCopyPattern))
	for _, p := range copies {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 1 {
			_ = os.Remove(p)
		}
	}
}

// isDynamic reports whether the ELF file at p asks for a program
// interpreter (a dynamic loader).
func isDynamic(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, buf)
	return strings.Contains(string(buf[:n]), "/ld-linux") || strings.Contains(string(buf[:n]), "ld-musl"), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	pf, err := renameio.NewPendingFile(dst, renameio.WithPermissions(mode), renameio.WithExistingPermissions(), renameio.WithTempDir(filepath.Dir(dst)))
	if err != nil {
		return err
	}
	defer pf.Cleanup()
	if _, err := io.Copy(pf, in); err != nil {
		return err
	}
	if err := pf.Chmod(mode); err != nil {
		return err
	}
	return pf.CloseAtomicallyReplace()
}

// startSupervised starts the supervisor, then the container (pct start),
// and waits until the init helper is connected and ready. It fills c's
// pid and writes opts.PidFile with the supervisor's pid.
func (b *Backend) startSupervised(ctx context.Context, c *state.Container, vmid int, opts runtime.CreateOptions, proc *inithelper.Process, netCfg *netsetup.Config, rootfs *inithelper.RootfsSetup, uid, gid int) (err error) {
	hp := b.helperPaths(c.Data[DataHelperDir])
	if proc == nil {
		return errs.New(errs.KindInternal, "container %s: no process for the init helper", c.ID)
	}
	msg, _ := json.Marshal(inithelper.Message{Process: proc, Net: netCfg, Rootfs: rootfs, StartContainer: startContainerHooks(opts.Spec)})
	if err := atomicfile.Write(hp.process, msg, 0o600); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot write the process description", c.ID)
	}
	self := b.SelfExe
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return errs.Wrap(errs.KindInternal, err, "cannot find the nexcage binary for the supervisor")
		}
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "container %s: pipe", c.ID)
	}
	defer rd.Close()
	so := supervisor.Options{Dir: hp.dir, Ctl: hp.ctl, Process: hp.process, SignalFile: hp.signal,
		LxcPath: b.lxcPath, Name: strconv.Itoa(vmid), UID: uid, GID: gid, ConnectTimeout: b.PidTimeout, Pod: podNetOf(c)}
	cmd := exec.Command(self, append([]string{supervisor.Verb}, so.Args()...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = fileOrNull(opts.Stdin), fileOrNull(opts.Stdout), fileOrNull(opts.Stderr)
	cmd.ExtraFiles = []*os.File{wr}
	// Its own session: it must outlive this process and not get the
	// caller's terminal signals. It is reparented to the nearest
	// subreaper (containerd's shim) when create exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		_ = wr.Close()
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot start the supervisor", c.ID)
	}
	_ = wr.Close()
	sup := cmd.Process
	c.Data[DataSupervisor] = strconv.Itoa(sup.Pid)
	if st, ok := procfs.StartTime(sup.Pid); ok {
		c.Data[DataSupervisorTime] = st
	}
	if opts.Checkpoint != nil {
		// Recorded at once, so that delete --force stops it after a crash.
		if err := opts.Checkpoint(c); err != nil {
			_ = sup.Kill()
			_, _ = sup.Wait()
			return err
		}
	}
	// Reap it if it dies while create still runs; afterwards the shim (or
	// init) does.
	waited := make(chan struct{})
	exit := &supervisorExit{done: waited}
	b.supervisors.Store(c.ID, exit)
	go func() { exit.state, _ = sup.Wait(); close(waited) }()
	defer func() {
		if err != nil {
			_ = sup.Kill()
			<-waited
			b.supervisors.Delete(c.ID)
		}
	}()
	// The reader ends when this returns: on success the supervisor has
	// closed the pipe (after ready), on failure it is killed above, and
	// stopReading frees a reader blocked on a line nobody takes.
	lines := make(chan string)
	stopReading := make(chan struct{})
	readerDone := make(chan struct{})
	defer func() { close(stopReading); _ = rd.Close(); <-readerDone }()
	go func() {
		defer close(readerDone)
		defer close(lines)
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stopReading:
				return
			}
		}
	}()
	// The helper answers ready only once the network is configured.
	var netWait time.Duration
	if netCfg != nil {
		netWait = netCfg.Timeout
	}
	next := func(what string) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", errs.New(errs.KindBackend, "container %s: the supervisor exited before %s", c.ID, what)
			}
			return l, nil
		case <-time.After(b.PidTimeout + netWait + 5*time.Second):
			return "", errs.New(errs.KindTimeout, "container %s: no word from the supervisor before %s", c.ID, what)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	l, err := next("listening")
	if err != nil {
		return err
	}
	if l != supervisor.ReportListening {
		return errs.New(errs.KindBackend, "container %s: %s", c.ID, strings.TrimPrefix(l, supervisor.ReportError+" "))
	}
	if err := b.pct.Start(ctx, vmid); err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	l, err = next("the init helper is ready")
	if err != nil {
		return err
	}
	rest, ok := strings.CutPrefix(l, supervisor.ReportReady+" ")
	if !ok {
		msg := strings.TrimPrefix(l, supervisor.ReportError+" ")
		if strings.HasPrefix(msg, "network: ") {
			return errs.New(errs.KindBackend, "container %s: %s", c.ID, msg).
				WithHint("check the bridge and its DHCP server, or set a static address (annotations %s, %s); network.dhcp_timeout bounds the wait", AnnotationIP, AnnotationGateway)
		}
		where := "the image config"
		if opts.Bundle != "" {
			where = filepath.Join(opts.Bundle, "config.json")
		}
		if strings.HasPrefix(msg, "mounts[") || strings.HasPrefix(msg, "linux.maskedPaths") || strings.HasPrefix(msg, "linux.readonlyPaths") {
			// The init helper's rootfs setup (inithelper.RootfsSetup).
			return errs.New(errs.KindBackend, "container %s: %s", c.ID, msg).
				WithHint("the container cannot mount what %s asks for (mounts, linux.maskedPaths, linux.readonlyPaths; docs/MAPPING.md, \"The init helper presents the mounts\"): change that entry, or route this container to runc/crun", where)
		}
		return errs.New(errs.KindBackend, "container %s: %s", c.ID, msg).
			WithHint("the process in %s cannot run as asked (check process.args, cwd, user, capabilities, rlimits, linux.sysctl and PATH)", where)
	}
	pid, perr := strconv.Atoi(rest)
	if perr != nil || pid <= 0 {
		return errs.New(errs.KindBackend, "container %s: bad report from the supervisor: %q", c.ID, l)
	}
	c.Pid = pid
	if st, ok := procfs.StartTime(pid); ok {
		c.Data[DataStartTime] = st
	}
	if bnd, ok := capBnd(pid); ok {
		c.Data[DataCapBnd] = bnd
	}
	if opts.PidFile != "" {
		// Digits only, no newline: containerd's shim parses it with Atoi.
		if err := atomicfile.Write(opts.PidFile, []byte(strconv.Itoa(sup.Pid)), 0o644); err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot write the pid file", c.ID)
		}
	}
	return nil
}

// capBnd is the CapBnd line of /proc/<pid>/status.
func capBnd(pid int) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// fileOrNull passes f on when it is a file (a descriptor can be
// inherited), nil (/dev/null) otherwise.
func fileOrNull(v any) *os.File {
	if f, ok := v.(*os.File); ok && f != nil {
		return f
	}
	return nil
}

// startSupervisedProcess releases the init helper: no pct call.
func (b *Backend) startSupervisedProcess(c *state.Container) error {
	hp := b.helperPaths(c.Data[DataHelperDir])
	if err := b.writeStartState(c); err != nil {
		return err
	}
	if err := supervisor.Start(hp.ctl, b.recorded(c).startWait()); err != nil {
		var se syscall.Errno
		if errors.As(err, &se) && (se == syscall.ENOENT || se == syscall.ECONNREFUSED) {
			return errs.New(errs.KindState, "container %s: container not running (its supervisor is gone)", c.ID)
		}
		return errs.Wrap(errs.KindBackend, err, "container %s: start failed", c.ID)
	}
	c.Data[DataStarted] = "1"
	c.Status = state.Running
	return nil
}

// recordSignal tells the supervisor which signal was sent last, for the
// exit status it reports when the real one cannot be known.
func (b *Backend) recordSignal(c *state.Container, sig syscall.Signal) {
	if !supervised(c) {
		return
	}
	_ = atomicfile.Write(b.helperPaths(c.Data[DataHelperDir]).signal, []byte(strconv.Itoa(int(sig))), 0o600)
}

// cleanupHelper stops a supervisor still running and removes the helper
// files of c.
func (b *Backend) cleanupHelper(c *state.Container) {
	dir := c.Data[DataHelperDir]
	if dir == "" {
		return
	}
	if pid, err := strconv.Atoi(c.Data[DataSupervisor]); err == nil && pid > 0 {
		if st, ok := procfs.StartTime(pid); ok && st == c.Data[DataSupervisorTime] {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	} else {
		// A create killed between starting the supervisor and recording
		// its pid: the supervisor is found by its helper directory.
		for _, pid := range supervisorsOf(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Only a directory under our base, never anything a state file names
	// elsewhere.
	if filepath.Dir(dir) != b.helperBase() {
		b.log.Warn("helper directory outside the helper base; not removed", "id", c.ID, "dir", dir)
		return
	}
	hp := b.helperPaths(dir)
	for _, p := range []string{hp.ctl, hp.process, hp.signal} {
		_ = os.Remove(p)
	}
	// Temporary files of those (renameio's ".<name><random>") that a
	// create or kill killed while writing one left.
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".*"))
	for _, p := range tmps {
		_ = os.Remove(p)
	}
	if err := os.RemoveAll(dir); err != nil {
		b.log.Warn("cannot remove the helper directory", "id", c.ID, "dir", dir, "err", err)
	}
	if err := removeDevices(dir); err != nil {
		b.log.Warn("cannot remove the device directory", "id", c.ID, "dir", dir+deviceDirSuffix, "err", err)
	}
	b.removeUnusedHelperCopies()
}

// supervisorsOf returns the pids of the supervisors running for the
// helper directory dir (by their command line: the verb, then --dir dir).
// The directory's name is random and recorded before the supervisor
// starts, so a process with it is this container's.
func supervisorsOf(dir string) []int {
	pids, err := procfs.Pids()
	if err != nil {
		return nil
	}
	var out []int
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) >= 4 && args[1] == supervisor.Verb && args[2] == "--dir" && args[3] == dir {
			out = append(out, pid)
		}
	}
	return out
}

// waitLxcStopped waits (bounded) until LXC reports the container stopped:
// after its init exits, LXC needs a moment to tear it down, and pct
// destroy refuses a container that still runs.
func (b *Backend) waitLxcStopped(ctx context.Context, vmid int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := execOutput(ctx, b.lxcInfo, "-P", b.lxcPath, "-n", strconv.Itoa(vmid), "-s", "-H")
		if err != nil || strings.TrimSpace(out) == "STOPPED" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var _ runtime.Passthrougher = (*Backend)(nil)

// Passthrough implements the runc verbs exec and ps for Proxmox
// containers, and update for a pod's app containers (others are not
// supported).
func (b *Backend) Passthrough(ctx context.Context, c *state.Container, verb string, args []string, stdio runtime.Stdio) (int, error) {
	switch verb {
	case "exec":
		return b.exec(ctx, c, args, stdio)
	case "ps":
		return b.ps(ctx, c, args, stdio)
	case "update":
		if isPodContainer(c) {
			return 0, b.podUpdate(ctx, c, args, stdio)
		}
	}
	return 0, errs.New(errs.KindUnsupported, "%s is not supported for container %s on the %s backend", verb, c.ID, b.Name())
}

// execFlags are runc exec's flags this backend understands.
type execFlags struct {
	process, pidFile, cwd, user string
	detach, noNewPrivs          bool
	env                         []string
	command                     []string
}

func parseExecArgs(id string, args []string) (*execFlags, error) {
	f := &execFlags{}
	value := func(i *int, name string) (string, error) {
		if *i+1 >= len(args) {
			return "", errs.New(errs.KindUsage, "exec: flag %s needs a value", name)
		}
		*i++
		return args[*i], nil
	}
	seenID := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if seenID {
			f.command = append(f.command, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if a == "--" {
			seenID = true
			if i+1 < len(args) && args[i+1] == id {
				i++
			}
			continue
		}
		if !strings.HasPrefix(a, "-") {
			if a != id {
				return nil, errs.New(errs.KindUsage, "exec: unexpected argument %q", a)
			}
			seenID = true
			continue
		}
		get := func() (string, error) {
			if hasVal {
				return val, nil
			}
			return value(&i, a)
		}
		var err error
		switch name {
		case "process", "p":
			f.process, err = get()
		case "pid-file":
			f.pidFile, err = get()
		case "cwd":
			f.cwd, err = get()
		case "user", "u":
			f.user, err = get()
		case "env", "e":
			var v string
			v, err = get()
			f.env = append(f.env, v)
		case "detach", "d":
			f.detach = !hasVal || val == "true"
		case "tty", "t":
			if !hasVal || val == "true" {
				return nil, errs.New(errs.KindUnsupported, "exec: a terminal (--tty) is not supported on the proxmox-lxc backend")
			}
		case "console-socket":
			return nil, errs.New(errs.KindUnsupported, "exec: --console-socket is not supported on the proxmox-lxc backend")
		case "no-new-privs":
			f.noNewPrivs = !hasVal || val == "true"
		default:
			return nil, errs.New(errs.KindUnsupported, "exec: flag %s is not supported on the proxmox-lxc backend", a)
		}
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// exec runs a process in the container through lxc-attach and the exec
// helper (which sets env, cwd and user exactly). With --detach it writes
// lxc-attach's pid to --pid-file and returns; lxc-attach exits with the
// process's status, so the caller (containerd's shim) can reap it.
func (b *Backend) exec(ctx context.Context, c *state.Container, args []string, stdio runtime.Stdio) (int, error) {
	f, err := parseExecArgs(c.ID, args)
	if err != nil {
		return 0, err
	}
	if isPodContainer(c) {
		return b.podExec(c, f, stdio)
	}
	if err := b.Refresh(ctx, []*state.Container{c}); err != nil {
		return 0, err
	}
	vmid, ok := vmidOf(c)
	if c.Status != state.Running && c.Status != state.Created || !ok {
		return 0, errs.New(errs.KindState, "cannot exec in a stopped container: %s", c.ID)
	}
	if !supervised(c) {
		return 0, errs.New(errs.KindUnsupported, "exec: container %s was not created with nexcage's init helper", c.ID).
			WithHint("use `pct exec` for containers created from a template")
	}
	p, err := b.execProcess(c, f)
	if err != nil {
		return 0, err
	}
	p.ContainerBounding = c.Data[DataCapBnd]
	return b.attachExec(c, strconv.Itoa(vmid), f, p, stdio, nil)
}

// attachExec runs the exec helper with p in the CT vmid through
// lxc-attach. join, when not nil, is given the exec helper's host pid
// before the helper has its process (it reads it from a pipe until end
// of file), so that what join does (a pod container's cgroups) holds
// for the process and all its children.
func (b *Backend) attachExec(c *state.Container, vmid string, f *execFlags, p *inithelper.Process, stdio runtime.Stdio, join func(helper int) error) (int, error) {
	pj, _ := json.Marshal(p)
	// The process (its environment may hold secrets) goes to the exec
	// helper through a pipe on descriptor inithelper.ExecFD, never on
	// argv, which every local user can read in /proc/<pid>/cmdline.
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, errs.Wrap(errs.KindInternal, err, "exec in container %s: pipe", c.ID)
	}
	defer wr.Close()
	// --elevated-privileges=CAP: lxc-attach would otherwise narrow the
	// helper to the bounding set of the container's init (the bundle's
	// process), which may lack CAP_SETUID/CAP_SETGID/CAP_SETPCAP; the
	// helper drops to the exec'd process's own sets itself.
	if _, err := trust.LookPath(b.lxcAttach); errs.KindOf(err) == errs.KindInvalidConfig {
		return 0, errs.Wrap(errs.KindInvalidConfig, err, "exec in container %s: refusing to run %s", c.ID, b.lxcAttach)
	}
	cmd := exec.Command(b.lxcAttach, "-P", b.lxcPath, "-n", vmid, "--clear-env", "--elevated-privileges=CAP", "--",
		inithelper.Binary, inithelper.ExecVerb)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	if f.detach {
		// Descriptors only: the process outlives this nexcage.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = fileOrNull(stdio.Stdin), fileOrNull(stdio.Stdout), fileOrNull(stdio.Stderr)
	}
	cmd.ExtraFiles = make([]*os.File, inithelper.ExecFD-2)
	cmd.ExtraFiles[inithelper.ExecFD-3] = rd
	b.log.Debug("exec", "id", c.ID, "argv", cmd.Args)
	// lxc-attach and the process it attaches inherit it (oom.go).
	if err := setOOMScoreAdj(c.ID, 0, p.OOMScoreAdj); err != nil {
		_ = rd.Close()
		return 0, err
	}
	err = cmd.Start()
	_ = rd.Close()
	if err != nil {
		return 0, errs.Wrap(errs.KindBackend, err, "exec in container %s: cannot run lxc-attach", c.ID)
	}
	if join != nil {
		if err := joinExecHelper(cmd, b.PidTimeout, join); err != nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
			return 0, errs.Wrap(errs.KindBackend, err, "exec in container %s", c.ID)
		}
	}
	// A write error means lxc-attach or the helper failed before reading:
	// their own message and status say why.
	_, _ = wr.Write(pj)
	_ = wr.Close()
	if f.detach {
		if f.pidFile != "" {
			if err := atomicfile.Write(f.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
				_ = cmd.Process.Kill()
				_, _ = cmd.Process.Wait()
				return 0, errs.Wrap(errs.KindBackend, err, "exec in container %s: cannot write the pid file", c.ID)
			}
		}
		_ = cmd.Process.Release()
		return 0, nil
	}
	if f.pidFile != "" {
		_ = atomicfile.Write(f.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, errs.Wrap(errs.KindBackend, err, "exec in container %s", c.ID)
	}
	return 0, nil
}

// execProcess is the process `exec` runs: the --process file as it is
// (runc's process.json, validated like a bundle's process), or, as runc
// does, the container's own process with the command, --env (added),
// --cwd, --user and --no-new-privs of the command line: so an exec'd
// process gets the same user, groups, umask, rlimits, capabilities and
// noNewPrivileges as the container's unless told otherwise.
func (b *Backend) execProcess(c *state.Container, f *execFlags) (*inithelper.Process, error) {
	if f.process != "" {
		data, err := os.ReadFile(f.process)
		if err != nil {
			return nil, errs.Wrap(errs.KindUsage, err, "exec: cannot read the process file")
		}
		var sp specs.Process
		if err := json.Unmarshal(data, &sp); err != nil {
			return nil, errs.Wrap(errs.KindUsage, err, "exec: %s is not a process JSON", f.process)
		}
		if sp.Terminal {
			return nil, errs.New(errs.KindUnsupported, "exec: a terminal is not supported on the proxmox-lxc backend")
		}
		if len(sp.Args) == 0 {
			return nil, errs.New(errs.KindUsage, "exec: no command given")
		}
		p, err := HelperProcess(&sp)
		if err != nil {
			return nil, addContainer(c.ID, err)
		}
		if p.Capabilities == nil {
			// Never more than the container's own process may have
			// (lxc-attach runs the helper with all of the container's).
			if cp := b.containerProcess(c); cp != nil {
				p.Capabilities = cp.Capabilities
			}
		}
		return p, nil
	}
	if len(f.command) == 0 {
		return nil, errs.New(errs.KindUsage, "exec: no command given")
	}
	p := b.containerProcess(c)
	if p == nil {
		p = &inithelper.Process{Cwd: "/"}
	}
	p.Args, p.Sysctl = f.command, nil
	for _, e := range f.env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.ContainsRune(e, 0) {
			return nil, errs.New(errs.KindUsage, "exec: --env %q is not NAME=value", e)
		}
	}
	p.Env = append(p.Env, f.env...)
	if f.cwd != "" {
		if !filepath.IsAbs(f.cwd) {
			return nil, errs.New(errs.KindUsage, "exec: --cwd %q is not an absolute path", f.cwd)
		}
		p.Cwd = filepath.Clean(f.cwd)
	}
	for _, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return nil, errs.New(errs.KindUsage, "exec: an argument contains a NUL byte")
		}
	}
	if f.user != "" {
		u, g, _ := strings.Cut(f.user, ":")
		uid, err1 := strconv.ParseUint(u, 10, 32)
		gid, err2 := strconv.ParseUint(orDefault(g, "0"), 10, 32)
		if err1 != nil || err2 != nil {
			return nil, errs.New(errs.KindUsage, "exec: --user %q is not uid[:gid]", f.user)
		}
		p.UID, p.GID = uint32(uid), uint32(gid)
	}
	if f.noNewPrivs {
		p.NoNewPrivileges = true
	}
	return p, nil
}

// containerProcess is the process create handed to c's init helper, nil
// when it cannot be read.
func (b *Backend) containerProcess(c *state.Container) *inithelper.Process {
	file := b.helperPaths(c.Data[DataHelperDir]).process
	if isPodContainer(c) {
		file = filepath.Join(c.Data[DataPodDir], podProcessFile)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var m inithelper.Message
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m.Process
}

// ps lists the container's processes by host pid: `ps --format json`
// prints a JSON array of pids, as runc does; the table has PID and CMD.
func (b *Backend) ps(ctx context.Context, c *state.Container, args []string, stdio runtime.Stdio) (int, error) {
	format := "table"
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--format" || a == "-f":
			if i+1 < len(args) {
				format = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--format="):
			format = strings.TrimPrefix(a, "--format=")
		case strings.HasPrefix(a, "-") && a != "--":
			return 0, errs.New(errs.KindUnsupported, "ps: flag %s is not supported on the proxmox-lxc backend", a)
		case a != c.ID && a != "--":
			return 0, errs.New(errs.KindUnsupported, "ps: ps options are not supported on the proxmox-lxc backend")
		}
	}
	if format != "table" && format != "json" {
		return 0, errs.New(errs.KindUsage, "ps: invalid format option %q", format)
	}
	if err := b.Refresh(ctx, []*state.Container{c}); err != nil {
		return 0, err
	}
	if c.Status != state.Running && c.Status != state.Created {
		return 0, errs.New(errs.KindState, "container %s: container not running", c.ID)
	}
	var pids []int
	var err error
	if isPodContainer(c) {
		// Its process and what it started (the CT's pid namespace is the
		// pod's), and the members of its cgroups (exec'd processes,
		// orphans the CT's init adopted).
		if pid, ok := podProcAlive(c); ok {
			pids = append([]int{pid}, descendants(pid)...)
		}
		if dirs, derr := podCgroupDirs(c); derr == nil {
			for _, p := range cgroups.Procs(dirs) {
				if !slices.Contains(pids, p) {
					pids = append(pids, p)
				}
			}
		}
	} else {
		pids, err = pidsInNamespace(c.Pid)
	}
	if err != nil {
		return 0, errs.Wrap(errs.KindBackend, err, "container %s: cannot list its processes", c.ID)
	}
	if format == "json" {
		if pids == nil {
			pids = []int{}
		}
		data, _ := json.Marshal(pids)
		_, err := fmt.Fprintln(stdio.Stdout, string(data))
		return 0, err
	}
	fmt.Fprintln(stdio.Stdout, "PID\tCMD")
	for _, p := range pids {
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		fmt.Fprintf(stdio.Stdout, "%d\t%s\n", p, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return 0, nil
}
