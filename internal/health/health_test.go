package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/testutil"
)

// fakeHost is a Proxmox node on a temp tree where every check passes;
// tests break one piece at a time.
type fakeHost struct {
	dir      string
	cfg      *config.Config
	tools    map[string]string // name -> path
	answers  map[string]string // "path arg..." -> stdout; missing = failure
	stderr   map[string]string
	fstypes  map[string]int64
	cfgErr   error
	warnings []string
	ran      []string
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	h := &fakeHost{dir: dir, tools: map[string]string{}, answers: map[string]string{}, stderr: map[string]string{}}
	for _, d := range []string{"etc/pve/nodes/pve1/lxc", "sys/class/net/vmbr0/bridge", "sys/class/net/eth0",
		"cgroup/unified", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.write(t, "etc/pve/storage.cfg", "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\n"+
		"lvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n")
	h.write(t, "cgroup/unified/cgroup.controllers", "hugetlb\n")
	h.fstypes = map[string]int64{
		filepath.Join(dir, "cgroup"):         unix.TMPFS_MAGIC,
		filepath.Join(dir, "cgroup/unified"): unix.CGROUP2_SUPER_MAGIC,
	}
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion", "runc", "crun", "lxc-start", "lxc-info", "lxc-attach"} {
		h.tools[tool] = "/usr/bin/" + tool
	}
	h.answers["/usr/bin/pveversion -v"] = pveversion91
	h.answers["/usr/bin/pct list"] = ""
	h.answers["/usr/bin/pveam available"] = "system          debian-12-standard_12.7-1_amd64.tar.zst\n"
	h.answers["/usr/bin/pvesh get /cluster/nextid"] = "100\n"
	h.answers["/usr/bin/runc --version"] = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1\n"
	h.answers["/usr/bin/crun --version"] = "crun version 1.8.1\ncommit: abc\n"

	c := config.Default()
	c.Path = filepath.Join(dir, "config.json")
	c.Proxmox.EtcPve = filepath.Join(dir, "etc/pve")
	c.Proxmox.Node = "pve1"
	c.Proxmox.Storage = "local-lvm"
	c.Runtime.Routing = []config.RoutingRule{{Pattern: "^cilium-.*$", Runtime: "crun"}}
	h.cfg = c
	return h
}

// What `pveversion -v` prints on PVE 9.1 and 8.4 (the lines nexcage reads).
const (
	pveversion91 = "proxmox-ve: 9.1.0 (running kernel: 6.17.2-1-pve)\npve-manager: 9.1.4 (running version: 9.1.4/5ac30304265fbd8e)\npve-container: 6.1.10\nlxc-pve: 6.0.5-3\n"
	pveversion84 = "proxmox-ve: 8.4.0 (running kernel: 6.8.12-9-pve)\npve-manager: 8.4.1 (running version: 8.4.1/2a5fa54a8503f96d)\npve-container: 5.3.5\nlxc-pve: 6.0.0-1\n"
)

func (h *fakeHost) write(t *testing.T, rel, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, rel), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *fakeHost) env() Env {
	return Env{
		Config: h.cfg, ConfigErr: h.cfgErr, ConfigWarnings: h.warnings,
		Root:     filepath.Join(h.dir, "state"),
		SampleID: "cilium-agent",
		LookPath: func(name string) (string, error) {
			if p, ok := h.tools[name]; ok {
				return p, nil
			}
			return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
		},
		Command: func(_ context.Context, path string, args ...string) ([]byte, []byte, error) {
			key := strings.Join(append([]string{path}, args...), " ")
			h.ran = append(h.ran, key)
			if out, ok := h.answers[key]; ok {
				return []byte(out), nil, nil
			}
			return nil, []byte(h.stderr[key]), errors.New("exit status 255")
		},
		SysRoot:    filepath.Join(h.dir, "sys"),
		CgroupRoot: filepath.Join(h.dir, "cgroup"),
		FSType: func(p string) (int64, error) {
			if t, ok := h.fstypes[p]; ok {
				return t, nil
			}
			return 0, os.ErrNotExist
		},
	}
}

func (h *fakeHost) run(t *testing.T) *Report {
	t.Helper()
	return Run(context.Background(), h.env())
}

