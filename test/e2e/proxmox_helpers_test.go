package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// pveEnv is a pvesim node plus a nexcage configured to drive it through
// the Proxmox LXC backend.
type pveEnv struct {
	t      *testing.T
	root   string // PVESIM_ROOT
	log    string // PVESIM_LOG
	pct    string // pvesim installed as pct
	env    []string
	n      *Nexcage
	config string
}

// newPveEnv initialises a pvesim node (with its template catalogue when
// withTemplates) and a nexcage whose default backend is proxmox-lxc.
// extraProxmox is added to the proxmox section (e.g. `"timeout": 1`).
func newPveEnv(t *testing.T, withTemplates bool, extraProxmox string) *pveEnv {
	t.Helper()
	return newPveEnvWith(t, withTemplates, extraProxmox)
}

// newPveEnvWith is newPveEnv with extra environment for pvesim and the
// nexcage that drives it (e.g. PVESIM_PVE_VERSION=8.4).
func newPveEnvWith(t *testing.T, withTemplates bool, extraProxmox string, extraEnv ...string) *pveEnv {
	t.Helper()
	sim := PvesimBin(t)
	// An unprivileged container's root (an unmapped host uid) must be able
	// to traverse the test's temp root to reach its rootfs and bind-mount
	// sources, as on a real host.
	bin := testutil.ContainerTempDir(t)
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
		if err := os.Symlink(sim, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	e := &pveEnv{t: t, root: filepath.Join(t.TempDir(), "pve"), pct: filepath.Join(bin, "pct")}
	e.log = filepath.Join(e.root, "pvesim.log")
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		t.Fatal(err)
	}
	e.env = append([]string{"PVESIM_ROOT=" + e.root, "PVESIM_LOG=" + e.log, "PVESIM_LOCK_TIMEOUT_MS=500"}, extraEnv...)
	args := []string{"init"}
	if withTemplates {
		args = append(args, "--with-templates")
	}
	cmd := exec.Command(sim, args...)
	cmd.Env = append(os.Environ(), e.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pvesim init: %v\n%s", err, out)
	}
	if extraProxmox != "" {
		extraProxmox = ", " + extraProxmox
	}
	e.config = WriteConfig(t, `{
  "proxmox": {
    "pct_path": "`+e.pct+`",
    "pveam_path": "`+filepath.Join(bin, "pveam")+`",
    "pvesh_path": "`+filepath.Join(bin, "pvesh")+`",
    "pveversion_path": "`+filepath.Join(bin, "pveversion")+`",
    "etc_pve": "`+filepath.Join(e.root, "etc/pve")+`",
    "lxc_path": "`+filepath.Join(e.root, "var/lib/lxc")+`",
    "lock_dir": "`+filepath.Join(e.root, "run/lock/lxc")+`",
    "node": "pve",
    "timeout": 120`+extraProxmox+`
  },
  "storage": {"image_path": "`+filepath.Join(e.root, "nexcage-images")+`"},
  "runtime": {"routing": [{"pattern": "^runc-.*$", "runtime": "runc"}, {"pattern": ".*", "runtime": "proxmox-lxc"}]}
}`)
	e.n = NewNexcage(t, e.config)
	e.n.Env = e.env
	// Registered first, so it runs last: after every container cleanup
	// (a CRI node's too: were the node checked first, pct would destroy a
	// failed test's CT under containerd and its stopp would hang), nothing
	// may be left on the simulated node. Tests must not register it again.
	t.Cleanup(e.checkClean)
	return e
}

// confDir is /etc/pve/nodes/pve/lxc of the simulated node.
func (e *pveEnv) confDir() string { return filepath.Join(e.root, "etc/pve/nodes/pve/lxc") }

func (e *pveEnv) confPath(vmid int) string {
	return filepath.Join(e.confDir(), strconv.Itoa(vmid)+".conf")
}

func (e *pveEnv) cacheDir() string { return filepath.Join(e.root, "var/lib/vz/template/cache") }

