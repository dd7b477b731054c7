package proxmox

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/cgroups"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
	"github.com/nexcage/nexcage/internal/trust"
)

// An app container of a Kubernetes pod on the Proxmox backend is a
// process tree inside the pod's CT (docs/KUBERNETES.md §5): no CT of its
// own. create finds the CT by the sandbox's namespace paths, shifts the
// image rootfs's ownership into the CT's id range (as pct create does for
// an unprivileged CT's rootfs), and runs the pod-run helper in the CT
// through lxc-attach with the rootfs and the bundle's bind mounts as
// detached mounts (open_tree); the helper builds the container's mount
// namespace on them, prepares the process and waits on the exec fifo
// until start. lxc-attach's pid is the --pid-file's: it exits with the
// process's status. The container shares the CT's network, IPC, UTS
// and pid namespaces.

// Keys of state.Container.Data for a pod's app container.
const (
	DataPodCT        = "pod_ct"         // VMID of the pod's CT (never DataVMID: the CT is the sandbox's)
	DataPodSandbox   = "pod_sandbox"    // the sandbox's container id
	DataPodDir       = "pod_dir"        // host directory with the exec fifo and the process
	DataPodProc      = "pod_proc"       // host pid of the container's process
	DataPodProcStart = "pod_proc_start" // its start time
	DataPodNSPid     = "pod_nspid"      // its pid in the CT
	// DataPodCgroups: the container's own cgroups (a JSON list of host
	// directories, children of the CT's), recorded before they are made.
	DataPodCgroups = "pod_cgroups"
)

// Files in a pod container's directory: the exec fifo, and the process
// create gave it (inithelper.Message), on which exec builds its own.
const (
	podFifo        = "exec.fifo"
	podProcessFile = "process.json"
)

func isPodContainer(c *state.Container) bool { return c.Data[DataPodCT] != "" }

// podCT identifies the pod's CT from an app container's namespace paths:
// /proc/<pid>/ns/{net,ipc,uts}, pid being the sandbox's task pid, which
// is its supervisor's (nexcage wrote it to the sandbox's --pid-file).
// The supervisor's command line names the CT and its helper directory,
// whose name starts with the sandbox's id.
func (b *Backend) podCT(id string, p *podInfo, spec *specs.Spec) (vmid int, err error) {
	sandboxID := spec.Annotations[config.AnnotationSandboxID]
	if sandboxID == "" || spec.Linux == nil {
		return 0, p.refuse(id, "the bundle names no sandbox (annotation %s)", config.AnnotationSandboxID)
	}
	pid := 0
	for _, want := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		var ns *specs.LinuxNamespace
		for i := range spec.Linux.Namespaces {
			if spec.Linux.Namespaces[i].Type == want {
				ns = &spec.Linux.Namespaces[i]
			}
		}
		if ns == nil {
			return 0, p.refuse(id, "the container shares the host's %s namespace, which a Proxmox container cannot do", want)
		}
		var n int
		if _, err := fmt.Sscanf(ns.Path, "/proc/%d/ns/", &n); err != nil || n <= 0 || ns.Path != fmt.Sprintf("/proc/%d/ns/%s", n, nsFile(want)) {
			return 0, p.refuse(id, "its %s namespace (%q) is not its sandbox's", want, ns.Path)
		}
		if pid != 0 && n != pid {
			return 0, p.refuse(id, "its namespaces name two processes (%d, %d)", pid, n)
		}
		pid = n
	}
	for _, ns := range spec.Linux.Namespaces {
		switch {
		case ns.Type == specs.UserNamespace || ns.Type == specs.CgroupNamespace:
			if ns.Path != "" {
				return 0, p.refuse(id, "it joins the %s namespace %s, which a Proxmox container cannot do", ns.Type, ns.Path)
			}
		case ns.Type == specs.PIDNamespace && ns.Path != "" && ns.Path != fmt.Sprintf("/proc/%d/ns/pid", pid):
			return 0, p.refuse(id, "its pid namespace (%q) is not its sandbox's", ns.Path)
		}
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return 0, p.refuse(id, "its sandbox (task pid %d) is not running", pid)
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	flag := func(name string) string {
		for i := 2; i+1 < len(args); i++ {
			if args[i] == name {
				return args[i+1]
			}
		}
		return ""
	}
	if len(args) < 2 || args[1] != supervisor.Verb {
		return 0, p.refuse(id, "its sandbox's task (pid %d) is not a Proxmox pod's (its sandbox runs on another backend)", pid)
	}
	dir := flag("--dir")
	if flag("--lxc-path") != b.lxcPath || filepath.Dir(dir) != b.helperBase() || !strings.HasPrefix(filepath.Base(dir), SanitizeHostname(sandboxID)+"-") {
		return 0, p.refuse(id, "the process %d its namespaces name is not the supervisor of sandbox %s on this node", pid, sandboxID)
	}
	vmid, err = strconv.Atoi(flag("--name"))
	if err != nil || vmid <= 0 {
		return 0, p.refuse(id, "the supervisor of sandbox %s names no CT", sandboxID)
	}
	return vmid, nil
}