func TestAllPass(t *testing.T) {
	h := newFakeHost(t)
	r := h.run(t)
	for _, c := range r.Checks {
		if c.Status != Pass {
			t.Errorf("%s: %s %s (%s)", c.Name, c.Status, c.Detail, c.Advice)
		}
	}
	if r.ExitCode() != ExitPass {
		t.Errorf("exit %d, want 0", r.ExitCode())
	}
	if got := len(r.Checks); got != len(checks) {
		t.Errorf("%d checks, want %d", got, len(checks))
	}
	want := map[string]string{
		"config":           "config.json parsed",
		"pct":              "answers `pct list`",
		"pveam":            "answers `pveam available`",
		"pvesh":            "answers `pvesh get /cluster/nextid`",
		"pve-version":      "PVE 9.1 (pve-container 6.1.10): process user/cwd/env via the init helper (the node keeps lxc.init.* and lxc.environment.runtime too); network through host-managed=1; entrypoint/env options available",
		"etc-pve":          `names node "pve1"`,
		"storage":          `proxmox.storage "local-lvm" allows rootdir`,
		"template-storage": `proxmox.template_storage "local" allows vztmpl`,
		"bridge":           `"vmbr0" exists`,
		"cgroup":           "hybrid (v1 controllers; cgroup2 at unified/ with hugetlb)",
		"runc":             "runc version 1.1.5+ds1 (/usr/bin/runc)",
		"crun":             "applies the crun workaround",
		"lxc-tools":        "/usr/bin/lxc-start, /usr/bin/lxc-info, /usr/bin/lxc-attach",
		"routing":          `1 rules compile; "cilium-agent" -> crun (rule 0 "^cilium-.*$")`,
		"state-root":       "is a writable directory",
	}
	for name, sub := range want {
		c, ok := r.Find(name)
		if !ok || !strings.Contains(c.Detail, sub) {
			t.Errorf("%s: detail %q, want it to contain %q", name, c.Detail, sub)
		}
	}
	// The state-root probe leaves nothing behind.
	if ents, _ := os.ReadDir(filepath.Join(h.dir, "state")); len(ents) != 0 {
		t.Errorf("state root not empty after the check: %v", ents)
	}
}

