package inithelper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"A=1", "PATH=/nonexistent:" + bin}
	if p, err := LookPath("tool", env, "/", nil); err != nil || p != filepath.Join(bin, "tool") {
		t.Errorf("PATH search: %q %v", p, err)
	}
	if _, err := LookPath("data", env, "/", nil); err == nil || !strings.Contains(err.Error(), "executable file not found in $PATH") {
		t.Errorf("non-executable found: %v", err)
	}
	if p, err := LookPath("bin/tool", nil, dir, nil); err != nil || p != filepath.Join(bin, "tool") {
		t.Errorf("relative to cwd: %q %v", p, err)
	}
	if _, err := LookPath("/no/such", nil, "/", nil); err == nil || !strings.Contains(err.Error(), `exec: "/no/such": stat /no/such: no such file or directory`) {
		t.Errorf("missing absolute path: %v", err)
	}
	if _, err := LookPath(bin, nil, "/", nil); err == nil {
		t.Errorf("a directory was accepted")
	}
}

// TestMayExec: the owner, group and others bits decide for a user other
// than root, as the kernel does; root needs any x bit.
func TestMayExec(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tool")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, 1000, 2000); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   *Identity
		want bool
	}{
		{nil, true},
		{&Identity{UID: 0}, true},
		{&Identity{UID: 1000, GID: 1}, true},                         // owner
		{&Identity{UID: 3000, GID: 2000}, true},                      // group
		{&Identity{UID: 3000, GID: 1, Groups: []uint32{2000}}, true}, // supplementary group
		{&Identity{UID: 3000, GID: 1}, false},                        // others: no x
	} {
		if got := c.id.mayExec(fi); got != c.want {
			t.Errorf("%+v: mayExec = %v, want %v", c.id, got, c.want)
		}
	}
	if err := os.Chmod(f, 0o640); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(f)
	if (&Identity{UID: 0}).mayExec(fi) {
		t.Error("root may exec a file without any x bit")
	}
}
