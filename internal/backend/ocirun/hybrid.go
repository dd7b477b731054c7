package ocirun

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// crun (1.8 at least) refuses to run on a "hybrid" cgroup host, where
// /sys/fs/cgroup is a tmpfs of cgroup v1 hierarchies and a cgroup v2
// hierarchy mounted at /sys/fs/cgroup/unified has controllers enabled
// ("cgroups in hybrid mode not supported, drop all controllers from
// cgroupv2"). Without the v2 mount crun sees a plain v1 host and works.
// nexcage therefore runs crun's create/run in a private mount namespace
// where that mount is detached: the host keeps its mounts, and the other
// verbs (which do not look at the v2 hierarchy) run normally.

// CgroupRoot is where the cgroup hierarchies are mounted.
const CgroupRoot = "/sys/fs/cgroup"

// HelperVerb is the hidden nexcage verb that performs the workaround:
// `nexcage __crun-hybrid <crun> <args...>`, started in a new mount
// namespace, detaches <CgroupRoot>/unified and execs crun.
const HelperVerb = "__crun-hybrid"

// HybridWithV2Controllers reports whether root is the hybrid layout crun
// rejects: root is a tmpfs, root/unified is a cgroup2 mount, and that
// cgroup2 hierarchy has at least one controller.
func HybridWithV2Controllers(root string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return false
	}
	unified := filepath.Join(root, "unified")
	if err := unix.Statfs(unified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	data, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	return err == nil && strings.TrimSpace(string(data)) != ""
}

// HelperMain is the body of the hidden helper verb. It expects to run in
// its own mount namespace already made private (the parent starts it with
// CLONE_NEWNS); it detaches the cgroup2 mount and replaces itself with
// the runtime, keeping every inherited fd. It returns only on failure.
func HelperMain(args []string) int {
	if len(args) < 1 || !filepath.IsAbs(args[0]) {
		fmt.Fprintln(os.Stderr, "nexcage: "+HelperVerb+": internal helper; usage: "+HelperVerb+" /abs/path/to/crun args...")
		return 2
	}
	// Refuse to touch the mount if we are still in the host's namespace:
	// a detach there would break the host.
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err1 != nil || err2 != nil || self == parent {
		fmt.Fprintln(os.Stderr, "nexcage: "+HelperVerb+": not in a private mount namespace; refusing to unmount")
		return 1
	}
	if err := unix.Unmount(filepath.Join(CgroupRoot, "unified"), unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		fmt.Fprintf(os.Stderr, "nexcage: %s: cannot detach %s/unified: %v\n", HelperVerb, CgroupRoot, err)
		return 1
	}
	argv := append([]string{filepath.Base(args[0])}, args[1:]...)
	err := unix.Exec(args[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "nexcage: %s: exec %s: %v\n", HelperVerb, args[0], err)
	return 1
}

// DetachCgroup2 performs the workaround in process: it moves the calling
// OS thread into a new mount namespace, makes "/" recursively private
// there (as the helper's CLONE_NEWNS start does) and detaches
// <CgroupRoot>/unified. The caller has locked the thread
// (runtime.LockOSThread) and execs the runtime from it next: the
// namespace of the thread that calls execve is the new program's. The
// thread must never run other Go code afterwards.
func DetachCgroup2() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Unmount(filepath.Join(CgroupRoot, "unified"), unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("detach %s/unified: %w", CgroupRoot, err)
	}
	return nil
}