func nsFile(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "net"
	case specs.MountNamespace:
		return "mnt"
	}
	return string(t)
}

// podMounts maps the bundle's mounts: the kernel file systems are the
// CT's own (/proc, /sys and /dev's device nodes, pts, shm, recursively
// bound), tmpfs are new, binds are detached clones of their sources.
// It returns the helper's mounts and the bind sources in order.
func podMounts(id string, p *podInfo, spec *specs.Spec) ([]inithelper.PodMount, []specs.Mount, error) {
	ms := []inithelper.PodMount{
		{Kind: "rbind-ct", Destination: "/proc"},
		{Kind: "rbind-ct", Destination: "/sys"},
		{Kind: "tmpfs", Destination: "/dev", Flags: unix.MS_NOSUID, Data: "mode=755,size=65536k"},
	}
	for _, d := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts", "/dev/ptmx", "/dev/shm"} {
		ms = append(ms, inithelper.PodMount{Kind: "rbind-ct", Destination: d})
	}
	var binds []specs.Mount
	for i, m := range spec.Mounts {
		dest := path.Clean("/" + m.Destination)
		bind := m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
		switch {
		case (dest == "/sys" || dest == "/sys/fs/cgroup") && slices.Contains(m.Options, "ro"):
			// The CT's own, read-only (with its cgroup file system, which
			// holds the container's limits), as runc mounts them for an
			// unprivileged container.
			ms[1].ReadOnly = true
		case dest == "/proc" || dest == "/sys" || dest == "/dev" || dest == "/dev/shm" || dest == "/dev/pts" || dest == "/dev/mqueue" || strings.HasPrefix(dest, "/sys/"):
			// The CT's own (above); the pod's shm is the CT's /dev/shm.
		case bind:
			if strings.HasPrefix(m.Source, "/dev/") || m.Source == "/dev" {
				return nil, nil, p.refuse(id, "mounts[%d]: binding the host's %s is not given to a pod's Proxmox container", i, m.Source)
			}
			ms = append(ms, inithelper.PodMount{Kind: "bind", Destination: dest})
			binds = append(binds, m)
		case m.Type == "tmpfs":
			ms = append(ms, inithelper.PodMount{Kind: "tmpfs", Destination: dest, Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: tmpfsData(m.Options)})
		default:
			return nil, nil, p.refuse(id, "mounts[%d] (%s on %s) cannot be made in a pod's Proxmox container", i, m.Type, dest)
		}
	}
	return ms, binds, nil
}

func tmpfsData(opts []string) string {
	var out []string
	for _, o := range opts {
		if strings.HasPrefix(o, "size=") || strings.HasPrefix(o, "mode=") {
			out = append(out, o)
		}
	}
	return strings.Join(out, ",")
}

// idMap is one line of /proc/<pid>/uid_map or gid_map.
type idMap struct{ inside, outside, count uint32 }

func readIDMap(p string) ([]idMap, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var out []idMap
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m idMap
		if _, err := fmt.Sscan(l, &m.inside, &m.outside, &m.count); err != nil {
			return nil, fmt.Errorf("%s: %q", p, l)
		}
		out = append(out, m)
	}
	return out, nil
}

