package inithelper

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootfsValidate: the helper refuses, before mounting anything, a
// plan the translation would never produce.
func TestRootfsValidate(t *testing.T) {
	dev := Mount{Kind: KindDev, Destination: "/dev", Source: "tmpfs", Flags: []string{"nosuid"}, Data: []string{"mode=755"}}
	good := RootfsSetup{Mounts: []Mount{
		{Kind: KindRebind, Destination: "/proc", Flags: []string{"nosuid"}},
		dev,
		{Kind: KindDevpts, Destination: "/dev/pts", Source: "devpts", Data: []string{"newinstance", "ptmxmode=0666", "gid=5"}},
		{Kind: KindTmpfs, Destination: "/dev/shm", Source: "shm", Data: []string{"size=65536k", "mode=1777"}},
		{Kind: KindMqueue, Destination: "/dev/mqueue", Source: "mqueue"},
	}, MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good plan refused: %v", err)
	}
	tests := []struct {
		name string
		r    RootfsSetup
		want string
	}{
		{"relative destination", RootfsSetup{Mounts: []Mount{{Kind: KindRebind, Destination: "proc"}}}, "not absolute"},
		{"unclean destination", RootfsSetup{Mounts: []Mount{{Kind: KindRebind, Destination: "/a/../b"}}}, "not clean"},
		{"root", RootfsSetup{Mounts: []Mount{{Kind: KindRebind, Destination: "/"}}}, "path /"},
		{"helper dir", RootfsSetup{MaskedPaths: []string{"/.nexcage"}}, "helper directory"},
		{"unknown flag", RootfsSetup{Mounts: []Mount{{Kind: KindRebind, Destination: "/x", Flags: []string{"remount"}}}}, `unknown flag "remount"`},
		{"unknown kind", RootfsSetup{Mounts: []Mount{{Kind: "proc", Destination: "/proc", Source: "proc"}}}, "unknown kind"},
		{"dev elsewhere", RootfsSetup{Mounts: []Mount{{Kind: KindDev, Destination: "/mnt", Source: "tmpfs"}}}, "for /dev only"},
		{"devpts without fresh dev", RootfsSetup{Mounts: []Mount{{Kind: KindDevpts, Destination: "/dev/pts", Source: "devpts"}}}, "after a fresh /dev"},
		{"tmpfs outside dev", RootfsSetup{Mounts: []Mount{dev, {Kind: KindTmpfs, Destination: "/tmp", Source: "tmpfs"}}}, "directly under a fresh /dev"},
		{"bad data", RootfsSetup{Mounts: []Mount{{Kind: KindDev, Destination: "/dev", Source: "tmpfs", Data: []string{"mode=755,uid=0"}}}}, "not supported"},
		{"source with comma", RootfsSetup{Mounts: []Mount{{Kind: KindDev, Destination: "/dev", Source: "a,b"}}}, "bad source"},
		{"rebind with data", RootfsSetup{Mounts: []Mount{{Kind: KindRebind, Destination: "/x", Data: []string{"size=1"}}}}, "no source or data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDataAllowed: the option sets of the fresh mounts.
func TestDataAllowed(t *testing.T) {
	for _, c := range []struct {
		kind, opt string
		ok        bool
	}{
		{KindDev, "mode=755", true}, {KindDev, "size=65536k", true}, {KindTmpfs, "size=50%", true},
		{KindTmpfs, "uid=1000", true}, {KindTmpfs, "newinstance", false}, {KindTmpfs, "mode=rwx", false},
		{KindDevpts, "ptmxmode=0666", true}, {KindDevpts, "gid=5", true}, {KindDevpts, "size=1k", false},
		{KindMqueue, "mode=755", false}, {KindRebind, "mode=755", false},
	} {
		if got := DataAllowed(c.kind, c.opt); got != c.ok {
			t.Errorf("DataAllowed(%s, %s) = %v, want %v", c.kind, c.opt, got, c.ok)
		}
	}
}

// inPrivateMountNS runs f on a thread of its own in a new, private mount
// namespace (the thread ends with f, so its namespace and mounts go with
// it; the host's mounts are never touched).
func inPrivateMountNS(t *testing.T, f func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (tests run as root)")
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMaskAndReadonly: a masked file reads empty, a masked directory is
// an empty read-only tmpfs, a missing path is skipped, a read-only path
// refuses writes but keeps its content.
func TestMaskAndReadonly(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"secret": "s3cret", "hidden/file": "x", "ro/file": "ro"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inPrivateMountNS(t, func() error {
		for _, p := range []string{"secret", "hidden", "absent"} {
			if err := mask(filepath.Join(dir, p)); err != nil {
				return err
			}
		}
		if err := readonly(filepath.Join(dir, "ro")); err != nil {
			return err
		}
		if b, err := os.ReadFile(filepath.Join(dir, "secret")); err != nil || len(b) != 0 {
			return fmt.Errorf("masked file reads %q, %v", b, err)
		}
		if ents, err := os.ReadDir(filepath.Join(dir, "hidden")); err != nil || len(ents) != 0 {
			return fmt.Errorf("masked dir holds %v, %v", ents, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hidden/new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("write into the masked dir: %v, want EROFS", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ro/file"), []byte("w"), 0o644); !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("write to the read-only path: %v, want EROFS", err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "ro/file")); err != nil || string(b) != "ro" {
			return fmt.Errorf("read-only path reads %q, %v", b, err)
		}
		return nil
	})
}

// TestCopyDev: the fresh /dev gets LXC's devices as binds (the same
// device, not a copy), its directories walked, its symlinks copied, a
// mount below it bound whole, and only mount points for what the spec
// mounts fresh; ptmx is left for the pts/ptmx symlink.
func TestCopyDev(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, d := range []string{"net", "pts", "shm", "sub"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "sub/inside"), []byte("sub"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/fd", filepath.Join(src, "fd")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"null", "ptmx", "net/tun", "shm/leftover"} {
		if err := os.WriteFile(filepath.Join(src, f), nil, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	inPrivateMountNS(t, func() error {
		// As in LXC's /dev: the devices are binds, sub a mount of its own.
		if err := unix.Mount("/dev/null", filepath.Join(src, "null"), "", unix.MS_BIND, ""); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", filepath.Join(src, "sub"), "tmpfs", 0, ""); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "sub/onmount"), []byte("m"), 0o644); err != nil {
			return err
		}
		if err := copyDev(src, dst, map[string]bool{"pts": true, "shm": true}, true); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dst, "null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			return fmt.Errorf("null: %+v %v, want the char device 1,3", st, err)
		}
		if l, err := os.Readlink(filepath.Join(dst, "fd")); err != nil || l != "/proc/self/fd" {
			return fmt.Errorf("fd symlink: %q %v", l, err)
		}
		if _, err := os.Stat(filepath.Join(dst, "net/tun")); err != nil {
			return fmt.Errorf("net/tun: %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(dst, "sub/onmount")); err != nil || string(b) != "m" {
			return fmt.Errorf("sub (a mount) not bound whole: %q %v", b, err)
		}
		if _, err := os.Lstat(filepath.Join(dst, "ptmx")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ptmx copied (%v); the pts/ptmx symlink replaces it", err)
		}
		for _, d := range []string{"pts", "shm"} {
			ents, err := os.ReadDir(filepath.Join(dst, d))
			if err != nil || len(ents) != 0 {
				return fmt.Errorf("%s: %v %v, want an empty mount point", d, ents, err)
			}
		}
		return nil
	})
}
