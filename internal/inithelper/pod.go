package inithelper

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// A Kubernetes pod on the Proxmox backend is one Proxmox container; each
// of its app containers is a process tree inside it (docs/KUBERNETES.md
// §5). `nexcage create` runs the pod-run helper in the pod's CT through
// lxc-attach (so it shares the CT's user, network, IPC, UTS, pid and
// cgroup namespaces); the helper makes the container's own mount
// namespace on its image rootfs, which the host hands over as a detached
// mount (open_tree), prepares the process as the exec helper does, reports
// ready and waits until `start` writes to the exec fifo, then execs.

// PodRunVerb is `nexcage __nexcage-pod-run`, run in a pod's CT by
// lxc-attach. Its descriptors: PodConfigFD (the PodRun as JSON, until
// end of file), PodRootFD (the rootfs, a detached mount), PodFifoFD (the
// exec fifo, read end), PodReportFD (one line: "ready" or "error <msg>"),
// then one detached mount per PodMount of kind "bind", in order.
const PodRunVerb = "__nexcage-pod-run"

// Descriptors of the pod-run helper.
const (
	PodConfigFD = 3
	PodRootFD   = 4
	PodFifoFD   = 5
	PodReportFD = 6
	// PodBindFD is the first bind mount's descriptor.
	PodBindFD = 7
)

// PodMount is one mount of an app container, made in its mount namespace
// below its rootfs before it is pivoted in.
type PodMount struct {
	// Kind: "rbind-ct" (the CT's own mount at the same path, recursively:
	// /proc, /sys, /dev), "bind" (the next bind descriptor), "tmpfs".
	Kind        string `json:"kind"`
	Destination string `json:"destination"`
	// Flags and Data of a tmpfs (mount(2)).
	Flags uintptr `json:"flags,omitempty"`
	Data  string  `json:"data,omitempty"`
	// ReadOnly makes an "rbind-ct" read-only, recursively (the spec's
	// sysfs and cgroup mounts are "ro" for an unprivileged container:
	// its limits in the CT's cgroup file system stay out of its reach).
	ReadOnly bool `json:"readonly,omitempty"`
}

// PodRun is what the pod-run helper gets on PodConfigFD.
type PodRun struct {
	Process *Process   `json:"process"`
	Mounts  []PodMount `json:"mounts,omitempty"`
}

// podScratch is where the helper, in its new mount namespace, attaches
// the rootfs before pivoting into it: a tmpfs over the helper's own
// mount point (the CT's root is read-only, this directory exists).
const podScratch = MountPoint

// PodRunMain runs the pod-run helper; it returns only on failure.
func PodRunMain(args []string) int {
	report := os.NewFile(PodReportFD, "report")
	fail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintf(report, "error %s\n", strings.ReplaceAll(msg, "\n", " "))
		fmt.Fprintln(os.Stderr, "nexcage pod container: "+msg)
		return 127
	}
	if len(args) != 0 {
		return fail("internal helper started with arguments")
	}
	f := os.NewFile(PodConfigFD, "config")
	data, err := io.ReadAll(io.LimitReader(f, maxMessage+1))
	_ = f.Close()
	var r PodRun
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err != nil || r.Process == nil || len(r.Process.Args) == 0 {
		return fail("bad container description on fd %d: %v", PodConfigFD, err)
	}
	if err := enterRootfs(r.Mounts); err != nil {
		return fail("%v", err)
	}
	if err := narrowTo(r.Process.ContainerBounding); err != nil {
		return fail("%v", err)
	}
	path, err := Prepare(r.Process, false)
	if err != nil {
		return fail("%v", err)
	}
	if _, err := fmt.Fprintln(report, "ready"); err != nil {
		return 1
	}
	_ = report.Close()
	// Wait for start: one byte on the exec fifo. The host passes it
	// opened read-write, so a read blocks until start writes (never end
	// of file); a delete before start kills this helper.
	fifo := os.NewFile(PodFifoFD, "exec.fifo")
	if err := unix.SetNonblock(PodFifoFD, false); err != nil {
		fmt.Fprintf(os.Stderr, "nexcage pod container: exec fifo: %v\n", err)
		return 1
	}
	if _, err := io.ReadFull(fifo, make([]byte, 1)); err != nil {
		fmt.Fprintf(os.Stderr, "nexcage pod container: exec fifo: %v\n", err)
		return 1
	}
	_ = fifo.Close()
	err = execProcess(r.Process, path)
	fmt.Fprintf(os.Stderr, "nexcage pod container: %v\n", err)
	return 126
}