func mapID(ms []idMap, id uint32) (uint32, bool) {
	for _, m := range ms {
		if id >= m.inside && id-m.inside < m.count {
			return m.outside + id - m.inside, true
		}
	}
	return 0, false
}

// shiftRootfs gives the rootfs's files to the CT's ids (container id N
// -> the host id the CT maps N to), as pct create does for an
// unprivileged CT's rootfs, so that the container's root owns its image
// as with runc. A rootfs whose root is already the CT root's is left.
func shiftRootfs(rootfs string, uids, gids []idMap) error {
	root0, _ := mapID(uids, 0)
	var st unix.Stat_t
	if err := unix.Lstat(rootfs, &st); err != nil {
		return err
	}
	if st.Uid == root0 && root0 != 0 {
		return nil
	}
	return filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		u, ok1 := mapID(uids, st.Uid)
		g, ok2 := mapID(gids, st.Gid)
		if !ok1 || !ok2 {
			return fmt.Errorf("%s is owned by %d:%d, which the pod's CT does not map", p, st.Uid, st.Gid)
		}
		if err := unix.Lchown(p, int(u), int(g)); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			// chown drops set-id bits; give them back.
			return unix.Chmod(p, st.Mode&07777)
		}
		return nil
	})
}

// createPodContainer creates an app container inside its pod's CT.
func (b *Backend) createPodContainer(ctx context.Context, c *state.Container, p *podInfo, opts runtime.CreateOptions) (err error) {
	spec := opts.Spec
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return errs.New(errs.KindInvalidBundle, "container %s: the spec has no process; nothing to run", c.ID)
	}
	if spec.Process.Terminal {
		return p.refuse(c.ID, "a terminal (process.terminal) is not given to a pod's Proxmox container yet")
	}
	if spec.Process.Capabilities != nil && slices.Contains(spec.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		return p.refuse(c.ID, "a privileged container (CAP_SYS_ADMIN, as securityContext.privileged gives) asks for the host's devices and kernel, which a Proxmox container does not give")
	}
	if spec.Linux != nil && (len(spec.Linux.Devices) > 0 || len(spec.Linux.Sysctl) > 0) {
		return p.refuse(c.ID, "devices and sysctls (linux.devices, linux.sysctl) are not given to a pod's app container")
	}
	if spec.Root == nil || opts.Bundle == "" {
		return errs.New(errs.KindInvalidBundle, "container %s: no rootfs", c.ID)
	}
	vmid, err := b.podCT(c.ID, p, spec)
	if err != nil {
		return err
	}
	proc, err := HelperProcess(spec.Process)
	if err != nil {
		return addContainer(c.ID, err)
	}
	mounts, binds, err := podMounts(c.ID, p, spec)
	if err != nil {
		return err
	}
	initPid, err := b.initPid(ctx, vmid)
	if err != nil {
		return addContainer(c.ID, err)
	}
	uids, err1 := readIDMap(fmt.Sprintf("/proc/%d/uid_map", initPid))
	gids, err2 := readIDMap(fmt.Sprintf("/proc/%d/gid_map", initPid))
	if err := errors.Join(err1, err2); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot read the id mapping of the pod's CT %d", c.ID, vmid)
	}
	// Never more capabilities than the pod's CT has (its init's bounding
	// set): lxc-attach runs the helper with all of them (it mounts and
	// may switch user), and it narrows itself after its mounts.
	bnd, ok := capBnd(initPid)
	if !ok {
		return errs.New(errs.KindBackend, "container %s: cannot read the bounding set of the pod's CT %d", c.ID, vmid)
	}
	proc.ContainerBounding = bnd
	limits, err := b.podLimits(c.ID, p, vmid, initPid, spec)
	if err != nil {
		return err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(opts.Bundle, rootfs)
	}
	if c.Data == nil {
		c.Data = map[string]string{}
	}
	base, err := b.makeHelperBase()
	if err != nil {
		return addContainer(c.ID, err)
	}
	r := make([]byte, 6)
	_, _ = rand.Read(r)
	dir := filepath.Join(base, "pod-"+SanitizeHostname(c.ID)+"-"+hex.EncodeToString(r))
	c.Data[DataPodCT], c.Data[DataPodSandbox], c.Data[DataPodDir] = strconv.Itoa(vmid), spec.Annotations[config.AnnotationSandboxID], dir
	if len(limits.Dirs) > 0 {
		// Recorded before they exist, so that a delete after an
		// interrupted create finds them.
		dirs, _ := json.Marshal(limits.Dirs)
		c.Data[DataPodCgroups] = string(dirs)
	}
	if opts.Checkpoint != nil {
		if err := opts.Checkpoint(c); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot create its directory", c.ID)
	}
	var started *exec.Cmd
	defer func() {
		if err != nil {
			if started != nil {
				if hp, _, herr := podHelperPid(started.Process.Pid); herr == nil {
					_ = syscall.Kill(hp, syscall.SIGKILL)
				}
				_ = started.Process.Kill()
				_, _ = started.Process.Wait()
			}
			if cerr := b.cleanupPodContainer(c); cerr != nil {
				b.log.Warn("cannot clean up after a failed create", "id", c.ID, "err", cerr)
			}
		}
	}()
	if err := shiftRootfs(rootfs, uids, gids); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot give its rootfs to the pod's CT %d", c.ID, vmid)
	}
	pj, _ := json.Marshal(inithelper.Message{Process: proc})
	if err := os.WriteFile(filepath.Join(dir, podProcessFile), pj, 0o600); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot record its process", c.ID)
	}
	fifo := filepath.Join(dir, podFifo)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot make its exec fifo", c.ID)
	}
	fifoF, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot open its exec fifo", c.ID)
	}
	defer fifoF.Close()
	var files []*os.File
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	clone := func(src string, ro bool) (*os.File, error) {
		fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return nil, err
		}
		if ro {
			if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
				_ = unix.Close(fd)
				return nil, err
			}
		}
		f := os.NewFile(uintptr(fd), src)
		files = append(files, f)
		return f, nil
	}
	rootF, err := clone(rootfs, spec.Root.Readonly)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot clone its rootfs %s", c.ID, rootfs)
	}
	var bindFs []*os.File
	for _, m := range binds {
		f, err := clone(m.Source, slices.Contains(m.Options, "ro"))
		if err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot clone the mount source %s (for %s)", c.ID, m.Source, m.Destination)
		}
		bindFs = append(bindFs, f)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "container %s: pipe", c.ID)
	}
	files = append(files, cfgR, cfgW)
	repR, repW, err := os.Pipe()
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "container %s: pipe", c.ID)
	}
	files = append(files, repR, repW)
	if _, err := trust.LookPath(b.lxcAttach); errs.KindOf(err) == errs.KindInvalidConfig {
		return errs.Wrap(errs.KindInvalidConfig, err, "container %s: refusing to run %s", c.ID, b.lxcAttach)
	}
	cmd := exec.Command(b.lxcAttach, "-P", b.lxcPath, "-n", strconv.Itoa(vmid), "--clear-env", "--elevated-privileges=CAP", "--",
		inithelper.Binary, inithelper.PodRunVerb)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = fileOrNull(opts.Stdin), fileOrNull(opts.Stdout), fileOrNull(opts.Stderr)
	cmd.ExtraFiles = append([]*os.File{cfgR, rootF, fifoF, repW}, bindFs...)
	// Its own session: it outlives this process (the shim reaps it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot run lxc-attach", c.ID)
	}
	started = cmd
	_ = repW.Close()
	cj, _ := json.Marshal(inithelper.PodRun{Process: proc, Mounts: mounts})
	_, _ = cfgW.Write(cj)
	_ = cfgW.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(repR).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(b.PidTimeout):
		return errs.New(errs.KindTimeout, "container %s: no word from its helper in the pod's CT %d", c.ID, vmid)
	case <-ctx.Done():
		return ctx.Err()
	}
	if l != "ready" {
		msg := strings.TrimPrefix(l, "error ")
		if msg == "" {
			msg = "the helper exited (see the container's stderr)"
		}
		return errs.New(errs.KindBackend, "container %s: %s", c.ID, msg).
			WithHint("the process in %s cannot run as asked in the pod's CT %d", filepath.Join(opts.Bundle, "config.json"), vmid)
	}
	hp, nspid, err := podHelperPid(cmd.Process.Pid)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot find its process in the pod's CT %d", c.ID, vmid)
	}
	// The helper waits on the exec fifo: moved now, the process it
	// becomes and all its children are under the container's limits.
	if err := limits.Apply(hp); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot apply its resource limits (linux.resources) in the pod's CT %d", c.ID, vmid).
			WithHint("the kernel refused a value of linux.resources in %s (for example a CPU quota or period below 1 ms, or on cgroup v1 a CPU quota above the CT's cpulimit)", filepath.Join(opts.Bundle, "config.json"))
	}
	c.Pid = cmd.Process.Pid
	if st, ok := procfs.StartTime(c.Pid); ok {
		c.Data[DataStartTime] = st
	}
	c.Data[DataPodProc], c.Data[DataPodNSPid] = strconv.Itoa(hp), strconv.Itoa(nspid)
	if st, ok := procfs.StartTime(hp); ok {
		c.Data[DataPodProcStart] = st
	}
	c.Status = state.Created
	if opts.PidFile != "" {
		if err := os.WriteFile(opts.PidFile, []byte(strconv.Itoa(c.Pid)), 0o644); err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot write the pid file", c.ID)
		}
	}
	_ = cmd.Process.Release()
	started = nil
	b.log.Info("pod container created", "id", c.ID, "ct", vmid, "pid", c.Pid)
	return nil
}

