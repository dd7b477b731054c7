package security

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexcage/nexcage/internal/testutil"
)

// The local user's side of the config tests: write-file writes args[1]
// to args[0] with mode args[2] (octal), as the user.
func init() {
	testutil.RegisterAction("write-file", func(args []string) int {
		if len(args) != 3 {
			fmt.Fprintln(os.Stderr, "write-file: want path, content, mode")
			return 2
		}
		mode, err := strconv.ParseUint(args[2], 8, 32)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(args[0]), 0o755)
		}
		if err == nil {
			err = os.WriteFile(args[0], []byte(args[1]), os.FileMode(mode))
		}
		if err == nil {
			err = os.Chmod(args[0], os.FileMode(mode))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "write-file:", err)
			return 1
		}
		return 0
	})
}

// attacker is a local user who planted a program that, run by anybody,
// creates Marker (in the user's home), answers like runc, and a config
// naming it for every program key.
type attacker struct {
	*testutil.LocalUser
	t            *testing.T
	Evil, Marker string
}

func newAttacker(t *testing.T) *attacker {
	t.Helper()
	a := &attacker{LocalUser: testutil.NewLocalUser(t), t: t}
	a.Evil = filepath.Join(a.Home, "bin", "evil")
	a.Marker = filepath.Join(a.Home, "pwned")
	a.write(a.Evil, "#!/bin/sh\ntouch "+a.Marker+"\necho 'runc version 6.6.6'\n", 0o755)
	return a
}

// write makes a file as the user.
func (a *attacker) write(path, content string, mode os.FileMode) {
	a.t.Helper()
	if r := a.Run(a.Action("write-file", path, content, strconv.FormatUint(uint64(mode), 8))); r.Code != 0 {
		a.t.Fatalf("write %s as uid %d: %s", path, a.Uid, r)
	}
	fi, err := os.Stat(path)
	if err != nil {
		a.t.Fatal(err)
	}
	if uid := fileUID(fi); uid != a.Uid {
		a.t.Fatalf("%s is owned by uid %d, want the user's %d", path, uid, a.Uid)
	}
}

// evilConfig is a nexcage config sending every id to runc and naming the
// planted program for every program key.
func (a *attacker) evilConfig() string {
	return fmt.Sprintf(`{"runtimes": {"runc": {"path": %q}, "crun": {"path": %q}},
"proxmox": {"pct_path": %q, "pveam_path": %q, "pvesh_path": %q, "pveversion_path": %q},
"templates": {"skopeo_path": %q},
"runtime": {"routing": [{"pattern": ".*", "runtime": "runc"}]}}`, a.Evil, a.Evil, a.Evil, a.Evil, a.Evil, a.Evil, a.Evil)
}

// notRun fails t if the planted program ran.
func (a *attacker) notRun(t *testing.T, what string) {
	t.Helper()
	if _, err := os.Lstat(a.Marker); err == nil {
		t.Fatalf("%s: the local user's program ran as root", what)
	}
}

func fileUID(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }

// TestConfigNotFromWorkingDirectory: a local user's ./config.json in the
// directory root runs nexcage from is not read: `nexcage version` and a
// create routed to runc run the real runc, never the user's program.
func TestConfigNotFromWorkingDirectory(t *testing.T) {
	a := newAttacker(t)
	a.write(filepath.Join(a.Home, "config.json"), a.evilConfig(), 0o644)
	nexcage := testutil.NexcageBin(t)
	env := []string{"NEXCAGE_CONFIG="} // the search path only

	r := testutil.RunIn(t, a.Home, nexcage, env, "version")
	if r.Code != 0 || strings.Contains(r.Stdout, "6.6.6") || strings.Contains(r.Stdout, a.Evil) || !strings.Contains(r.Stdout, "runc: runc version") {
		t.Errorf("nexcage version in the user's directory: %s", r)
	}
	a.notRun(t, "nexcage version")

	root := filepath.Join(testutil.ContainerTempDir(t), "root")
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	args := []string{"--root", root, "--runtime", "runc"}
	r = testutil.RunIn(t, a.Home, nexcage, env, append(args, "create", "--bundle", b, "runc-cwd")...)
	t.Cleanup(func() {
		if r := testutil.Run(t, nexcage, env, append(args, "delete", "--force", "runc-cwd")...); r.Code != 0 {
			t.Errorf("cleanup: %s", r)
		}
	})
	if r.Code != 0 {
		t.Fatalf("create with the real runc: %s", r)
	}
	a.notRun(t, "nexcage create (runc)")
	// And the user's bundle-like directory is not a config either way: a
	// relative --config is refused.
	r = testutil.RunIn(t, a.Home, nexcage, env, "--config", "config.json", "--root", root, "list")
	if r.Code != 6 || !strings.Contains(r.Stderr, "--config config.json: not an absolute path") || !strings.Contains(r.Stderr, filepath.Join(a.Home, "config.json")) {
		t.Errorf("relative --config: %s", r)
	}
	a.notRun(t, "relative --config")
}

