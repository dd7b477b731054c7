package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The bridge check reads /sys/class/net/<bridge>/bridge. This machine has
// no Proxmox bridge and the tests must not add one to the host, so
// `nexcage health` runs in a network namespace of its own that has a
// bridge: the test binary re-executes itself (healthNetnsEnv set) in new
// network and mount namespaces, creates the bridge there, mounts that
// namespace's sysfs over /sys/class/net and /sys/devices/virtual/net only
// (the rest of /sys, the cgroup mounts included, stays the host's), then
// execs nexcage. Everything disappears with the process.
const (
	healthNetnsEnv    = "NEXCAGE_E2E_HEALTH_NETNS"
	healthTestBridge  = "nxtest0"
	healthNetnsFailed = 120
)

func init() {
	if os.Getenv(healthNetnsEnv) != "1" {
		return
	}
	// In the child: args are the nexcage argv.
	args := os.Args[1:]
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "health netns helper: "+format+"\n", a...)
		os.Exit(healthNetnsFailed)
	}
	if out, err := exec.Command("ip", "link", "add", healthTestBridge, "type", "bridge").CombinedOutput(); err != nil {
		fail("ip link add: %v: %s", err, out)
	}
	sys, err := os.MkdirTemp("", "nexcage-e2e-sysfs-")
	if err != nil {
		fail("%v", err)
	}
	if err := unix.Mount("sysfs", sys, "sysfs", 0, ""); err != nil {
		fail("mount sysfs: %v", err)
	}
	for _, d := range []string{"class/net", "devices/virtual/net"} {
		if err := unix.Mount(filepath.Join(sys, d), filepath.Join("/sys", d), "", unix.MS_BIND, ""); err != nil {
			fail("bind %s: %v", d, err)
		}
	}
	// Detach the helper mount; the binds keep it alive. The directory is
	// removed; the binds go away with the namespace.
	_ = unix.Unmount(sys, unix.MNT_DETACH)
	_ = os.Remove(sys)
	os.Unsetenv(healthNetnsEnv)
	err = syscall.Exec(args[0], args, os.Environ())
	fail("exec %s: %v", args[0], err)
}

// healthReport is `nexcage health --format json`.
type healthReport struct {
	Status string `json:"status"`
	Config string `json:"config"`
	Checks []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Detail string `json:"detail"`
		Advice string `json:"advice"`
	} `json:"checks"`
}

func (r healthReport) statuses() map[string]string {
	m := map[string]string{}
	for _, c := range r.Checks {
		m[c.Name] = c.Status
	}
	return m
}

// runHealth runs `nexcage <globals> health --format json` with env, in a
// network namespace with the test bridge when withBridge.
func runHealth(t *testing.T, withBridge bool, env []string, globals ...string) (int, healthReport, string) {
	t.Helper()
	argv := append(append([]string{NexcageBin(t)}, globals...), "health", "--format", "json")
	var cmd *exec.Cmd
	if withBridge {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(self, argv...)
		cmd.Env = append(append(os.Environ(), env...), healthNetnsEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Dir = t.TempDir()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("nexcage health: %v", err)
	}
	if code == healthNetnsFailed {
		t.Fatalf("network namespace helper failed: %s", stderr.String())
	}
	var r healthReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("health --format json: %v\nstdout %q\nstderr %q", err, out, stderr.String())
	}
	return code, r, stderr.String()
}

// healthNode is a pvesim node with a nexcage config where every check
// passes (in the bridge namespace).
type healthNode struct {
	root, bin string
	env       []string
}