// podHelperPid finds the pod-run helper below lxc-attach's pid (its
// child or grandchild) and its pid in the CT.
func podHelperPid(attach int) (int, int, error) {
	hp, err := helperBelow(attach, inithelper.PodRunVerb)
	if err != nil {
		return 0, 0, err
	}
	ns, err := nsPid(hp)
	return hp, ns, err
}

// helperBelow finds the helper running verb below lxc-attach's pid.
func helperBelow(attach int, verb string) (int, error) {
	queue := []int{attach}
	for depth := 0; depth < 4 && len(queue) > 0; depth++ {
		var next []int
		for _, p := range queue {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
			for _, f := range strings.Fields(string(data)) {
				child, _ := strconv.Atoi(f)
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
				// The helper itself, not lxc-attach's intermediate child
				// (whose arguments name it too).
				if args := strings.Split(string(cmd), "\x00"); len(args) >= 2 && args[0] == inithelper.Binary && args[1] == verb {
					return child, nil
				}
				next = append(next, child)
			}
		}
		queue = next
	}
	return 0, fmt.Errorf("no %s helper below lxc-attach (pid %d)", verb, attach)
}

// nsPid is pid's pid in its own (innermost) pid namespace.
func nsPid(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[len(f)-1])
			}
		}
	}
	return 0, fmt.Errorf("no NSpid for %d", pid)
}