// TestEachFailureNamed breaks one piece per case and expects exactly the
// named checks to fail (or warn), each with advice.
func TestEachFailureNamed(t *testing.T) {
	cases := []struct {
		name   string
		breaks func(t *testing.T, h *fakeHost)
		fail   []string
		warn   []string
		detail string
	}{
		{"config error", func(t *testing.T, h *fakeHost) {
			h.cfgErr = errs.New(errs.KindInvalidConfig, "config /x.json: line 3, column 5: invalid character")
			h.cfg.Path = ""
			h.cfg.Runtime.Routing = nil
		}, []string{"config", "routing"}, nil, "line 3, column 5"},
		{"config warnings", func(t *testing.T, h *fakeHost) {
			h.warnings = []string{`config /x.json: unknown key "proxmox.nod"`}
		}, nil, []string{"config"}, `unknown key "proxmox.nod"`},
		{"no storage.cfg", func(t *testing.T, h *fakeHost) {
			os.Remove(filepath.Join(h.dir, "etc/pve/storage.cfg"))
		}, []string{"storage", "template-storage"}, nil, "storage.cfg"},
		{"pct missing", func(t *testing.T, h *fakeHost) { delete(h.tools, "pct") }, []string{"pct"}, nil, `pct not found (proxmox.pct_path "pct")`},
		{"pveam fails", func(t *testing.T, h *fakeHost) {
			delete(h.answers, "/usr/bin/pveam available")
			h.stderr["/usr/bin/pveam available"] = "some noise\nplease run as root\n"
		}, []string{"pveam"}, nil, "failed: please run as root"},
		{"pvesh missing", func(t *testing.T, h *fakeHost) { delete(h.tools, "pvesh") }, []string{"pvesh"}, nil, "pvesh not found"},
		{"pveversion missing", func(t *testing.T, h *fakeHost) { delete(h.tools, "pveversion") }, nil, []string{"pve-version"},
			`pveversion not found (proxmox.pveversion_path "pveversion"): nexcage treats the node as the oldest supported (PVE 8.4)`},
		{"pveversion fails", func(t *testing.T, h *fakeHost) {
			delete(h.answers, "/usr/bin/pveversion -v")
			h.stderr["/usr/bin/pveversion -v"] = "permission denied\n"
		}, nil, []string{"pve-version"}, "failed: permission denied; nexcage treats the node as the oldest supported"},
		{"pveversion without pve-container", func(t *testing.T, h *fakeHost) { h.answers["/usr/bin/pveversion -v"] = "pve-manager: 9.1.4\n" },
			nil, []string{"pve-version"}, "no pve-container version"},
		{"wrong node", func(t *testing.T, h *fakeHost) { h.cfg.Proxmox.Node = "pve9" }, []string{"etc-pve"}, nil, "has no nodes/pve9 (nodes: pve1)"},
		{"etc_pve missing", func(t *testing.T, h *fakeHost) {
			h.cfg.Proxmox.EtcPve = filepath.Join(h.dir, "nope")
		}, []string{"etc-pve", "storage", "template-storage"}, nil, "not readable"},
		{"no rootdir storage", func(t *testing.T, h *fakeHost) {
			h.write(t, "etc/pve/storage.cfg", "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl\n")
			h.cfg.Proxmox.Storage = ""
		}, []string{"storage"}, nil, "none allows content rootdir"},
		{"configured storage missing", func(t *testing.T, h *fakeHost) { h.cfg.Proxmox.Storage = "tank" },
			[]string{"storage"}, nil, `"tank" is not in storage.cfg`},
		{"template storage without vztmpl", func(t *testing.T, h *fakeHost) { h.cfg.Proxmox.TemplateStorage = "local-lvm" },
			[]string{"template-storage"}, nil, "does not allow content vztmpl"},
		{"storage disabled", func(t *testing.T, h *fakeHost) {
			h.write(t, "etc/pve/storage.cfg", "dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl,rootdir\n\tdisable\n")
			h.cfg.Proxmox.Storage = ""
		}, []string{"storage", "template-storage"}, nil, "none allows content"},
		{"storage on other nodes", func(t *testing.T, h *fakeHost) {
			h.write(t, "etc/pve/storage.cfg", "dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl\n\n"+
				"lvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir\n\tnodes pve2,pve3\n")
		}, []string{"storage"}, nil, `is not available on node "pve1"`},
		{"bridge missing", func(t *testing.T, h *fakeHost) { h.cfg.Network.Bridge = "vmbr7" }, []string{"bridge"}, nil, `"vmbr7" does not exist`},
		{"not a bridge", func(t *testing.T, h *fakeHost) { h.cfg.Network.Bridge = "eth0" }, []string{"bridge"}, nil, "not a bridge"},
		{"crun missing but routed", func(t *testing.T, h *fakeHost) { delete(h.tools, "crun") }, []string{"crun"}, nil, "crun not found"},
		{"runc missing, unused", func(t *testing.T, h *fakeHost) { delete(h.tools, "runc") }, nil, []string{"runc"}, "no route leads to runc"},
		{"crun workaround disabled", func(t *testing.T, h *fakeHost) { h.cfg.Runtimes.Crun.CgroupWorkaround = "never" },
			[]string{"crun"}, nil, `cgroup_workaround is "never"`},
		{"cgroup v1", func(t *testing.T, h *fakeHost) {
			delete(h.fstypes, filepath.Join(h.dir, "cgroup/unified"))
		}, nil, []string{"cgroup"}, "v1"},
		{"no cgroups", func(t *testing.T, h *fakeHost) { h.fstypes = nil }, []string{"cgroup"}, nil, "cannot tell the cgroup layout"},
		{"lxc tools missing", func(t *testing.T, h *fakeHost) { delete(h.tools, "lxc-attach") }, []string{"lxc-tools"}, nil, "missing: lxc-attach"},
		{"sample routes to a VM", func(t *testing.T, h *fakeHost) {
			h.cfg.Runtime.Routing = []config.RoutingRule{{Pattern: "cilium-.*", Runtime: "vm"}}
		}, []string{"routing"}, nil, "not supported"},
		{"state root not a dir", func(t *testing.T, h *fakeHost) {
			os.Remove(filepath.Join(h.dir, "state"))
			h.write(t, "state", "x")
		}, []string{"state-root"}, nil, "not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			tc.breaks(t, h)
			r := h.run(t)
			want := map[string]Status{}
			for _, n := range tc.fail {
				want[n] = Fail
			}
			for _, n := range tc.warn {
				want[n] = Warn
			}
			matched := tc.detail == ""
			for _, c := range r.Checks {
				exp, ok := want[c.Name]
				if !ok {
					exp = Pass
				}
				if c.Status != exp {
					t.Errorf("%s: %s (%s), want %s", c.Name, c.Status, c.Detail, exp)
				}
				if c.Status != Pass && c.Advice == "" {
					t.Errorf("%s: %s without advice", c.Name, c.Status)
				}
				if want[c.Name] != "" && strings.Contains(c.Detail, tc.detail) {
					matched = true
				}
			}
			if !matched {
				t.Errorf("no failing check mentions %q:\n%s", tc.detail, text(t, r))
			}
			wantCode := ExitPass
			if len(tc.warn) > 0 {
				wantCode = ExitWarn
			}
			if len(tc.fail) > 0 {
				wantCode = ExitFail
			}
			if r.ExitCode() != wantCode {
				t.Errorf("exit %d, want %d", r.ExitCode(), wantCode)
			}
		})
	}
}

