package inithelper

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/lazyre"
)

// RootfsSetup is what the init helper mounts inside the container,
// before anything else, so that the process sees the OCI spec's mounts,
// masked paths and read-only paths as runc would present them
// (runtime-spec config.md "Mounts": in order; config-linux.md
// "maskedPaths", "readonlyPaths"). It travels in the process message
// (Message.Rootfs); the Proxmox backend's translation builds and
// validates it (docs/MAPPING.md), the helper checks it again
// (Validate) before it mounts anything.
//
// LXC (autodev, proc:mixed, sys:mixed, Proxmox's mpN and the
// lxc.mount.entry lines) has already mounted most of it when the helper
// runs, but in LXC's order, with LXC's own /dev (source "none", /dev/ptmx
// a device node). The helper re-presents each mount in spec order:
//
//   - KindRebind: what LXC mounted at Destination is bind-mounted
//     recursively onto itself, so it appears again, in order, in
//     /proc/self/mountinfo with the same type and source; Flags are then
//     added to the new mount (never removed: the flags LXC set, locked in
//     a user namespace, stay);
//   - KindDev: a fresh tmpfs at /dev (Source, Flags, Data), populated
//     with what LXC's /dev holds: its devices, console and ttys
//     bind-mounted from there (an unprivileged container cannot mknod),
//     its directories and symlinks copied, except what later mounts of
//     the spec replace; /dev/ptmx becomes a symlink to pts/ptmx when the
//     spec mounts a devpts at /dev/pts;
//   - KindDevpts, KindTmpfs, KindMqueue: a fresh mount of that type.
//
// Then each masked path is covered (a directory by an empty read-only
// tmpfs, anything else by a bind of /dev/null) and each read-only path
// is bind-mounted onto itself and made read-only, as runc does. A path
// that does not exist in the container is skipped, as with runc.
type RootfsSetup struct {
	Mounts        []Mount  `json:"mounts,omitempty"`
	MaskedPaths   []string `json:"maskedPaths,omitempty"`
	ReadonlyPaths []string `json:"readonlyPaths,omitempty"`
}

// Mount kinds of RootfsSetup.
const (
	KindRebind = "rebind"
	KindDev    = "dev"
	KindDevpts = "devpts"
	KindTmpfs  = "tmpfs"
	KindMqueue = "mqueue"
)

// Mount is one mount of RootfsSetup, in spec order.
type Mount struct {
	Kind string `json:"kind"`
	// Destination is absolute and clean, already resolved inside the
	// container's root (no symlink to follow).
	Destination string `json:"destination"`
	// Source is the source field of a fresh mount (what mountinfo shows).
	Source string `json:"source,omitempty"`
	// Flags are mount flags by name (MountFlags' keys).
	Flags []string `json:"flags,omitempty"`
	// Data are the file system's options (tmpfs, devpts), checked
	// against the kind's allowed set.
	Data []string `json:"data,omitempty"`
}

// MountFlags are the flag options the helper applies, by name.
var MountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME,
	"strictatime": unix.MS_STRICTATIME, "sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC,
}

// Data options of fresh mounts, by kind.
var (
	reTmpfsData  = lazyre.New(`^((size|nr_blocks|nr_inodes)=[0-9]+[kmgKMG%]?|mode=[0-7]{3,4}|(uid|gid)=[0-9]{1,10}|huge=(never|always|within_size|advise|deny|force)|inode64|inode32|noswap)$`)
	reDevptsData = lazyre.New(`^(newinstance|(ptmxmode|mode)=[0-7]{3,4}|(uid|gid|max)=[0-9]{1,10})$`)
)

// DataAllowed reports whether o is a data option a fresh mount of kind
// may carry.
func DataAllowed(kind, o string) bool {
	switch kind {
	case KindDev, KindTmpfs:
		return reTmpfsData.MatchString(o)
	case KindDevpts:
		return reDevptsData.MatchString(o)
	}
	return false
}

// maxPaths bounds the lists of a RootfsSetup.
const maxPaths = 1024

// CheckPath refuses a path the helper must not mount on: it must be
// absolute, clean, with no control characters, and not / nor the
// helper's own directory.
func CheckPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if path.Clean(p) != p {
		return fmt.Errorf("path %q is not clean (use %q)", p, path.Clean(p))
	}
	if p == "/" {
		return errors.New("path / cannot be a mount destination, masked or read-only path here")
	}
	if p == MountPoint || strings.HasPrefix(p, MountPoint+"/") {
		return fmt.Errorf("path %q is nexcage's own helper directory", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("path %q contains a control character", p)
		}
	}
	return nil
}