// podProcAlive reports whether the container's process is still the one
// recorded.
func podProcAlive(c *state.Container) (int, bool) {
	pid, err := strconv.Atoi(c.Data[DataPodProc])
	if err != nil || pid <= 0 {
		return 0, false
	}
	st, ok := procfs.StartTime(pid)
	return pid, ok && st == c.Data[DataPodProcStart]
}

// startPodContainer releases the process: one byte on the exec fifo.
func (b *Backend) startPodContainer(c *state.Container) error {
	if _, ok := podProcAlive(c); !ok {
		return errs.New(errs.KindState, "container %s: container not running (its helper is gone)", c.ID)
	}
	f, err := os.OpenFile(filepath.Join(c.Data[DataPodDir], podFifo), os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return errs.Wrap(errs.KindState, err, "container %s: cannot start it", c.ID)
	}
	defer f.Close()
	if _, err := f.Write([]byte{0}); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot start it", c.ID)
	}
	c.Data[DataStarted] = "1"
	c.Status = state.Running
	return nil
}

// refreshPodContainer: running while its process lives.
func (b *Backend) refreshPodContainer(c *state.Container) {
	if c.Status == state.Creating {
		return
	}
	if _, ok := podProcAlive(c); ok {
		c.Status = state.Created
		if c.Data[DataStarted] != "" {
			c.Status = state.Running
		}
		return
	}
	c.Status, c.Pid = state.Stopped, 0
}