// TestBareHost is a host without Proxmox: every Proxmox check fails with
// advice, runc and crun pass.
func TestBareHost(t *testing.T) {
	h := newFakeHost(t)
	for _, tool := range []string{"pct", "pveam", "pvesh"} {
		delete(h.tools, tool)
	}
	h.cfg = config.Default()
	h.cfg.Proxmox.EtcPve = filepath.Join(h.dir, "no/etc/pve")
	h.cfg.Network.Bridge = "vmbr0x"
	r := h.run(t)
	for _, n := range []string{"pct", "pveam", "pvesh", "etc-pve", "storage", "template-storage", "bridge"} {
		c, _ := r.Find(n)
		if c.Status != Fail || c.Advice == "" {
			t.Errorf("%s: %s %q advice %q; want FAIL with advice", n, c.Status, c.Detail, c.Advice)
		}
	}
	for _, n := range []string{"runc", "crun", "cgroup", "lxc-tools", "routing", "state-root", "config"} {
		if c, _ := r.Find(n); c.Status != Pass {
			t.Errorf("%s: %s %q", n, c.Status, c.Detail)
		}
	}
	if c, _ := r.Find("runc"); !strings.Contains(c.Detail, "runc version 1.1.5") {
		t.Errorf("runc detail %q lacks the version", c.Detail)
	}
	if r.ExitCode() != ExitFail {
		t.Errorf("exit %d, want 1", r.ExitCode())
	}
}

// TestProxmoxUnusedOnlyWarns: when no route leads to Proxmox, its missing
// tools are warnings.
func TestProxmoxUnusedOnlyWarns(t *testing.T) {
	h := newFakeHost(t)
	delete(h.tools, "pct")
	h.cfg.ContainerConfig.DefaultContainerType = "runc"
	r := h.run(t)
	c, _ := r.Find("pct")
	if c.Status != Warn || !strings.Contains(c.Detail, "no route leads to proxmox-lxc") {
		t.Errorf("pct: %s %q", c.Status, c.Detail)
	}
	if r.ExitCode() != ExitWarn {
		t.Errorf("exit %d, want 2", r.ExitCode())
	}
}

func TestStateRootMissingIsCreatable(t *testing.T) {
	h := newFakeHost(t)
	e := h.env()
	e.Root = filepath.Join(h.dir, "state/a/b")
	r := Run(context.Background(), e)
	c, _ := r.Find("state-root")
	if c.Status != Pass || !strings.Contains(c.Detail, "will be created") {
		t.Errorf("state-root: %s %q", c.Status, c.Detail)
	}
	if _, err := os.Stat(e.Root); err == nil {
		t.Error("the check created the state root")
	}
}

func TestDetectCgroups(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "unified"), 0o755)
	os.WriteFile(filepath.Join(dir, "unified/cgroup.controllers"), []byte("\n"), 0o644)
	fs := func(m map[string]int64) func(string) (int64, error) {
		return func(p string) (int64, error) {
			if t, ok := m[p[len(dir):]]; ok {
				return t, nil
			}
			return 0, os.ErrNotExist
		}
	}
	cases := []struct {
		types map[string]int64
		mode  string
		crun  bool
	}{
		{map[string]int64{"": unix.CGROUP2_SUPER_MAGIC}, CgroupV2, false},
		{map[string]int64{"": unix.TMPFS_MAGIC}, CgroupV1, false},
		{map[string]int64{"": unix.TMPFS_MAGIC, "/unified": unix.CGROUP2_SUPER_MAGIC}, CgroupHybrid, false},
	}
	for _, tc := range cases {
		l, err := DetectCgroups(dir, fs(tc.types))
		if err != nil || l.Mode != tc.mode || l.CrunNeedsWorkaround != tc.crun {
			t.Errorf("%v: %+v %v, want %s crun=%v", tc.types, l, err, tc.mode, tc.crun)
		}
	}
	// The real host: whatever it is, it must be recognised.
	if l, err := DetectCgroups("/sys/fs/cgroup", statfsType); err != nil {
		t.Errorf("real host: %v", err)
	} else {
		t.Logf("this host: %s", l)
	}
}

