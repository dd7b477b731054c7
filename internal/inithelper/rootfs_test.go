package inithelper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// TestWriteOOMScoreAdj writes the value where the kernel reads it.
func TestWriteOOMScoreAdj(t *testing.T) {
	dir := t.TempDir()
	old := procSelf
	procSelf = dir + "/"
	t.Cleanup(func() { procSelf = old })
	f := filepath.Join(dir, "oom_score_adj")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeOOMScoreAdj(-500); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "-500" {
		t.Errorf("oom_score_adj = %q", b)
	}
	procSelf = filepath.Join(dir, "missing") + "/"
	if err := writeOOMScoreAdj(1); err == nil || !strings.Contains(err.Error(), "process.oomScoreAdj 1") {
		t.Errorf("error = %v", err)
	}
}