// enterRootfs makes a new mount namespace (for this thread, which execs)
// with the rootfs from PodRootFD as its root and the mounts below it.
func enterRootfs(mounts []PodMount) error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		return fmt.Errorf("cannot make the container's mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("cannot make the mounts private: %v", err)
	}
	if err := unix.Mount("tmpfs", podScratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("cannot mount a scratch tmpfs: %v", err)
	}
	root := filepath.Join(podScratch, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if err := unix.MoveMount(PodRootFD, "", unix.AT_FDCWD, root, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("cannot attach the container's rootfs: %v", err)
	}
	_ = unix.Close(PodRootFD)
	bind := PodBindFD
	for _, m := range mounts {
		// Resolved inside the new root: the image's symlinks never lead
		// out of it (to the CT's own files).
		dst, err := securejoin.SecureJoin(root, m.Destination)
		if err != nil {
			return fmt.Errorf("mount target %s: %v", m.Destination, err)
		}
		switch m.Kind {
		case "rbind-ct":
			var st unix.Stat_t
			if unix.Stat(filepath.Clean("/"+m.Destination), &st) != nil {
				continue // the CT has none (e.g. no /dev/ptmx)
			}
			err = ensureTarget(dst, st.Mode&unix.S_IFMT == unix.S_IFDIR)
		case "bind":
			var st unix.Stat_t
			if err = unix.Fstat(bind, &st); err == nil {
				err = ensureTarget(dst, st.Mode&unix.S_IFMT == unix.S_IFDIR)
			}
		default:
			err = ensureTarget(dst, true)
		}
		if err != nil {
			return fmt.Errorf("cannot make the mount target %s: %v", m.Destination, err)
		}
		switch m.Kind {
		case "rbind-ct":
			err = unix.Mount(filepath.Clean("/"+m.Destination), dst, "", unix.MS_BIND|unix.MS_REC, "")
			if err == nil && m.ReadOnly {
				err = unix.MountSetattr(unix.AT_FDCWD, dst, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
			}
		case "bind":
			err = unix.MoveMount(bind, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH)
			_ = unix.Close(bind)
			bind++
		case "tmpfs":
			err = unix.Mount("tmpfs", dst, "tmpfs", m.Flags, m.Data)
		default:
			err = fmt.Errorf("unknown kind %q", m.Kind)
		}
		if err != nil {
			return fmt.Errorf("cannot mount %s (%s): %v", m.Destination, m.Kind, err)
		}
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into the container's rootfs: %v", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("cannot detach the CT's root: %v", err)
	}
	return unix.Chdir("/")
}

// enterMountNS moves the calling (locked) thread into the mount
// namespace of pid (in this pid namespace): an exec into a pod's app
// container. A thread of a multi-threaded process may change its mount
// namespace once its file system context is its own (CLONE_FS).
func enterMountNS(pid int) error {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("the container's process %d is gone: %v", pid, err)
	}
	defer unix.Close(fd)
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare(CLONE_FS): %v", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("cannot enter the container's mount namespace: %v", err)
	}
	return nil
}

// ensureTarget makes a mount target below the new root: a directory, or
// an empty file (with its parent directories). It does not follow a
// symlink out of the root: the rootfs is the image's, a symlink at a
// target is refused.
func ensureTarget(p string, dir bool) error {
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symlink", p)
		}
		return nil
	}
	if dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