// Validate checks everything of r (the helper trusts nothing it mounts).
func (r *RootfsSetup) Validate() error {
	if len(r.Mounts) > maxPaths || len(r.MaskedPaths) > maxPaths || len(r.ReadonlyPaths) > maxPaths {
		return fmt.Errorf("more than %d mounts, masked or read-only paths", maxPaths)
	}
	dev := false
	for i, m := range r.Mounts {
		if err := CheckPath(m.Destination); err != nil {
			return fmt.Errorf("mounts[%d]: %v", i, err)
		}
		for _, f := range m.Flags {
			if _, ok := MountFlags[f]; !ok {
				return fmt.Errorf("mounts[%d] (%s): unknown flag %q", i, m.Destination, f)
			}
		}
		switch m.Kind {
		case KindRebind:
			if len(m.Data) > 0 || m.Source != "" {
				return fmt.Errorf("mounts[%d] (%s): a rebind has no source or data", i, m.Destination)
			}
			continue
		case KindDev:
			if m.Destination != "/dev" {
				return fmt.Errorf("mounts[%d] (%s): the dev kind is for /dev only", i, m.Destination)
			}
			dev = true
		case KindDevpts:
			if m.Destination != "/dev/pts" || !dev {
				return fmt.Errorf("mounts[%d] (%s): a fresh devpts only at /dev/pts, after a fresh /dev", i, m.Destination)
			}
		case KindTmpfs, KindMqueue:
			if !dev || !strings.HasPrefix(m.Destination, "/dev/") || strings.Count(m.Destination, "/") != 2 {
				return fmt.Errorf("mounts[%d] (%s): fresh %s mounts only directly under a fresh /dev", i, m.Destination, m.Kind)
			}
		default:
			return fmt.Errorf("mounts[%d] (%s): unknown kind %q", i, m.Destination, m.Kind)
		}
		if m.Source == "" || len(m.Source) > 64 || strings.ContainsAny(m.Source, " \t\n\\,") {
			return fmt.Errorf("mounts[%d] (%s): bad source %q", i, m.Destination, m.Source)
		}
		for _, o := range m.Data {
			if !DataAllowed(m.Kind, o) {
				return fmt.Errorf("mounts[%d] (%s): %s option %q is not supported", i, m.Destination, m.Kind, o)
			}
		}
	}
	for _, list := range [][]string{r.MaskedPaths, r.ReadonlyPaths} {
		for _, p := range list {
			if err := CheckPath(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func flagsOf(names []string) uintptr {
	var f uintptr
	for _, n := range names {
		f |= MountFlags[n]
	}
	return f
}

// lockedFlags are the per-mount flags that a remount must keep: in a
// user namespace the kernel refuses (EPERM) to clear those its owner
// set (MNT_LOCK_*), and nexcage never makes a mount less restricted
// than LXC made it. statfs reports them with the same values as MS_*.
const lockedFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
	unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME

// atimeFlags are the flags that select the atime behaviour (one of them).
const atimeFlags = unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

// currentFlags returns the per-mount flags of the mount at p.
func currentFlags(p string) (uintptr, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return 0, err
	}
	return uintptr(st.Flags) & lockedFlags, nil
}

// remountBind adds flags to the bind mount at p, keeping what it has
// (its atime behaviour too: a user namespace may not change it).
func remountBind(p string, add uintptr) error {
	cur, err := currentFlags(p)
	if err != nil {
		return err
	}
	add &^= atimeFlags | unix.MS_NODIRATIME
	if cur|add == cur {
		return nil
	}
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|cur|add, "")
}

// Setup applies r inside the container (the helper is its init, in its
// mount namespace). Errors name the mount or path that failed.
func (r *RootfsSetup) Setup() error {
	if r == nil {
		return nil
	}
	if err := r.Validate(); err != nil {
		return err
	}
	// First make every mount of the container a slave, as runc does by
	// default: what the helper mounts below then never propagates out of
	// the container (LXC leaves the container's mounts shared, some in
	// peer groups that began outside it), while mounts the node adds
	// still propagate in.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the container's mounts slaves: %w", err)
	}
	freshDev := false
	skipDev := map[string]bool{}
	for _, m := range r.Mounts {
		if m.Kind == KindDev {
			freshDev = true
		}
		if freshDev && m.Kind != KindDev && strings.HasPrefix(m.Destination, "/dev/") && m.Kind != KindRebind {
			skipDev[strings.TrimPrefix(m.Destination, "/dev/")] = true
		}
	}
	var oldDev *os.File // LXC's /dev, once a fresh one covers it
	defer func() {
		if oldDev != nil {
			_ = oldDev.Close()
		}
	}()
	for i, m := range r.Mounts {
		var err error
		switch m.Kind {
		case KindRebind:
			err = rebind(m.Destination, flagsOf(m.Flags))
			if errors.Is(err, errBindDenied) {
				// Only the order is lost: LXC's mount stays as it is.
				// LXC's AppArmor profile for a privileged container
				// refuses rbinds of /proc, /sys and /dev paths.
				warnf("mounts[%d] (%s) stays where LXC mounted it (out of the spec's order): %v", i, m.Destination, err)
				err = nil
			}
		case KindDev:
			oldDev, err = setupDev(m, skipDev)
		case KindDevpts:
			err = freshMount(m, "devpts")
			if denied(err) && oldDev != nil {
				// LXC's AppArmor profiles allow no devpts mount in a
				// container: use the container's own devpts instance
				// LXC mounted (a non-recursive bind, which they allow).
				warnf("mounts[%d] (%s): %v; using the devpts instance LXC mounted for the container", i, m.Destination, err)
				err = unix.Mount("/proc/self/fd/"+strconv.Itoa(int(oldDev.Fd()))+"/pts", m.Destination, "", unix.MS_BIND, "")
				if err == nil {
					err = remountBind(m.Destination, flagsOf(m.Flags))
				}
			}
		case KindTmpfs:
			err = freshMount(m, "tmpfs")
		case KindMqueue:
			err = freshMount(m, "mqueue")
		}
		if err != nil {
			return fmt.Errorf("mounts[%d] (%s, %s): %w", i, m.Destination, m.Kind, err)
		}
	}
	for _, p := range r.MaskedPaths {
		if err := mask(p); err != nil {
			return fmt.Errorf("linux.maskedPaths %s: %w", p, err)
		}
	}
	for _, p := range r.ReadonlyPaths {
		if err := readonly(p); err != nil {
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, err)
		}
	}
	return nil
}

