package pvesim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// Mount points as pve-container mounts them (PVE::LXC::mount_all,
// mountpoint_mount, __mountpoint_mount, walk_tree_nofollow,
// __bindmount_prepare/_do/_verify): at create before the template is
// unpacked and before every start (the pre-start hook).
//
// The simulator mounts only inside a private mount namespace (see
// withMountNamespace): nothing it mounts is ever visible on the host, and
// everything goes away with the last process of that namespace, even when
// pvesim is killed.

// ctRootfsDir is var/lib/lxc/<vmid>/rootfs, where Proxmox mounts the
// root volume and, below it, the mount points.
func (n *Node) ctRootfsDir(vmid int) string { return filepath.Join(n.ctDir(vmid), "rootfs") }

// shownPath is p as a real node would print it: the simulated root is
// cut off, so messages carry the paths of a Proxmox host
// (`/var/lib/lxc/100/rootfs/var/run`) as the lock timeout message does.
// Paths outside the root (bind sources) are printed as they are.
func (n *Node) shownPath(p string) string {
	root := filepath.Clean(n.Root)
	if rest, ok := strings.CutPrefix(p, root); ok && (rest == "" || rest[0] == '/') {
		return rest
	}
	return p
}

// withMountNamespace runs fn on an OS thread of its own that first
// unshares its mount namespace and turns every mount in it into a slave
// of the host's (LXC's lxc.monitor.unshare does the same), so mounts fn
// makes never propagate to the host. Processes fn starts inherit the
// namespace; the thread is never given back to the Go scheduler, so the
// namespace dies with the last of them (Go ends a locked thread whose
// goroutine returns without unlocking).
func withMountNamespace(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never ended: Go parks it for good when
			// its locked goroutine exits, which would keep the namespace
			// (and its mounts) alive and make it the one /proc/self
			// shows. Holding this thread, run on another one: the
			// runtime cannot schedule the new goroutine here.
			err := withMountNamespace(fn)
			runtime.UnlockOSThread()
			done <- err
			return
		}
		// No UnlockOSThread: this thread's namespace differs from the
		// process's, so it must exit with the goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("unable to create a private mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			done <- fmt.Errorf("unable to make the mount namespace private: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// mountPoint is one parsed rootfs/mpN option.
type mountPoint struct {
	key    string // rootfs, mp0, ...
	volume string
	mp     string // path inside the container ("/" for rootfs)
	typ    string // volume, bind or device (classify_mountpoint)
	ro     bool
	opts   []string // mountoptions=, filtered when mounted
}

// mountPoints returns rootfs and mp0..mp255 of conf in that order, the
// order of PVE::LXC::Config->valid_volume_keys (mount points are mounted
// by index, not by path).
func mountPoints(conf *pvecfg.Config) ([]mountPoint, error) {
	var list []mountPoint
	keys := []string{"rootfs"}
	for i := 0; i < pvecfg.MaxMountPoints; i++ {
		keys = append(keys, "mp"+strconv.Itoa(i))
	}
	for _, k := range keys {
		v, ok := conf.Get(k)
		if !ok {
			continue
		}
		props, err := pvecfg.ParseProps(v, "volume")
		if err != nil {
			return nil, fmt.Errorf("unable to parse %s: %w", k, err)
		}
		m := mountPoint{key: k}
		m.volume, _ = props.Get("volume")
		if k == "rootfs" {
			m.mp = "/"
		} else {
			m.mp, _ = props.Get("mp")
		}
		if ro, _ := props.Get("ro"); ro == "1" {
			m.ro = true
		}
		switch {
		case strings.HasPrefix(m.volume, "/dev/"):
			m.typ = "device"
		case strings.HasPrefix(m.volume, "/"):
			m.typ = "bind"
		default:
			m.typ = "volume"
		}
		if mo, ok := props.Get("mountoptions"); ok {
			m.opts = strings.Split(mo, ";")
		}
		list = append(list, m)
	}
	return list, nil
}

// rootIDs is parse_id_maps' root uid/gid: the host ids container root
// maps to. Raw lxc.idmap lines decide when there are any (the last
// mapping of id 0 wins, unmapped means 0); otherwise an unprivileged
// container gets Proxmox's default map (100000).
func rootIDs(conf *pvecfg.Config) (int, int) {
	uid, gid, maps := 0, 0, false
	for _, r := range conf.Raw {
		if r.Key != "lxc.idmap" {
			continue
		}
		maps = true
		f := strings.Fields(r.Value)
		if len(f) != 4 || f[1] != "0" {
			continue
		}
		host, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		switch f[0] {
		case "u":
			uid = host
		case "g":
			gid = host
		}
	}
	if !maps {
		if v, _ := conf.Get("unprivileged"); v == "1" {
			return unprivIDBase, unprivIDBase
		}
	}
	return uid, gid
}

