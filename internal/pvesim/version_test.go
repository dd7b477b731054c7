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
	if out, _, code := runMain(t, "/usr/bin/pvesim", "pveversion"); code != 0 || !strings.HasPrefix(out, "pve-manager/8.4.") {
		t.Errorf("pvesim pveversion as 8.4: %d %q", code, out)
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

// TestOptionsByVersion: entrypoint, env and host-managed exist only on
// 9.1; older nodes refuse them as real pct does (Getopt's `Unknown
// option` for options, check_object's text inside net<N>).
func TestOptionsByVersion(t *testing.T) {
	const createUsage = "pct create <vmid> <ostemplate> [OPTIONS]\n"
	const setUsage = "pct set <vmid> [OPTIONS]\n"
	hostManaged := "400 Parameter verification failed.\n" +
		"net0: invalid format - format error\n" +
		"net0.host-managed: property is not defined in schema and the schema does not allow additional properties\n\n"
	for _, v := range []pvecfg.Version{pvecfg.V8_4, pvecfg.V9_0} {
		n, _ := initNode(t)
		n.Version = v
		cases := []struct {
			args []string
			want string
		}{
			{[]string{"create", "100", debianTmpl, "--entrypoint", "/bin/sh"}, "Unknown option: entrypoint\n400 unable to parse option\n" + createUsage},
			{[]string{"create", "100", debianTmpl, "--env", "A=1"}, "Unknown option: env\n400 unable to parse option\n" + createUsage},
			{[]string{"create", "100", debianTmpl, "--net0", "name=eth0,host-managed=1"}, hostManaged + createUsage},
			{[]string{"set", "100", "--entrypoint", "/bin/sh"}, "Unknown option: entrypoint\n400 unable to parse option\n" + setUsage},
			{[]string{"set", "100", "--net0", "name=eth0,host-managed=1"}, hostManaged + setUsage},
		}
		for _, c := range cases {
			_, stderr, code := pct(t, n, c.args...)
			if code != exitFailure || stderr != c.want {
				t.Errorf("%s: pct %q: exit %d, stderr:\n%s\nwant:\n%s", v, c.args, code, stderr, c.want)
			}
		}
		if _, err := os.Stat(n.ConfPath(100)); err == nil {
			t.Errorf("%s: a refused create left a config", v)
		}
		// Without the 9.1 options the same create works.
		if _, stderr, code := pct(t, n, "create", "100", debianTmpl, "--net0", "name=eth0"); code != 0 {
			t.Fatalf("%s: plain create: %s", v, stderr)
		}
		if _, stderr, code := pct(t, n, "set", "100", "--delete", "env"); code != exitFailure ||
			stderr != "400 Parameter verification failed.\ndelete: unknown option 'env'\n"+setUsage {
			t.Errorf("%s: set --delete env: %d %q", v, code, stderr)
		}
	}

	// 9.1: accepted; env is stored as lxc.environment.runtime lines
	// before the other raw lines and shown by pct config as one
	// NUL-joined env key.
	n, _ := initNode(t)
	n.Version = pvecfg.V9_1
	if _, stderr, code := pct(t, n, "create", "100", debianTmpl, "--entrypoint", "/usr/bin/app --serve",
		"--env", "A=1", "--net0", "name=eth0,host-managed=1,ip=dhcp"); code != 0 {
		t.Fatalf("9.1 create: %s", stderr)
	}
	raw, _ := os.ReadFile(n.ConfPath(100))
	if err := os.WriteFile(n.ConfPath(100), append(raw, "lxc.init.cwd: /srv\nlxc.environment.runtime: B=two words\n"...), 0o640); err != nil {
		t.Fatal(err)
	}
	out, stderr, _ := pct(t, n, "config", "100")
	if !strings.Contains(out, "\nentrypoint: /usr/bin/app --serve\nenv: A=1\x00B=two words\n") ||
		!strings.HasSuffix(out, "\nlxc.init.cwd: /srv\n") || stderr != "" {
		t.Errorf("9.1 pct config:\n%q\nstderr %q", out, stderr)
	}
	if _, stderr, code := pct(t, n, "set", "100", "--memory", "128"); code != 0 {
		t.Fatalf("set: %s", stderr)
	}
	raw, _ = os.ReadFile(n.ConfPath(100))
	if !strings.HasSuffix(string(raw), "unprivileged: 1\nlxc.environment.runtime: A=1\nlxc.environment.runtime: B=two words\nlxc.init.cwd: /srv\n") {
		t.Errorf("9.1 file after set:\n%s", raw)
	}
	if _, stderr, code := pct(t, n, "set", "100", "--env", "C=3"); code != 0 {
		t.Fatalf("set --env: %s", stderr)
	}
	if out, _, _ := pct(t, n, "config", "100"); !strings.Contains(out, "\nenv: C=3\n") {
		t.Errorf("set --env does not replace env:\n%s", out)
	}
	if _, stderr, code := pct(t, n, "set", "100", "--delete", "env"); code != 0 {
		t.Fatalf("set --delete env: %s", stderr)
	}
	if raw, _ := os.ReadFile(n.ConfPath(100)); strings.Contains(string(raw), "lxc.environment.runtime") {
		t.Errorf("env still in the file:\n%s", raw)
	}
	_, stderr, code := pct(t, n, "set", "100", "--net0", "name=eth0,host-managed=1,ip6=auto")
	if code != exitFailure || stderr != "net0: SLAAC is not supported for host-managed network configuration.\n" {
		t.Errorf("SLAAC with host-managed: %d %q", code, stderr)
	}
}

// TestRefusedRawLinesByVersion: a raw line the version refuses warns on
// every verb that loads the config (exit status unchanged), is gone after
// the next write, and never reaches the generated LXC config.
func TestRefusedRawLinesByVersion(t *testing.T) {
	conf := "arch: amd64\nentrypoint: /bin/app\nhostname: a\nmemory: 64\nostype: unmanaged\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n" +
		"lxc.init.uid: 1000\nlxc.init.cwd: /srv\nlxc.sysctl.net.ipv4.ip_forward: 1\nlxc.cgroup.pids.max: 10\nlxc.environment.runtime: A=1\n"
	kept := map[pvecfg.Version][]string{
		pvecfg.V8_4: {"lxc.cgroup.pids.max"},
		pvecfg.V9_0: {"lxc.init.cwd", "lxc.cgroup.pids.max"},
		pvecfg.V9_1: {"lxc.init.uid", "lxc.init.cwd", "lxc.cgroup.pids.max"},
	}
	warned := map[pvecfg.Version][]string{
		pvecfg.V8_4: {"vm 100 - unable to parse value of 'entrypoint' - unknown setting 'entrypoint'", "vm 100 - unable to parse config: lxc.init.uid: 1000", "vm 100 - unable to parse config: lxc.init.cwd: /srv",
			"vm 100 - unable to parse config: lxc.sysctl.net.ipv4.ip_forward: 1", "vm 100 - unable to parse config: lxc.environment.runtime: A=1"},
		pvecfg.V9_0: {"vm 100 - unable to parse value of 'entrypoint' - unknown setting 'entrypoint'", "vm 100 - unable to parse config: lxc.init.uid: 1000",
			"vm 100 - unable to parse config: lxc.sysctl.net.ipv4.ip_forward: 1", "vm 100 - unable to parse config: lxc.environment.runtime: A=1"},
		pvecfg.V9_1: {"vm 100 - unable to parse config: lxc.sysctl.net.ipv4.ip_forward: 1",
			"vm 100 - lxc.cgroup.pids.max is deprecated, this will be a hard error in the future!"},
	}
	for _, v := range pvecfg.Versions {
		n, _ := initNode(t)
		n.Version = v
		if err := os.WriteFile(n.ConfPath(100), []byte(conf), 0o640); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"config", "100"}, {"status", "100"}, {"list"}} {
			_, stderr, code := pct(t, n, args...)
			if code != 0 {
				t.Errorf("%s: pct %q exit %d", v, args, code)
			}
			for _, w := range warned[v] {
				if !strings.Contains(stderr, w+"\n") {
					t.Errorf("%s: pct %q: stderr %q lacks %q", v, args, stderr, w)
				}
			}
			if got := strings.Count(stderr, "\n"); got != len(warned[v]) {
				t.Errorf("%s: pct %q: %d warning lines, want %d: %q", v, args, got, len(warned[v]), stderr)
			}
		}
		parsed, err := n.loadConfQuiet(100)
		if err != nil {
			t.Fatal(err)
		}
		lxc, err := n.buildLxcConfig(100, parsed)
		if err != nil {
			t.Fatalf("%s: buildLxcConfig: %v", v, err)
		}
		text := lxc.text.String()
		for _, k := range []string{"lxc.init.uid", "lxc.init.cwd", "lxc.sysctl.net.ipv4.ip_forward"} {
			want := false
			for _, kk := range kept[v] {
				want = want || kk == k
			}
			if got := strings.Contains(text, k+" = "); got != want {
				t.Errorf("%s: generated LXC config has %s: %v, want %v\n%s", v, k, got, want, text)
			}
		}
		if got := strings.Contains(text, "A=1"); got != v.HasOCI() {
			t.Errorf("%s: env A=1 in LXC config: %v\n%s", v, got, text)
		}
		if got := strings.Contains(text, "lxc.init.cmd = /bin/app\n"); got != v.HasOCI() {
			t.Errorf("%s: entrypoint in LXC config: %v\n%s", v, got, text)
		}
		if _, stderr, code := pct(t, n, "set", "100", "--memory", "128"); code != 0 {
			t.Fatalf("%s: set: %s", v, stderr)
		}
		raw, _ := os.ReadFile(n.ConfPath(100))
		var rawKeys []string
		for _, l := range strings.Split(string(raw), "\n") {
			if k, _, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, "lxc.") && k != pvecfg.EnvKey {
				rawKeys = append(rawKeys, k)
			}
		}
		if strings.Join(rawKeys, " ") != strings.Join(kept[v], " ") {
			t.Errorf("%s: raw keys after set = %q, want %q\n%s", v, rawKeys, kept[v], raw)
		}
	}
}