// errBindDenied marks a rebind whose bind was refused (by a security
// module): the mount stays where LXC put it, out of the spec's order.
var errBindDenied = errors.New("refused")

// rebind bind-mounts what is mounted at p onto itself, recursively (a
// non-recursive bind of a mount with locked children fails EINVAL in a
// user namespace), then adds flags.
func rebind(p string, flags uintptr) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("nothing to present there: %w", unwrapPath(err))
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return errors.New("is a symlink in the container")
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if denied(err) {
			return fmt.Errorf("bind onto itself: %w (%w)", err, errBindDenied)
		}
		return fmt.Errorf("bind onto itself: %w", err)
	}
	// The spec's flags on the new mount: refused is an error (the
	// container would be less restricted than the spec asks).
	if flags != 0 {
		if err := remountBind(p, flags); err != nil {
			return fmt.Errorf("remount with the spec's flags: %w", err)
		}
	}
	return nil
}

func freshMount(m Mount, fstype string) error {
	if err := os.MkdirAll(m.Destination, 0o755); err != nil {
		return unwrapPath(err)
	}
	if err := unix.Mount(m.Source, m.Destination, fstype, flagsOf(m.Flags), strings.Join(m.Data, ",")); err != nil {
		return fmt.Errorf("mount %s: %w", fstype, err)
	}
	return nil
}

// setupDev mounts a fresh tmpfs at /dev and populates it from LXC's
// /dev (see RootfsSetup). skip names the entries of /dev that later
// fresh mounts of the spec provide. It returns LXC's /dev, open, which
// the caller closes.
func setupDev(m Mount, skip map[string]bool) (*os.File, error) {
	old, err := os.OpenFile("/dev", os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open LXC's /dev: %w", err)
	}
	// The old /dev stays reachable through this descriptor once the new
	// tmpfs covers it; binds from it are binds of mounts of this
	// namespace, which a user namespace allows.
	oldPath := "/proc/self/fd/" + strconv.Itoa(int(old.Fd()))
	// Read-only only once it is filled (as runc does).
	flags := flagsOf(m.Flags)
	err = unix.Mount(m.Source, "/dev", "tmpfs", flags&^unix.MS_RDONLY, strings.Join(m.Data, ","))
	if err != nil {
		err = fmt.Errorf("mount tmpfs: %w", err)
	}
	if err == nil {
		err = copyDev(oldPath, "/dev", skip, true)
	}
	if err == nil && skip["pts"] {
		_ = os.Remove("/dev/ptmx")
		if err = os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
			err = fmt.Errorf("symlink /dev/ptmx: %w", err)
		}
	}
	if err == nil {
		// The mount points of the fresh mounts to come, even those LXC's
		// /dev lacks (a read-only /dev could not get them later).
		for name := range skip {
			if err = os.MkdirAll("/dev/"+name, 0o755); err != nil {
				break
			}
		}
	}
	if err == nil && flags&unix.MS_RDONLY != 0 {
		if err = unix.Mount("", "/dev", "", unix.MS_REMOUNT|flags, ""); err != nil {
			err = fmt.Errorf("remount read-only: %w", err)
		}
	}
	if err != nil {
		_ = old.Close()
		return nil, err
	}
	return old, nil
}