// pctRun runs the simulated pct directly (for checks, not counted by tests
// that count calls before/after their own steps).
func (e *pveEnv) pctRun(args ...string) (string, error) {
	cmd := exec.Command(e.pct, args...)
	cmd.Env = append(os.Environ(), e.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pctCalls counts the pct invocations in PVESIM_LOG, per verb.
func (e *pveEnv) pctCalls() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	f, err := os.Open(e.log)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Tool string   `json:"tool"`
			Argv []string `json:"argv"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			e.t.Fatalf("PVESIM_LOG line %q: %v", sc.Text(), err)
		}
		if l.Tool == "pct" && len(l.Argv) > 0 {
			out[l.Argv[0]]++
			out["total"]++
		}
	}
	return out
}

// countCalls runs f and returns the pct calls it made, per verb.
func (e *pveEnv) countCalls(f func()) map[string]int {
	before := e.pctCalls()
	f()
	after := e.pctCalls()
	d := map[string]int{}
	for k, v := range after {
		if v-before[k] != 0 {
			d[k] = v - before[k]
		}
	}
	return d
}

func wantCalls(t *testing.T, step string, got map[string]int, want map[string]int) {
	t.Helper()
	total := 0
	for k, v := range want {
		total += v
		if got[k] != v {
			t.Errorf("%s: %d pct %s calls, want %d (all: %v)", step, got[k], k, v, got)
		}
	}
	if got["total"] != total {
		t.Errorf("%s: %d pct calls in all, want %d (%v)", step, got["total"], total, got)
	}
}

// vmidOf reads the container's VMID from nexcage's state file.
func (e *pveEnv) vmidOf(id string) int {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.n.Root(), id, "state.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var s struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		e.t.Fatal(err)
	}
	v, err := strconv.Atoi(s.Data["vmid"])
	if err != nil {
		e.t.Fatalf("state of %s has no vmid: %s", id, data)
	}
	return v
}

// vmids lists the VMIDs in the cluster's .vmlist.
func (e *pveEnv) vmids() []string {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.root, "etc/pve/.vmlist"))
	if err != nil {
		e.t.Fatal(err)
	}
	var l struct {
		IDs map[string]any `json:"ids"`
	}
	if err := json.Unmarshal(data, &l); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for k := range l.IDs {
		out = append(out, k)
	}
	return out
}

// packedTemplates lists the templates nexcage packed into the cache.
func (e *pveEnv) packedTemplates() []string {
	ents, _ := os.ReadDir(e.cacheDir())
	var out []string
	for _, en := range ents {
		if strings.HasPrefix(en.Name(), "nexcage-") {
			out = append(out, en.Name())
		}
	}
	return out
}

// assertNothingLeft checks that no Proxmox container, VMID, packed
// template or nexcage state exists.
func (e *pveEnv) assertNothingLeft(step string) {
	e.t.Helper()
	if ents, _ := os.ReadDir(e.confDir()); len(ents) > 0 {
		e.t.Errorf("%s: container configs left: %v", step, ents)
	}
	if ids := e.vmids(); len(ids) > 0 {
		e.t.Errorf("%s: VMIDs left in .vmlist: %v", step, ids)
	}
	if p := e.packedTemplates(); len(p) > 0 {
		e.t.Errorf("%s: packed templates left: %v", step, p)
	}
	if ents, _ := os.ReadDir(e.n.Root()); len(ents) > 0 {
		for _, en := range ents {
			if !strings.HasPrefix(en.Name(), "@") {
				e.t.Errorf("%s: nexcage state left: %s", step, en.Name())
			}
		}
	}
}

// checkClean destroys anything a failed test left on the node (so no LXC
// container outlives the test) and reports it.
func (e *pveEnv) checkClean() {
	ents, _ := os.ReadDir(e.confDir())
	for _, en := range ents {
		vmid := strings.TrimSuffix(en.Name(), ".conf")
		e.t.Errorf("container %s left on the simulated node; destroying it", vmid)
		_, _ = e.pctRun("stop", vmid)
		if out, err := e.pctRun("destroy", vmid, "--purge", "1"); err != nil {
			e.t.Errorf("pct destroy %s: %v %s", vmid, err, out)
		}
	}
}

// waitStatus polls `nexcage state` until the container has status want.
func waitStatus(t *testing.T, n *Nexcage, id, want string) ociState {
	t.Helper()
	var s ociState
	Eventually(t, 30*time.Second, id+" "+want, func() bool {
		s = stateOf(t, n, id)
		return s.Status == want
	})
	return s
}