// killPodContainer signals the container's process (and with all, its
// descendants).
func (b *Backend) killPodContainer(c *state.Container, sig syscall.Signal, all bool) error {
	pid, ok := podProcAlive(c)
	if all {
		// Every process of its cgroups as well (orphans the CT's init
		// adopted): as runc, also once the main process has exited,
		// which is when containerd asks.
		dirs, _ := podCgroupDirs(c)
		members := cgroups.Procs(dirs)
		for _, p := range members {
			_ = syscall.Kill(p, sig)
		}
		if !ok && len(members) > 0 {
			return nil
		}
	}
	if !ok {
		return errs.New(errs.KindState, "container %s: container not running", c.ID)
	}
	if all {
		for _, d := range descendants(pid) {
			_ = syscall.Kill(d, sig)
		}
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot signal its process %d", c.ID, pid)
	}
	return nil
}

func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) < 4096 {
		p := queue[0]
		queue = queue[1:]
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// deletePodContainer ends the container's process tree (a running one
// only with force) and removes its directory; the CT stays (the
// sandbox's).
func (b *Backend) deletePodContainer(c *state.Container, force bool) error {
	b.refreshPodContainer(c)
	if c.Status == state.Running && !force {
		return errs.New(errs.KindState, "container %s is running; cannot delete it", c.ID).
			WithHint("stop it first (`nexcage kill %s KILL`) or use `nexcage delete --force %s`", c.ID, c.ID)
	}
	if pid, ok := podProcAlive(c); ok {
		for _, d := range descendants(pid) {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := b.cleanupPodContainer(c); err != nil {
		return err
	}
	c.Status, c.Pid = state.Stopped, 0
	return nil
}

func (b *Backend) cleanupPodContainer(c *state.Container) error {
	dir := c.Data[DataPodDir]
	if dir != "" && filepath.Dir(dir) == b.helperBase() && strings.HasPrefix(filepath.Base(dir), "pod-") {
		if err := os.RemoveAll(dir); err != nil {
			b.log.Warn("cannot remove the pod container's directory", "id", c.ID, "dir", dir, "err", err)
		}
	}
	return removePodCgroups(c, podCgroupTimeout)
}

// podCgroupTimeout bounds the wait for a pod container's cgroups to
// empty once its processes are killed.
const podCgroupTimeout = 10 * time.Second

// podCgroupName is the name of an app container's cgroup below the CT's
// (a cgroup name has at most 255 bytes; an id at most 250).
func podCgroupName(id string) string {
	if len(id) > 200 {
		sum := sha256.Sum256([]byte(id))
		return "nexcage-" + hex.EncodeToString(sum[:16])
	}
	return "nexcage-" + id
}

// podLimits plans the container's own cgroups (internal/cgroups): a
// child of the CT's cgroup, found from the CT init's /proc/<pid>/cgroup
// on the host, with the bundle's linux.resources. What cannot be applied
// is refused here, before anything is made.
func (b *Backend) podLimits(id string, p *podInfo, vmid, initPid int, spec *specs.Spec) (*cgroups.Plan, error) {
	var r *specs.LinuxResources
	if spec.Linux != nil {
		r = spec.Linux.Resources
	}
	return b.podPlan(id, p, vmid, initPid, r)
}

func (b *Backend) podPlan(id string, p *podInfo, vmid, initPid int, r *specs.LinuxResources) (*cgroups.Plan, error) {
	layout, err := cgroups.Find(initPid)
	if err != nil {
		return nil, errs.Wrap(errs.KindBackend, err, "container %s: cannot find the cgroups of the pod's CT %d", id, vmid)
	}
	plan, err := cgroups.NewPlan(layout, podCgroupName(id), r)
	var u *cgroups.Unsupported
	switch {
	case errors.As(err, &u):
		return nil, p.refuse(id, "its resources cannot be applied inside the pod's CT %d: %s", vmid, u.Error())
	case err != nil:
		return nil, errs.Wrap(errs.KindBackend, err, "container %s: cannot apply its resource limits in the pod's CT %d", id, vmid)
	}
	for _, w := range plan.Skipped {
		if b.log != nil {
			b.log.Warn("the pod's CT has no hugetlb controller; hugepage limit not applied", "id", id, "ct", vmid, "file", w.File, "value", w.Value)
		}
	}
	return plan, nil
}

// maxResources bounds the resources JSON update reads.
const maxResources = 1 << 20

// podUpdate is runc's `update --resources <file|-> <id>` (what
// containerd's CRI runs for UpdateContainerResources) for a pod's app
// container: the new values go into the cgroups create made. A limit of
// a controller the container got no cgroup for at create is refused:
// its processes would have to be moved while they run.
func (b *Backend) podUpdate(ctx context.Context, c *state.Container, args []string, stdio runtime.Stdio) error {
	file := ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--resources" || a == "-r":
			if i+1 >= len(args) {
				return errs.New(errs.KindUsage, "update: flag %s needs a value", a)
			}
			file = args[i+1]
			i++
		case strings.HasPrefix(a, "--resources="):
			file = strings.TrimPrefix(a, "--resources=")
		case a == c.ID || a == "--":
		default:
			return errs.New(errs.KindUnsupported, "update: %s is not supported for a pod's container on the %s backend", a, b.Name()).
				WithHint("give the new linux.resources as JSON: nexcage update --resources <file|-> %s", c.ID)
		}
	}
	if file == "" {
		return errs.New(errs.KindUsage, "update: container %s: no --resources", c.ID).
			WithHint("give the new linux.resources as JSON: nexcage update --resources <file|-> %s", c.ID)
	}
	var in io.Reader = stdio.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return errs.Wrap(errs.KindNotFound, err, "update: container %s: cannot read %s", c.ID, file)
		}
		defer f.Close()
		in = f
	}
	if in == nil {
		return errs.New(errs.KindUsage, "update: container %s: no resources on standard input", c.ID)
	}
	data, err := io.ReadAll(io.LimitReader(in, maxResources+1))
	if err != nil || len(data) > maxResources {
		return errs.New(errs.KindUsage, "update: container %s: cannot read the resources (at most %d bytes): %v", c.ID, maxResources, err)
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(data, &r); err != nil {
		return errs.Wrap(errs.KindUsage, err, "update: container %s: the resources are not linux.resources JSON", c.ID)
	}
	b.refreshPodContainer(c)
	if c.Status != state.Running && c.Status != state.Created {
		return errs.New(errs.KindState, "container %s: container not running", c.ID)
	}
	vmid, _ := strconv.Atoi(c.Data[DataPodCT])
	initPid, err := b.initPid(ctx, vmid)
	if err != nil {
		return addContainer(c.ID, err)
	}
	p := &podInfo{namespace: "?", pod: "?", container: c.ID}
	if c.Annotations != nil {
		if q := podOf(&specs.Spec{Annotations: c.Annotations}); q != nil {
			p = q
		}
	}
	plan, err := b.podPlan(c.ID, p, vmid, initPid, &r)
	if err != nil {
		return err
	}
	have, err := podCgroupDirs(c)
	if err != nil {
		return err
	}
	for _, d := range plan.Dirs {
		if !slices.Contains(have, d) {
			return p.refuse(c.ID, "update: the container got no cgroup %s at create (its bundle set no limit of that controller); new kinds of limits need a new container", d)
		}
	}
	if err := plan.Set(); err != nil {
		return errs.Wrap(errs.KindBackend, err, "update: container %s: cannot set its resource limits", c.ID)
	}
	return nil
}