func TestOutputFormats(t *testing.T) {
	h := newFakeHost(t)
	delete(h.tools, "pct")
	r := h.run(t)
	out := text(t, r)
	for _, want := range []string{"FAIL  pct", "-> run nexcage on a Proxmox VE host", "PASS  runc", "FAIL: 14 passed, 0 warnings, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Status string `json:"status"`
		Config string `json:"config"`
		Checks []struct {
			Name, Status, Detail, Advice string
		} `json:"checks"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("json: %v\n%s", err, buf.String())
	}
	if back.Status != "FAIL" || back.Config != h.cfg.Path || len(back.Checks) != len(checks) || back.Checks[2].Name != "pct" ||
		back.Checks[2].Status != "FAIL" || back.Checks[2].Advice == "" {
		t.Errorf("json output: %+v", back)
	}
}

func text(t *testing.T, r *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRealCommandTimeout runs a real command through the default Command
// with a short timeout.
func TestRealCommandTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50_000_000) // 50ms
	defer cancel()
	_, _, err := runCommand(ctx, "/bin/sleep", "30")
	if err == nil || !strings.Contains(err.Error(), "no answer within the timeout") {
		t.Errorf("err = %v", err)
	}
	out, _, err := runCommand(context.Background(), "/bin/echo", "hi")
	if err != nil || string(out) != "hi\n" {
		t.Errorf("echo: %q %v", out, err)
	}
}

// TestPveVersionSummary: health shows the node's version and what follows
// from it, per version (proxmox-pct.md §9).
func TestPveVersionSummary(t *testing.T) {
	for out, want := range map[string]string{
		pveversion84: "PVE 8.4 (pve-container 5.3.5): process user/cwd/env via the init helper (the node drops lxc.environment.hooks, lxc.environment.runtime, lxc.init.cwd, lxc.init.gid, lxc.init.groups, lxc.init.uid); network via the init helper; no entrypoint/env options, no host-managed",
		"pve-manager: 9.0.3\npve-container: 6.0.9\n":  "PVE 9.0 (pve-container 6.0.9): process user/cwd/env via the init helper (the node drops lxc.environment.hooks, lxc.environment.runtime, lxc.init.gid, lxc.init.groups, lxc.init.uid); network via the init helper; no entrypoint/env options, no host-managed",
		"pve-manager: 9.1.1\npve-container: 6.0.18\n": "PVE 9.1 (pve-container 6.0.18): process user/cwd/env via the init helper (the node drops lxc.init.gid, lxc.init.groups, lxc.init.uid); network through host-managed=1; entrypoint/env options available",
	} {
		h := newFakeHost(t)
		h.answers["/usr/bin/pveversion -v"] = out
		r := h.run(t)
		c, _ := r.Find("pve-version")
		if c.Status != Pass || c.Detail != want {
			t.Errorf("%s %q\nwant %q", c.Status, c.Detail, want)
		}
	}
}

// TestUntrustedProgramReported: with the real lookup (trust.LookPath), a
// runtimes.runc.path another user could have planted is reported as not
// trusted, and not run.
func TestUntrustedProgramReported(t *testing.T) {
	evil, open, _ := testutil.PlantedProgram(t, "runc", "echo runc version 9\n")
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Runtimes.Runc.Path = evil
	cfg.ContainerConfig.DefaultContainerType = "runc"
	e := &Env{Config: cfg, Root: filepath.Join(dir, "state")}
	var ran []string
	e.Command = func(_ context.Context, path string, args ...string) ([]byte, []byte, error) {
		ran = append(ran, path)
		return nil, nil, nil
	}
	e.withDefaults()
	r := runtimeCheck(config.BackendRunc)(context.Background(), e)
	if r.Status != Fail || !strings.Contains(r.Detail, `runtimes.runc.path "`+evil+`" is not trusted`) || !strings.Contains(r.Detail, "chmod go-w "+open) {
		t.Errorf("result %+v", r)
	}
	for _, p := range ran {
		if p == evil {
			t.Errorf("ran %s", p)
		}
	}
}
