package proxmox

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

// writePveversion writes a fake `pveversion` into dir that prints what a
// node with these pve-manager and pve-container versions prints, and
// appends a line to dir/pveversion.log per call.
func writePveversion(t *testing.T, dir, manager, container string) string {
	t.Helper()
	p := filepath.Join(dir, "pveversion")
	script := `#!/bin/sh
echo "$*" >> ` + filepath.Join(dir, "pveversion.log") + `
[ "$1" = "-v" ] || exit 2
cat <<EOT
proxmox-ve: ` + manager + ` (running kernel: 6.8.12-9-pve)
pve-manager: ` + manager + ` (running version: ` + manager + `/2a5fa54a8503f96d)
pve-container: ` + container + `
lxc-pve: 6.0.0-1
EOT
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func pveversionCalls(t *testing.T, dir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "pveversion.log"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// TestNodeVersionCached: pveversion runs once; the answer is cached in
// the backend's directory and used until the program changes.
func TestNodeVersionCached(t *testing.T) {
	f := newFakeNode(t, "", "")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		v, err := f.backend.NodeVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.Container != "6.1.10" || v.PVE() != "9.1" {
			t.Fatalf("version %+v", v)
		}
	}
	if n := pveversionCalls(t, f.dir); n != 1 {
		t.Errorf("pveversion ran %d times, want 1 (cached after the first)", n)
	}
	if _, err := os.Stat(filepath.Join(f.backend.StateDir, nodeVersionFile)); err != nil {
		t.Errorf("no cache file: %v", err)
	}
	// An upgrade replaces the program: the cache no longer applies.
	p := writePveversion(t, f.dir, "8.4.1", "5.3.5")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	v, err := f.backend.NodeVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Container != "5.3.5" {
		t.Errorf("after the program changed: %+v, want 5.3.5", v)
	}
	if n := pveversionCalls(t, f.dir); n != 2 {
		t.Errorf("pveversion ran %d times, want 2", n)
	}
}

// TestNodeVersionUnreadable: a missing or failing pveversion is an
// error, never cached.
func TestNodeVersionUnreadable(t *testing.T) {
	f := newFakeNode(t, "", "")
	f.backend.cfg.Proxmox.PveversionPath = filepath.Join(f.dir, "no-such-pveversion")
	if v, err := f.backend.NodeVersion(context.Background()); err == nil || v.Known() || !strings.Contains(err.Error(), "proxmox.pveversion_path") {
		t.Errorf("missing pveversion: %+v, %v", v, err)
	}
	bad := filepath.Join(f.dir, "bad-pveversion")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'pve-manager: 9.1.1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.backend.cfg.Proxmox.PveversionPath = bad
	if v, err := f.backend.NodeVersion(context.Background()); err == nil || v.Known() || !strings.Contains(err.Error(), "pve-container") {
		t.Errorf("output without pve-container: %+v, %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(f.backend.StateDir, nodeVersionFile)); !os.IsNotExist(err) {
		t.Errorf("a failure was cached: %v", err)
	}
}

// TestCreateUsesNodeVersion: create reads the node's version (once,
// then from the cache) and gives it to translation; an unreadable version
// is a warning naming proxmox.pveversion_path, and the node counts as the
// oldest supported, which a bundle needing no newer key runs on.
func TestCreateUsesNodeVersion(t *testing.T) {
	for name, setup := range map[string]func(f *fakeNode){
		"8.4":     func(f *fakeNode) { f.backend.cfg.Proxmox.PveversionPath = writePveversion(t, f.dir, "8.4.1", "5.3.5") },
		"unknown": func(f *fakeNode) { f.backend.cfg.Proxmox.PveversionPath = filepath.Join(f.dir, "none") },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeNode(t, "", "")
			setup(f)
			var logs bytes.Buffer
			f.backend.log = slog.New(slog.NewTextHandler(&logs, nil))
			for _, id := range []string{"ct1", "ct2"} {
				var cps []string
				c, opts := createOpts(t, &cps)
				c.ID = id
				// Needs no raw key a PVE 8.4 node drops.
				opts.Spec.Process.Env = nil
				if err := f.backend.Create(context.Background(), c, opts); err != nil {
					t.Fatalf("create %s: %v", id, err)
				}
				t.Cleanup(func() { _ = f.backend.Delete(context.Background(), c, true) })
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "treating it as the oldest supported (PVE 8.4)") &&
				strings.Contains(logs.String(), "proxmox.pveversion_path")
			if warned != (name == "unknown") {
				t.Errorf("warning about the unknown version: %v, want %v; log:\n%s", warned, name == "unknown", logs.String())
			}
			if name == "8.4" {
				if n := pveversionCalls(t, f.dir); n != 1 {
					t.Errorf("pveversion ran %d times for two creates, want 1", n)
				}
				data, err := os.ReadFile(filepath.Join(f.backend.StateDir, nodeVersionFile))
				if err != nil || !strings.Contains(string(data), `"pve_container":"5.3.5"`) {
					t.Errorf("cache %s: %v", data, err)
				}
			}
		})
	}
}

// TestTranslateVersionAwareRawKeys: translation never writes a raw key
// the node would drop; the refusal is "unsupported" and names the key,
// the node's version and the fix.
func TestTranslateVersionAwareRawKeys(t *testing.T) {
	node91early := pve.NodeVersion{Manager: "9.1.1", Container: "6.0.18"}
	for _, tc := range []struct {
		name string
		node pve.NodeVersion
		key  string
		ok   bool
	}{
		{"cwd on 8.4", node84, "lxc.init.cwd", false},
		{"cwd on 9.0", node90, "lxc.init.cwd", true},
		{"env on 9.0", node90, "lxc.environment.runtime", false},
		{"env on 9.1", node91early, "lxc.environment.runtime", true},
		{"uid on early 9.1", node91early, "lxc.init.uid", false},
		{"groups on late 9.1", node91, "lxc.init.groups", true},
		{"gid on an unknown node", pve.NodeVersion{}, "lxc.init.gid", false},
		{"net sysctl never", node91, "lxc.sysctl.net.ipv4.ip_forward", false},
		{"mount entry everywhere", node84, "lxc.mount.entry", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRawKey("c1", tc.node, tc.key)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want accepted=%v", err, tc.ok)
			}
			if err == nil {
				return
			}
			if k := errs.KindOf(err); k != errs.KindUnsupported {
				t.Errorf("kind %v, want unsupported", k)
			}
			msg := err.Error()
			for _, want := range []string{"c1", tc.key} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if strings.HasPrefix(tc.key, "lxc.init.") || strings.HasPrefix(tc.key, "lxc.environment") {
				if !strings.Contains(msg, tc.node.Summary()) && tc.node.Known() {
					t.Errorf("error %q does not name the node version %s", msg, tc.node.Summary())
				}
				if !strings.Contains(msg, "upgrade the node to PVE") {
					t.Errorf("error %q gives no fix", msg)
				}
			}
		})
	}
	// The gate Translate ends with refuses a request holding such a key.
	req := &Request{Raw: []pve.RawLine{{Key: "lxc.init.cmd", Value: "/sbin/init"}, {Key: "lxc.init.cwd", Value: "/app"}}}
	err := checkRequest("c1", node84, req)
	if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "lxc.init.cwd") || !strings.Contains(err.Error(), "PVE 8.4") {
		t.Errorf("request with lxc.init.cwd on 8.4: %v", err)
	}
	if err := checkRequest("c1", node90, req); err != nil {
		t.Errorf("request with lxc.init.cwd on 9.0: %v", err)
	}
	// Whatever translation writes for a bundle, a late 9.1 keeps.
	if _, err := Translate(baseInput(t)); err != nil {
		t.Errorf("Translate on late 9.1: %v", err)
	}
}

// TestNodeVersionCacheOnlyAfterSuccess: a refused create leaves nothing in
// the state root, and a backend without a state directory caches nothing.
func TestNodeVersionCacheOnlyAfterSuccess(t *testing.T) {
	f := newFakeNode(t, "", "")
	var cps []string
	c, opts := createOpts(t, &cps)
	opts.Spec.Mounts = append(opts.Spec.Mounts, specs.Mount{Destination: "/nfs", Type: "nfs", Source: "srv:/x"})
	if err := f.backend.Create(context.Background(), c, opts); errs.KindOf(err) != errs.KindUnsupported {
		t.Fatalf("create with an nfs mount: %v", err)
	}
	if _, err := os.Stat(f.backend.StateDir); !os.IsNotExist(err) {
		t.Errorf("a refused create left %s: %v", f.backend.StateDir, err)
	}
	f.backend.StateDir = ""
	for i := 0; i < 2; i++ {
		if _, err := f.backend.NodeVersion(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// One run by the refused create, two without a cache.
	if n := pveversionCalls(t, f.dir); n != 3 {
		t.Errorf("pveversion ran %d times, want 3", n)
	}
}