// mountAll is PVE::LXC::mount_all, used by create: every volume mounted
// writable (the template is unpacked through the mounts), and a failure
// warns `mounting container failed` before the error. The caller's
// namespace takes the mounts made so far with it.
func (n *Node) mountAll(conf *pvecfg.Config, rootdir string) error {
	if err := n.mountVolumes(conf, rootdir, true, false); err != nil {
		n.warnf("mounting container failed\n")
		return err
	}
	return nil
}

// mountVolumes mounts the root volume at rootdir, then every mount point
// below it, in valid_volume_keys order. ignoreRO mounts everything
// writable. staged is the pre-start hook's way (mountpoint_stage, then
// mountpoint_insert_staged): the source is checked before the target,
// and the target is walked from the rootfs as "./<mp>" below "/", so a
// symlink there reads `symlink encountered at: //./var/run`; create's
// mount_all walks the target first, printing the rootfs path.
func (n *Node) mountVolumes(conf *pvecfg.Config, rootdir string, ignoreRO, staged bool) error {
	mps, err := mountPoints(conf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(rootdir, 0o755); err != nil {
		return err
	}
	uid, gid := rootIDs(conf)
	for _, m := range mps {
		if ignoreRO {
			m.ro = false
		}
		if err := n.mountpointMount(m, rootdir, uid, gid, staged); err != nil {
			return err
		}
	}
	return nil
}

// mountpointMount is __mountpoint_mount for one mount point: the target
// walked inside rootdir without following symlinks (creating what is
// missing, owned by the container's root), the source checked, then
// mounted there.
func (n *Node) mountpointMount(m mountPoint, rootdir string, uid, gid int, staged bool) error {
	if m.volume == "" || m.mp == "" {
		return nil
	}
	var src string
	walkSource := false
	checkSource := func() error {
		switch m.typ {
		case "bind":
			// `-d`: follows symlinks, so a file or a missing path fails
			// here and a symlink to a directory fails in the walk.
			if st, err := os.Stat(m.volume); err != nil || !st.IsDir() {
				return &hookError{msg: fmt.Sprintf("directory '%s' does not exist", m.volume), status: int(unix.ENOENT)}
			}
			src, walkSource = m.volume, true
			if staged {
				// mountpoint_stage binds the source before the target
				// is walked.
				fd, _, _, err := n.walkTreeNoFollow("/", "/", src, false, -1, -1)
				if err != nil {
					return err
				}
				unix.Close(fd)
			}
		case "volume":
			p, err := n.volumePath(m.volume)
			if err != nil {
				return err
			}
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				return fmt.Errorf("volume '%s' does not exist", m.volume)
			}
			// Proxmox loop-mounts a raw image (no walk of its path);
			// the simulator's raw volumes are directories, bound.
			src = p
		default:
			return fmt.Errorf("%s: device mount points are not supported by the simulator", m.key)
		}
		return nil
	}
	if staged {
		if err := checkSource(); err != nil {
			return err
		}
	}
	var target, parent int
	var last string
	var err error
	switch {
	case staged && m.key != "rootfs":
		target, parent, last, err = n.walkTreeNoFollow(rootdir, "/", "./"+m.mp, true, uid, gid)
	default:
		target, parent, last, err = n.walkTreeNoFollow(rootdir, n.shownPath(filepath.Clean(rootdir)), m.mp, true, uid, gid)
	}
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if parent >= 0 {
		defer unix.Close(parent)
	}
	if !staged {
		if err := checkSource(); err != nil {
			return err
		}
	}
	// is_valid_mount_option / is_valid_ro_mount_option
	var opts []string
	for _, o := range m.opts {
		switch o {
		case "nodev", "noexec", "nosuid":
			opts = append(opts, o)
		case "discard", "lazytime", "noatime":
			if !m.ro {
				opts = append(opts, o)
			}
		}
	}
	return n.bindmount(src, parent, last, filepath.Join(rootdir, m.mp), m.ro, opts, walkSource)
}

// hookError is a failure that Proxmox raises with an errno still set, so
// the pre-start hook (a Perl die) exits with that errno as its status.
type hookError struct {
	msg    string
	status int
}

func (e *hookError) Error() string { return e.msg }