func newHealthNode(t *testing.T) *healthNode {
	t.Helper()
	sim := PvesimBin(t)
	h := &healthNode{root: filepath.Join(t.TempDir(), "pve"), bin: t.TempDir()}
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
		if err := os.Symlink(sim, filepath.Join(h.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(h.root, 0o755); err != nil {
		t.Fatal(err)
	}
	h.env = []string{"PVESIM_ROOT=" + h.root}
	cmd := exec.Command(sim, "init")
	cmd.Env = append(os.Environ(), h.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pvesim init: %v\n%s", err, out)
	}
	return h
}

// config writes a config for the node; edit changes the proxmox section
// and the bridge before it is written.
func (h *healthNode) config(t *testing.T, edit func(p map[string]any, net map[string]any)) string {
	t.Helper()
	p := map[string]any{
		"pct_path":         filepath.Join(h.bin, "pct"),
		"pveam_path":       filepath.Join(h.bin, "pveam"),
		"pvesh_path":       filepath.Join(h.bin, "pvesh"),
		"pveversion_path":  filepath.Join(h.bin, "pveversion"),
		"etc_pve":          filepath.Join(h.root, "etc/pve"),
		"lock_dir":         filepath.Join(h.root, "run/lock/lxc"),
		"node":             "pve",
		"storage":          "local",
		"template_storage": "local",
	}
	net := map[string]any{"bridge": healthTestBridge}
	if edit != nil {
		edit(p, net)
	}
	data, err := json.Marshal(map[string]any{
		"proxmox": p,
		"network": net,
		"runtime": map[string]any{"routing": []map[string]string{{"pattern": "^cilium-.*$", "runtime": "crun"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return WriteConfig(t, string(data))
}

func TestHealthOnPvesimNode(t *testing.T) {
	h := newHealthNode(t)
	state := filepath.Join(t.TempDir(), "state")
	globals := func(cfg string) []string { return []string{"--root", state, "--config", cfg} }

	t.Run("all pass", func(t *testing.T) {
		code, r, stderr := runHealth(t, true, h.env, append(globals(h.config(t, nil)), "--id", "cilium-agent")...)
		for _, c := range r.Checks {
			if c.Status != "PASS" {
				t.Errorf("%s: %s %s (%s)", c.Name, c.Status, c.Detail, c.Advice)
			}
		}
		if code != 0 || r.Status != "PASS" || len(r.Checks) < 14 {
			t.Errorf("exit %d status %s, %d checks; stderr %q", code, r.Status, len(r.Checks), stderr)
		}
		for _, c := range r.Checks {
			if c.Name == "routing" && !strings.Contains(c.Detail, `"cilium-agent" -> crun`) {
				t.Errorf("routing: %q", c.Detail)
			}
			// pvesim is a 9.1 node unless told otherwise.
			if c.Name == "pve-version" && !strings.HasPrefix(c.Detail, "PVE 9.1 (pve-container 6.") {
				t.Errorf("pve-version: %q", c.Detail)
			}
		}
	})

	storageCfg := filepath.Join(h.root, "etc/pve/storage.cfg")
	cases := []struct {
		name  string
		edit  func(p, net map[string]any)
		env   []string
		setup func(t *testing.T)
		fail  []string
	}{
		{name: "storage.cfg deleted", setup: func(t *testing.T) {
			if err := os.Rename(storageCfg, storageCfg+".away"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Rename(storageCfg+".away", storageCfg) })
		}, fail: []string{"storage", "template-storage"}},
		{name: "pct_path points at nothing", edit: func(p, _ map[string]any) { p["pct_path"] = "/nonexistent/pct" }, fail: []string{"pct"}},
		{name: "pveam fails", env: []string{"PVESIM_FAIL=pveam:available:500 internal error"}, fail: []string{"pveam"}},
		{name: "pvesh missing", edit: func(p, _ map[string]any) { p["pvesh_path"] = filepath.Join(h.bin, "no-pvesh") }, fail: []string{"pvesh"}},
		{name: "wrong node", edit: func(p, _ map[string]any) { p["node"] = "pve2" }, fail: []string{"etc-pve"}},
		{name: "etc_pve elsewhere", edit: func(p, _ map[string]any) { p["etc_pve"] = filepath.Join(h.root, "nothing") },
			fail: []string{"etc-pve", "storage", "template-storage"}},
		{name: "unknown storage", edit: func(p, _ map[string]any) { p["storage"] = "tank" }, fail: []string{"storage"}},
		{name: "unknown template storage", edit: func(p, _ map[string]any) { p["template_storage"] = "nfs-tmpl" }, fail: []string{"template-storage"}},
		{name: "bridge missing", edit: func(_, net map[string]any) { net["bridge"] = "vmbr9" }, fail: []string{"bridge"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			code, r, _ := runHealth(t, true, append(append([]string{}, h.env...), tc.env...), globals(h.config(t, tc.edit))...)
			want := map[string]bool{}
			for _, n := range tc.fail {
				want[n] = true
			}
			for _, c := range r.Checks {
				switch {
				case want[c.Name] && (c.Status != "FAIL" || c.Advice == ""):
					t.Errorf("%s: %s %q advice %q, want FAIL with advice", c.Name, c.Status, c.Detail, c.Advice)
				case !want[c.Name] && c.Status != "PASS":
					t.Errorf("%s: %s %q, want PASS", c.Name, c.Status, c.Detail)
				}
			}
			if code != 1 || r.Status != "FAIL" {
				t.Errorf("exit %d status %s, want 1 FAIL", code, r.Status)
			}
		})
	}

	t.Run("broken config", func(t *testing.T) {
		cfg := WriteConfig(t, `{"proxmox": {"timeout": "soon"}}`)
		code, r, _ := runHealth(t, false, h.env, globals(cfg)...)
		st := r.statuses()
		if code != 1 || st["config"] != "FAIL" || st["routing"] != "FAIL" {
			t.Errorf("exit %d, statuses %v", code, st)
		}
	})

	t.Run("text output and warnings only", func(t *testing.T) {
		// Nothing routed to Proxmox and the Proxmox tools missing: only
		// warnings, exit 2; the text names each one.
		cfg := WriteConfig(t, `{"proxmox": {"pct_path": "/nonexistent/pct", "etc_pve": "`+filepath.Join(h.root, "etc/pve")+`", "node": "pve",
			"pveam_path": "`+filepath.Join(h.bin, "pveam")+`", "pvesh_path": "`+filepath.Join(h.bin, "pvesh")+`"},
			"network": {"bridge": "vmbr9"}, "container_config": {"default_container_type": "runc"}}`)
		cmd := exec.Command(NexcageBin(t), "--root", state, "--config", cfg, "health")
		cmd.Env = append(os.Environ(), h.env...)
		out, err := cmd.Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("exit %v, want 2\n%s", err, out)
		}
		for _, want := range []string{"WARN  pct", "WARN  bridge", "no route leads to proxmox-lxc", "PASS  runc", "WARN: "} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestHealthBareHost: no Proxmox at all (the tools are not on PATH, no
// /etc/pve): the Proxmox checks fail with advice, runc and crun pass.
func TestHealthBareHost(t *testing.T) {
	if _, err := os.Stat("/etc/pve"); err == nil {
		t.Fatal("this test expects a host without /etc/pve; run it on a non-Proxmox machine")
	}
	cfg := WriteConfig(t, `{}`)
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NEXCAGE_CONFIG="}
	code, r, _ := runHealth(t, false, env, "--root", filepath.Join(t.TempDir(), "state"), "--config", cfg)
	st := r.statuses()
	for _, n := range []string{"pct", "pveam", "pvesh", "etc-pve", "storage", "template-storage", "bridge"} {
		if st[n] != "FAIL" {
			t.Errorf("%s: %s, want FAIL", n, st[n])
		}
	}
	for _, n := range []string{"config", "state-root", "runc", "crun", "cgroup", "lxc-tools", "routing"} {
		if st[n] != "PASS" {
			t.Errorf("%s: %s, want PASS", n, st[n])
		}
	}
	// An unreadable version only warns: nexcage works as on the oldest node.
	if st["pve-version"] != "WARN" {
		t.Errorf("pve-version: %s, want WARN", st["pve-version"])
	}
	for _, c := range r.Checks {
		if (c.Name == "runc" || c.Name == "crun") && !strings.Contains(c.Detail, "version") {
			t.Errorf("%s detail %q lacks the version", c.Name, c.Detail)
		}
		if c.Status == "FAIL" && c.Advice == "" {
			t.Errorf("%s fails without advice", c.Name)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}
