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
