// Package testutil builds real test fixtures (busybox bundles) for tests.
package testutil

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/bundle"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs fills dir with a busybox root filesystem: bin/busybox, one
// symlink per applet, and the usual empty top-level directories.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Fatalf("busybox-static is required (apt-get install busybox-static): %v", err)
	}
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		_ = os.Symlink("busybox", filepath.Join(dir, "bin", applet))
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BusyboxBundle creates a bundle under a new temp dir (or dir when not
// empty) running args, and returns the bundle directory. mutate, when not
// nil, may change the spec before it is written.
func BusyboxBundle(t testing.TB, dir string, args []string, mutate func(*specs.Spec)) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	BusyboxRootfs(t, filepath.Join(dir, "rootfs"))
	s := bundle.DefaultSpec()
	s.Process.Args = args
	if mutate != nil {
		mutate(s)
	}
	WriteSpec(t, dir, s)
	return dir
}

// WriteSpec writes s as dir/config.json.
func WriteSpec(t testing.TB, dir string, s *specs.Spec) {
	t.Helper()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