// denied reports a mount refused by a security module (LXC's AppArmor
// profile answers EACCES) or by the kernel's rules for the namespace.
func denied(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

// warnf reports a degraded step on the helper's stderr (LXC's console
// log).
func warnf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "nexcage init: "+format+"\n", a...)
}

// copyDev re-creates the entries of the directory src in dst: mount
// points and non-directories are bind-mounted from src, directories
// created and walked, symlinks copied.
func copyDev(src, dst string, skip map[string]bool, top bool) error {
	d, err := os.Open(src)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", dst, err)
	}
	sort.Strings(names)
	for _, name := range names {
		if top && (skip[name] || (skip["pts"] && name == "ptmx")) {
			if skip[name] {
				if err := os.MkdirAll(dst+"/"+name, 0o755); err != nil {
					return err
				}
			}
			continue
		}
		s, t := src+"/"+name, dst+"/"+name
		var st unix.Stat_t
		if err := unix.Lstat(s, &st); err != nil {
			return fmt.Errorf("stat %s: %w", t, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := os.Readlink(s)
			if err == nil {
				err = os.Symlink(target, t)
			}
			if err != nil {
				return fmt.Errorf("copy symlink %s: %w", t, err)
			}
			continue
		case unix.S_IFDIR:
			if err := os.Mkdir(t, os.FileMode(st.Mode&0o7777)); err != nil {
				return fmt.Errorf("mkdir %s: %w", t, err)
			}
			_ = unix.Chmod(t, st.Mode&0o7777)
			_ = unix.Lchown(t, int(st.Uid), int(st.Gid))
			if isMountpoint(s) {
				// A mount of its own (pts, shm, mqueue, lxc ttys...):
				// all of it, with what is mounted below.
				err := unix.Mount(s, t, "", unix.MS_BIND|unix.MS_REC, "")
				if denied(err) {
					// LXC's AppArmor profile for a privileged container
					// allows binds, not rbinds, from /dev/...
					err = unix.Mount(s, t, "", unix.MS_BIND, "")
				}
				if err != nil {
					return fmt.Errorf("bind %s from LXC's /dev: %w", t, err)
				}
				continue
			}
			if err := copyDev(s, t, nil, false); err != nil {
				return err
			}
			continue
		}
		f, err := os.OpenFile(t, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", t, err)
		}
		_ = f.Close()
		if err := unix.Mount(s, t, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s from LXC's /dev: %w", t, err)
		}
	}
	return nil
}

// isMountpoint reports whether p is the root of a mount other than its
// parent directory's (a bind of the same file system included).
func isMountpoint(p string) bool {
	id, err1 := mountID(p)
	pid, err2 := mountID(p + "/..")
	return err1 == nil && err2 == nil && id != pid
}

func mountID(p string) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, err
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, errors.New("no mount id")
	}
	return stx.Mnt_id, nil
}

// mask covers p as runc does: an empty read-only tmpfs on a directory, a
// bind of /dev/null on anything else.
func mask(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return unwrapPath(err)
	}
	if fi.IsDir() {
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
			return fmt.Errorf("mount an empty read-only tmpfs: %w", err)
		}
		return nil
	}
	if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /dev/null over it: %w", err)
	}
	return nil
}

// readonly bind-mounts p onto itself and makes the new mount read-only.
func readonly(p string) error {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if cur, serr := currentFlags(p); denied(err) && serr == nil && cur&unix.MS_RDONLY != 0 {
			// Already read-only (LXC's proc:mixed makes /proc/sys and
			// /proc/sysrq-trigger so), where the bind is refused.
			return nil
		}
		return fmt.Errorf("bind onto itself: %w", err)
	}
	if err := remountBind(p, unix.MS_RDONLY); err != nil {
		return fmt.Errorf("remount read-only: %w", err)
	}
	return nil
}
