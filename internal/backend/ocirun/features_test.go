package ocirun

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeFeaturesRuntime writes an executable script answering `features` with
// features (or failing like an old runtime when it is "") and
// `--version` with version.
func fakeFeaturesRuntime(t *testing.T, features, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rt")
	script := "#!/bin/sh\ncase \"$1\" in\n"
	if features != "" {
		script += "features) cat <<'EOF'\n" + features + "\nEOF\n;;\n"
	} else {
		script += "features) echo 'unknown command features' >&2; exit 1;;\n"
	}
	script += "--version) cat <<'EOF'\n" + version + "\nEOF\n;;\nesac\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFeaturesPassThrough: a runtime's own features output is returned
// unchanged.
func TestFeaturesPassThrough(t *testing.T) {
	own := `{"ociVersionMin":"1.0.0","ociVersionMax":"1.2.1","hooks":["prestart"],"linux":{"seccomp":{"enabled":false}},"future":1}`
	data, source, err := Features(context.Background(), "runc", fakeFeaturesRuntime(t, own, "runc version 9"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(data)) != own || !strings.Contains(source, " features`") {
		t.Errorf("got %s from %s", data, source)
	}
}

// TestFeaturesFromVersion: a crun without the features command is
// described from its --version only: its build flags and spec version,
// nothing it does not state.
func TestFeaturesFromVersion(t *testing.T) {
	bin := fakeFeaturesRuntime(t, "", "crun version 1.8.1\ncommit: f8a0\nrundir: /run/crun\nspec: 1.0.0\n+SYSTEMD -SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL")
	data, source, err := Features(context.Background(), "crun", bin)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	want := `{"linux":{"apparmor":{"enabled":true},"cgroup":{"systemd":true},"seccomp":{"enabled":true},"selinux":{"enabled":false}},"ociVersionMax":"1.0.0","ociVersionMin":"1.0.0"}`
	if got, _ := json.Marshal(f); string(got) != want {
		t.Errorf("features\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(source, "--version") || !strings.Contains(source, "no features command") {
		t.Errorf("source %q", source)
	}
	// runc before 1.1: the spec version and libseccomp, nothing else.
	f2 := featuresFromVersion("runc", "runc version 1.0.0\nspec: 1.0.2-dev\nlibseccomp: 2.5.1")
	if f2.OCIVersionMax != "1.0.2-dev" || f2.Linux.Seccomp == nil || !*f2.Linux.Seccomp.Enabled ||
		f2.Hooks != nil || f2.Linux.Apparmor != nil || f2.Linux.Selinux != nil {
		t.Errorf("runc: %+v %+v", f2, f2.Linux)
	}
	if _, _, err := Features(context.Background(), "runc", filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing runtime gave features")
	}
}
