package pvesim

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

func TestInitRecordsVersionAndToolsFollowIt(t *testing.T) {
	root := t.TempDir()
	t.Setenv("PVESIM_ROOT", root)
	t.Setenv(versionEnv, "")
	if _, stderr, code := runMain(t, "pvesim", "init", "--pve-version", "8.4"); code != 0 {
		t.Fatalf("init: %d %s", code, stderr)
	}
	n := &Node{Root: root, Name: "pve"}
	if b, err := os.ReadFile(n.VersionFile()); err != nil || string(b) != "8.4\n" {
		t.Fatalf("version file = %q, %v", b, err)
	}
	out, stderr, code := runMain(t, "pveversion", "-v")
	if code != 0 || !strings.Contains(out, "\npve-container: 5.3.5\n") || !strings.Contains(out, "\nlxc-pve: 6.0.0-1\n") {
		t.Fatalf("pveversion -v as 8.4: %d %q %q", code, out, stderr)
	}
	// The same version in the environment is fine, another one is refused.
	t.Setenv(versionEnv, "8.4")
	if _, stderr, code := runMain(t, "pct", "list"); code != 0 {
		t.Errorf("pct list with agreeing env: %d %s", code, stderr)
	}
	t.Setenv(versionEnv, "9.1")
	_, stderr, code = runMain(t, "pct", "list")
	if code != exitUsage || !strings.Contains(stderr, "PVESIM_PVE_VERSION=9.1 conflicts with node 'pve', which was initialised as Proxmox VE 8.4") {
		t.Errorf("conflicting env: %d %q", code, stderr)
	}
	// A second init asking for another version is refused; one without a
	// version keeps the record.
	t.Setenv(versionEnv, "")
	if _, stderr, code := runMain(t, "pvesim", "init", "--pve-version", "9.0"); code == 0 || !strings.Contains(stderr, "was initialised as Proxmox VE 8.4") {
		t.Errorf("re-init as 9.0: %d %q", code, stderr)
	}
	if _, stderr, code := runMain(t, "pvesim", "init"); code != 0 {
		t.Errorf("re-init without version: %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(n.VersionFile()); string(b) != "8.4\n" {
		t.Errorf("version file after re-init = %q", b)
	}
}

func TestVersionFromEnvAndDefault(t *testing.T) {
	root := t.TempDir()
	t.Setenv("PVESIM_ROOT", root)
	t.Setenv(versionEnv, "9.0")
	if _, stderr, code := runMain(t, "pvesim", "init"); code != 0 {
		t.Fatalf("init: %d %s", code, stderr)
	}
	if v, _ := (&Node{Root: root, Name: "pve"}).recordedVersion(); v != pvecfg.V9_0 {
		t.Errorf("init with env 9.0 recorded %v", v)
	}
	// A second node of the root without any choice gets the default.
	t.Setenv(versionEnv, "")
	t.Setenv("PVESIM_NODE", "pve2")
	if _, stderr, code := runMain(t, "pvesim", "init"); code != 0 {
		t.Fatalf("init pve2: %d %s", code, stderr)
	}
	if v, _ := (&Node{Root: root, Name: "pve2"}).recordedVersion(); v != pvecfg.V9_1 {
		t.Errorf("default recorded %v, want 9.1", v)
	}
	// A root without a record (older pvesim) follows the environment.
	t.Setenv("PVESIM_NODE", "pve3")
	t.Setenv(versionEnv, "8.4")
	out, _, _ := runMain(t, "pveversion")
	if !strings.HasPrefix(out, "pve-manager/8.4.") {
		t.Errorf("pveversion as unrecorded 8.4: %q", out)
	}
}

func TestVersionRefusesUnknownAndConflicts(t *testing.T) {
	root := t.TempDir()
	t.Setenv("PVESIM_ROOT", root)
	t.Setenv(versionEnv, "8.3")
	_, stderr, code := runMain(t, "pct", "list")
	if code != exitUsage || !strings.Contains(stderr, "PVESIM_PVE_VERSION: unknown Proxmox VE version '8.3' (supported: 8.4, 9.0, 9.1)") {
		t.Errorf("unknown env version: %d %q", code, stderr)
	}
	_, stderr, code = runMain(t, "pvesim", "init")
	if code != exitUsage || !strings.Contains(stderr, "unknown Proxmox VE version '8.3'") {
		t.Errorf("init with unknown env version: %d %q", code, stderr)
	}
	t.Setenv(versionEnv, "9.0")
	_, stderr, code = runMain(t, "pvesim", "init", "--pve-version=9.1")
	if code != exitUsage || !strings.Contains(stderr, "--pve-version 9.1 conflicts with PVESIM_PVE_VERSION=9.0") {
		t.Errorf("init flag/env conflict: %d %q", code, stderr)
	}
	t.Setenv(versionEnv, "")
	_, stderr, code = runMain(t, "pvesim", "init", "--pve-version", "10")
	if code != exitUsage || !strings.Contains(stderr, "--pve-version: unknown Proxmox VE version '10'") {
		t.Errorf("init unknown flag: %d %q", code, stderr)
	}
	if _, err := os.Stat((&Node{Root: root, Name: "pve"}).VersionFile()); err == nil {
		t.Error("a refused init recorded a version")
	}
}

// TestPveversionOutput checks both forms for every version, with the
// package versions of proxmox-pct.md §9.1 and the line shapes of
// pve-manager's pveversion (nexcage's pve.ParsePveversion reads
// `pve-container: <version>`).
func TestPveversionOutput(t *testing.T) {
	cases := []struct {
		v                       pvecfg.Version
		container, lxc, manager *regexp.Regexp
	}{
		{pvecfg.V8_4, regexp.MustCompile(`(?m)^pve-container: 5\.3\.\d+$`), regexp.MustCompile(`(?m)^lxc-pve: 6\.0\.0-\d+$`), regexp.MustCompile(`(?m)^pve-manager: (8\.4\.\d+) \(running version: (8\.4\.\d+)/[0-9a-f]{16}\)$`)},
		{pvecfg.V9_0, regexp.MustCompile(`(?m)^pve-container: 6\.0\.([0-9]|1[0-4])$`), regexp.MustCompile(`(?m)^lxc-pve: 6\.0\.\d+-\d+$`), regexp.MustCompile(`(?m)^pve-manager: (9\.0\.\d+) \(running version: (9\.0\.\d+)/[0-9a-f]{16}\)$`)},
		{pvecfg.V9_1, regexp.MustCompile(`(?m)^pve-container: 6\.(0\.(1[5-9])|1\.\d+)$`), regexp.MustCompile(`(?m)^lxc-pve: 6\.0\.5-\d+$`), regexp.MustCompile(`(?m)^pve-manager: (9\.1\.\d+) \(running version: (9\.1\.\d+)/[0-9a-f]{16}\)$`)},
	}
	for _, c := range cases {
		n, out, _ := newPctNode(t.TempDir(), "pve")
		n.Version = c.v
		if code := n.Pveversion([]string{"--verbose"}); code != 0 {
			t.Fatalf("%s: exit %d", c.v, code)
		}
		s := out.String()
		lines := strings.Split(s, "\n")
		if !regexp.MustCompile(`^proxmox-ve: ` + regexp.QuoteMeta(c.v.String()) + `\.0 \(running kernel: [0-9.]+-\d+-pve\)$`).MatchString(lines[0]) {
			t.Errorf("%s: first line %q", c.v, lines[0])
		}
		if !strings.HasPrefix(lines[1], "pve-manager: ") {
			t.Errorf("%s: second line %q", c.v, lines[1])
		}
		m := c.manager.FindStringSubmatch(s)
		if m == nil || m[1] != m[2] {
			t.Errorf("%s: pve-manager line missing or inconsistent in %q", c.v, s)
		}
		if !c.container.MatchString(s) || !c.lxc.MatchString(s) {
			t.Errorf("%s: pve-container/lxc-pve lines wrong in %q", c.v, s)
		}
		out.Reset()
		n.Pveversion(nil)
		if !regexp.MustCompile(`^pve-manager/` + regexp.QuoteMeta(c.v.String()) + `\.\d+/[0-9a-f]{16} \(running kernel: [0-9.]+-\d+-pve\)\n$`).MatchString(out.String()) {
			t.Errorf("%s: one-line form %q", c.v, out.String())
		}
	}
	n, _, errb := newPctNode(t.TempDir(), "pve")
	if code := n.Pveversion([]string{"--bogus"}); code != exitFailure || errb.String() != "Unknown option: bogus\nUSAGE: pveversion [--verbose]\n" {
		t.Errorf("bad option: %d %q", code, errb.String())
	}
}