// TestUserConfigRefused: a config file the local user owns, named with
// NEXCAGE_CONFIG or --config (absolute), is refused with exit code 6 and
// a message naming the file and its owner; `nexcage version`, which
// tolerates a broken config, falls back to the defaults and does not run
// the user's program either.
func TestUserConfigRefused(t *testing.T) {
	a := newAttacker(t)
	cfg := filepath.Join(a.Home, "nexcage.json")
	a.write(cfg, a.evilConfig(), 0o644)
	nexcage := testutil.NexcageBin(t)
	root := filepath.Join(testutil.ContainerTempDir(t), "root")
	owner := fmt.Sprintf("is owned by uid %d, not root", a.Uid)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"NEXCAGE_CONFIG", []string{"NEXCAGE_CONFIG=" + cfg}, nil, []string{"NEXCAGE_CONFIG", "config " + cfg, owner, "chown root"}},
		{"--config", []string{"NEXCAGE_CONFIG="}, []string{"--config", cfg}, []string{"config " + cfg, owner, "chown root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testutil.Run(t, nexcage, tc.env, append(tc.args, "--root", root, "list")...)
			if r.Code != 6 {
				t.Errorf("list: %s, want exit 6", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("stderr %q lacks %q", r.Stderr, w)
				}
			}
			r = testutil.Run(t, nexcage, tc.env, append(tc.args, "version")...)
			if r.Code != 0 || strings.Contains(r.Stdout, "6.6.6") || !strings.Contains(r.Stderr, "config not loaded, showing the defaults") || !strings.Contains(r.Stderr, owner) {
				t.Errorf("version: %s", r)
			}
			a.notRun(t, tc.name)
		})
	}
}

// TestUntrustedProgramRefused: root's own config naming a program in a
// directory the local user owns is refused where the program would run:
// a runc create, `nexcage version`, and a Proxmox create (pct_path).
func TestUntrustedProgramRefused(t *testing.T) {
	a := newAttacker(t)
	nexcage := testutil.NexcageBin(t)
	dir := testutil.ContainerTempDir(t)
	cfg := filepath.Join(dir, "nexcage.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"runtimes": {"runc": {"path": %q}}, "runtime": {"routing": [{"pattern": ".*", "runtime": "runc"}]}}`, a.Evil)), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	env := []string{"NEXCAGE_CONFIG="}
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	why := []string{"runtimes.runc.path " + a.Evil, "refusing to run it", fmt.Sprintf("directory %s is owned by uid %d", a.Home, a.Uid)}

	r := testutil.Run(t, nexcage, env, "--config", cfg, "--root", root, "create", "--bundle", b, "runc-evil")
	if r.Code != 6 {
		t.Errorf("create: %s, want exit 6", r)
	}
	for _, w := range why {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("create: stderr %q lacks %q", r.Stderr, w)
		}
	}
	a.notRun(t, "create")
	r = testutil.Run(t, nexcage, env, "--config", cfg, "version")
	if r.Code != 0 || !strings.Contains(r.Stdout, "runc: not available") || !strings.Contains(r.Stdout, why[2]) {
		t.Errorf("version: %s", r)
	}
	a.notRun(t, "version")

	// The Proxmox backend: pct_path (and pveversion_path) in the user's
	// directory; the create fails at the first pct call, which is refused.
	w := newWorld(t)
	data, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	c["proxmox"]["pct_path"], c["proxmox"]["pveversion_path"] = a.Evil, a.Evil
	if data, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	px := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	r = w.run("create", "--bundle", px, "px-evil")
	if r.Code != 6 || !strings.Contains(r.Stderr, "proxmox.pct_path "+a.Evil) || !strings.Contains(r.Stderr, "refusing to run it") {
		t.Errorf("Proxmox create: %s, want exit 6 naming proxmox.pct_path", r)
	}
	a.notRun(t, "Proxmox create")
	if r := w.run("state", "px-evil"); r.Code == 0 {
		t.Errorf("px-evil exists after the refused create: %s", r.Stdout)
	}
}
