package inithelper

import (
	"os"

	"golang.org/x/sys/unix"
)

// ptmxSymlink makes /dev/ptmx a symbolic link to pts/ptmx, as runc does.
// LXC bind-mounts the container's /dev/pts/ptmx there instead; the
// runtime-spec allows both (config-linux.md "Default Devices"), but
// runtime-tools' runtimetest (and software that checks with lstat)
// expects the link. It acts only on LXC's setup: a /dev that is a tmpfs
// (the container's own, made by LXC's autodev, never the rootfs's) whose
// ptmx is the container's devpts ptmx mounted over a file; anything else,
// or any failure, leaves /dev/ptmx as it is (it works either way).
func ptmxSymlink() {
	const dev, ptmx, pts = "/dev", "/dev/ptmx", "/dev/pts"
	var sfs unix.Statfs_t
	if err := unix.Statfs(dev, &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		return
	}
	var st, ptsSt unix.Stat_t
	if err := unix.Lstat(ptmx, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return
	}
	if err := unix.Stat(pts, &ptsSt); err != nil || st.Dev != ptsSt.Dev {
		return // not the container's devpts ptmx
	}
	if err := unix.Unmount(ptmx, unix.MNT_DETACH); err != nil {
		return
	}
	if err := os.Remove(ptmx); err != nil {
		return
	}
	_ = os.Symlink("pts/ptmx", ptmx)
}
