package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIRoute(t *testing.T) {
	n := NewNexcage(t, WriteConfig(t, `{"runtime": {"routing": [{"pattern": "^cilium-.*$", "runtime": "crun"}]}}`))
	var d struct{ ID, Backend, Reason string }
	if err := json.Unmarshal([]byte(n.Must("route", "--format", "json", "cilium-x").Stdout), &d); err != nil || d.Backend != "crun" || d.Reason == "" {
		t.Fatalf("cilium-x: %+v %v", d, err)
	}
	if out := n.Must("route", "web").Stdout; !strings.HasPrefix(out, "web -> proxmox-lxc (") {
		t.Fatalf("web: %q", out)
	}
	if out := n.Must("--runtime", "runc", "route", "cilium-x").Stdout; !strings.HasPrefix(out, "cilium-x -> runc (") {
		t.Fatalf("--runtime override: %q", out)
	}
	n.Fails(11, "not supported", "--runtime", "vm", "route", "x")
	n.Fails(2, "", "route", "bad/id")
	// route touches no state.
	if _, err := os.Stat(n.Root()); err == nil {
		entries, _ := os.ReadDir(n.Root())
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "@") {
				t.Fatalf("route created %s", e.Name())
			}
		}
	}
}

func TestCLIUsageAndInfo(t *testing.T) {
	n := NewNexcage(t, "")
	n.Fails(2, "nexcage: ", "frobnicate")
	n.Fails(2, "unknown flag", "create", "--frob", "x")
	n.Fails(2, "invalid signal", "kill", "x", "NOPE")
	n.Fails(3, "does not exist", "state", "nothere")
	n.Fails(6, "", "--config", filepath.Join(t.TempDir(), "missing.json"), "list")

	v := n.Must("version").Stdout
	for _, want := range []string{"nexcage version", "spec: 1.3.0", "runc: runc version", "crun: crun version"} {
		if !strings.Contains(v, want) {
			t.Fatalf("version lacks %q:\n%s", want, v)
		}
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(n.Must("features").Stdout), &f); err != nil || f["ociVersionMax"] != "1.3.0" {
		t.Fatalf("features: %v %v", err, f)
	}
	dir := t.TempDir()
	n.Must("spec", "--bundle", dir)
	n.Fails(4, "exists. Remove it first", "spec", "--bundle", dir)
	// runc style: spec into the working directory.
	cwd := t.TempDir()
	n.Dir = cwd
	n.Must("spec")
	if _, err := os.Stat(filepath.Join(cwd, "config.json")); err != nil {
		t.Fatal(err)
	}
}