// podCgroupDirs are the container's recorded cgroups that exist (a
// cgroup whose parent, the CT's, is gone went with it). Only
// directories on a cgroup file system named for this container are
// given, whatever the state file says.
func podCgroupDirs(c *state.Container) ([]string, error) {
	raw := c.Data[DataPodCgroups]
	if raw == "" {
		return nil, nil
	}
	var dirs []string
	if err := json.Unmarshal([]byte(raw), &dirs); err != nil {
		return nil, errs.Wrap(errs.KindState, err, "container %s: its recorded cgroups (%s) are unreadable", c.ID, DataPodCgroups)
	}
	var ok []string
	for _, d := range dirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d || filepath.Base(d) != podCgroupName(c.ID) {
			return nil, errs.New(errs.KindState, "container %s: its recorded cgroup %q is not one nexcage makes", c.ID, d)
		}
		if _, err := os.Lstat(filepath.Dir(d)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if !cgroups.IsCgroupDir(filepath.Dir(d)) {
			return nil, errs.New(errs.KindState, "container %s: its recorded cgroup %q is not on a cgroup file system", c.ID, d)
		}
		ok = append(ok, d)
	}
	return ok, nil
}

// removePodCgroups removes the container's cgroups, killing what is
// left in them (orphans the CT's init adopted included); see
// podCgroupDirs for which directories it touches.
func removePodCgroups(c *state.Container, timeout time.Duration) error {
	ok, err := podCgroupDirs(c)
	if err != nil {
		return err
	}
	if err := cgroups.Remove(ok, timeout); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot remove its cgroups", c.ID).
			WithHint("run `nexcage delete --force %s` again once its processes have exited", c.ID)
	}
	delete(c.Data, DataPodCgroups)
	return nil
}