// bindmount is PVE::LXC::bindmount: open the source without following
// symlinks (walkSource, only for bind mount points), bind it (then
// remount read-only and with the mount options), and verify that the
// target now is the source, as __bindmount_verify does against races.
func (n *Node) bindmount(src string, parent int, last, dest string, ro bool, opts []string, walkSource bool) error {
	var srcfd int
	if walkSource {
		fd, _, _, err := n.walkTreeNoFollow("/", "/", src, false, -1, -1)
		if err != nil {
			return err
		}
		srcfd = fd
	} else {
		fd, err := unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cannot open directory %s: %s", src, strerror(err))
		}
		srcfd = fd
	}
	defer unix.Close(srcfd)
	if err := unix.Mount(src, dest, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("command 'mount -o bind %s %s' failed: %s", src, n.shownPath(dest), strerror(err))
	}
	flags := uintptr(0)
	for _, o := range opts {
		switch o {
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "lazytime":
			flags |= unix.MS_LAZYTIME
		}
	}
	if ro {
		flags |= unix.MS_RDONLY
	}
	if flags != 0 {
		if err := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
			_ = unix.Unmount(dest, unix.MNT_DETACH) // never leave a writable bind behind
			return fmt.Errorf("command 'mount -o bind,remount %s' failed: %s", n.shownPath(dest), strerror(err))
		}
	}
	var destfd int
	var err error
	if parent >= 0 {
		destfd, err = unix.Openat(parent, last, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		destfd, err = unix.Open(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		_ = unix.Unmount(dest, unix.MNT_DETACH)
		return fmt.Errorf("failed to open mount point: %s", strerror(err))
	}
	defer unix.Close(destfd)
	if ro {
		if err := unix.Faccessat(destfd, ".", unix.W_OK, 0); err == nil || !errors.Is(err, unix.EROFS) {
			_ = unix.Unmount(dest, unix.MNT_DETACH)
			return errors.New("failed to mark bind mount read only")
		}
	}
	var a, b unix.Stat_t
	if unix.Fstat(srcfd, &a) != nil || unix.Fstat(destfd, &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		_ = unix.Unmount(dest, unix.MNT_DETACH)
		return fmt.Errorf("detected mount path change at: %s", src)
	}
	return nil
}

// walkTreeNoFollow is walk_tree_nofollow(_fd): starting at the directory
// start (named shown in messages), open every component of sub with
// O_NOFOLLOW|O_DIRECTORY. A symlink (ELOOP) or a non-directory (ENOTDIR)
// fails with `symlink encountered at: <path so far>`; the path is built
// as Proxmox builds it, shown + "/" + component..., so a walk from "/"
// prints `//var/run`. With mkdir, missing components are created (0755) and
// given to uid/gid (when >= 0). It returns the final directory, its
// parent (-1 when sub has no components) and the last component.
func (n *Node) walkTreeNoFollow(start, shown, sub string, mkdir bool, uid, gid int) (fd, parent int, last string, err error) {
	fd, err = unix.Open(start, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, "", fmt.Errorf("failed to open start directory %s: %s", shown, strerror(err))
	}
	parent = -1
	dir := shown
	for _, comp := range strings.Split(sub, "/") {
		if comp == "" {
			continue
		}
		dir += "/" + comp
		next, err := unix.Openat(fd, comp, unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				closeAll(fd, parent)
				return -1, -1, "", &hookError{msg: "symlink encountered at: " + dir, status: int(err.(unix.Errno))}
			}
			if !mkdir {
				closeAll(fd, parent)
				return -1, -1, "", fmt.Errorf("cannot open directory %s: %s", dir, strerror(err))
			}
			// EEXIST from a racing creator is fine; a symlink planted
			// meanwhile fails the O_NOFOLLOW open below.
			_ = unix.Mkdirat(fd, comp, 0o755)
			next, err = unix.Openat(fd, comp, unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				closeAll(fd, parent)
				return -1, -1, "", fmt.Errorf("failed to create path: %s: %s", dir, strerror(err))
			}
			if uid >= 0 && gid >= 0 {
				_ = unix.Fchownat(next, "", uid, gid, unix.AT_EMPTY_PATH)
			}
		}
		if parent >= 0 {
			unix.Close(parent)
		}
		parent, fd, last = fd, next, comp
	}
	return fd, parent, last, nil
}

func closeAll(fds ...int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// strerror is errno's text as Perl's $! prints it (glibc's strerror:
// Go's table with a capital first letter).
func strerror(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	s := errno.Error()
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// removeCtDir removes var/lib/lxc/<vmid> as destroy_lxc_container does:
// the files pvesim writes there, then the (empty) rootfs directory and
// the directory itself. Nothing is removed recursively below rootfs, so a
// mount that should not be there can never take host data with it.
func (n *Node) removeCtDir(vmid int) {
	dir := n.ctDir(vmid)
	_ = os.Remove(filepath.Join(dir, "config"))
	_ = os.Remove(filepath.Join(dir, "rules.seccomp"))
	if err := os.Remove(n.ctRootfsDir(vmid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return
	}
	_ = os.RemoveAll(dir)
}