// TestPveshOCIPullOnlyOn91: the oci-registry-pull API path is new in 9.1;
// older nodes have no handler for it.
func TestPveshOCIPullOnlyOn91(t *testing.T) {
	for _, v := range []pvecfg.Version{pvecfg.V8_4, pvecfg.V9_0} {
		n := toolNode(t)
		n.Version = v
		_, errOut, code := runPvesh(n, "create", "/nodes/pve/storage/local/oci-registry-pull", "--reference", "docker.io/library/alpine:3.22")
		if code != 1 || errOut != "No 'create' handler defined for '/nodes/pve/storage/local/oci-registry-pull'\n" {
			t.Errorf("%s: %d %q", v, code, errOut)
		}
	}
}

// TestPendingSectionApplied: pct set and pct start apply a [pve:pending]
// section as vmconfig_apply_pending does (deletions, then values); a
// --delete also drops the key's pending value.
func TestPendingSectionApplied(t *testing.T) {
	n, _ := initNode(t)
	base := "hostname: a\nmemory: 64\nostype: unmanaged\nrootfs: local:100/vm-100-disk-0.raw,size=1G\nswap: 32\n\n" +
		"[pve:pending]\ncores: 2\ndelete: swap\nhostname: b\n"
	if err := os.WriteFile(n.ConfPath(100), []byte(base), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := pct(t, n, "set", "100", "--memory", "128", "--delete", "hostname"); code != 0 {
		t.Fatalf("set: %s", stderr)
	}
	want := "cores: 2\nmemory: 128\nostype: unmanaged\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n"
	if raw, _ := os.ReadFile(n.ConfPath(100)); string(raw) != want {
		t.Errorf("after set:\n%s\nwant:\n%s", raw, want)
	}
}

func TestStartAppliesPending(t *testing.T) {
	n := lxcNode(t)
	const vmid = 102
	cleanupCT(t, n, vmid)
	for _, d := range []string{n.NodeLxcDir(), n.LockDir(), n.RunPveDir(), n.LxcPath()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	volid, rootfs := rootfsVolume(t, n, vmid, false)
	writeScript(t, rootfs, "usr/local/bin/start.sh", "exec sleep 1000\n", false)
	conf := "arch: amd64\nentrypoint: /usr/local/bin/start.sh\nhostname: a\nmemory: 64\nostype: debian\n" +
		"rootfs: " + volid + ",size=1G\nswap: 0\n\n[pve:pending]\nmemory: 96\n"
	if err := os.WriteFile(n.ConfPath(vmid), []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := pct(t, n, "start", "102"); code != 0 {
		t.Fatalf("start: %s", stderr)
	}
	defer pct(t, n, "stop", "102")
	raw, _ := os.ReadFile(n.ConfPath(vmid))
	if strings.Contains(string(raw), "[pve:pending]") || !strings.Contains(string(raw), "\nmemory: 96\n") {
		t.Errorf("pending not applied at start:\n%s", raw)
	}
}