// podExec runs a process in a pod's app container: lxc-attach into the
// pod's CT, and the exec helper enters the container's mount namespace.
func (b *Backend) podExec(c *state.Container, f *execFlags, stdio runtime.Stdio) (int, error) {
	b.refreshPodContainer(c)
	if c.Status != state.Running {
		return 0, errs.New(errs.KindState, "cannot exec in a stopped container: %s", c.ID)
	}
	p, err := b.execProcess(c, f)
	if err != nil {
		return 0, err
	}
	p.MountNSPid, _ = strconv.Atoi(c.Data[DataPodNSPid])
	dirs, err := podCgroupDirs(c)
	if err != nil {
		return 0, err
	}
	var join func(int) error
	if len(dirs) > 0 {
		// As with runc, an exec'd process is in the container's cgroups
		// (under its limits), not only in the CT's.
		join = func(helper int) error { return cgroups.Join(dirs, helper) }
	}
	return b.attachExec(c, c.Data[DataPodCT], f, p, stdio, join)
}

// joinExecHelper finds the exec helper below lxc-attach (cmd) and gives
// its pid to join. lxc-attach exiting first (it failed) is no error
// here: its status says why.
func joinExecHelper(cmd *exec.Cmd, timeout time.Duration, join func(int) error) error {
	deadline := time.Now().Add(timeout)
	for {
		hp, err := helperBelow(cmd.Process.Pid, inithelper.ExecVerb)
		if err == nil {
			if err := join(hp); err != nil {
				// It must not run the process outside the container's
				// cgroups.
				_ = syscall.Kill(hp, syscall.SIGKILL)
				return err
			}
			return nil
		}
		if _, alive := procfs.StartTime(cmd.Process.Pid); !alive {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no exec helper below lxc-attach (pid %d) after %s", cmd.Process.Pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopPodContainer sends SIGTERM, then SIGKILL after timeoutSec.
func (b *Backend) stopPodContainer(ctx context.Context, c *state.Container, timeoutSec int) error {
	if err := b.killPodContainer(c, syscall.SIGTERM, false); err != nil {
		if errs.KindOf(err) == errs.KindState {
			c.Status, c.Pid = state.Stopped, 0
			return nil
		}
		return err
	}
	deadline := time.Now().Add(time.Duration(timeoutSec) * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := podProcAlive(c); !ok {
			c.Status, c.Pid = state.Stopped, 0
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = b.killPodContainer(c, syscall.SIGKILL, true)
	c.Status, c.Pid = state.Stopped, 0
	return nil
}
