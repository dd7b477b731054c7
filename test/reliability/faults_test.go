package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// pveWorld is a nexcage whose pct is pctwrap in front of a pvesim node,
// so that tests can hold `pct create` at a chosen step.
type pveWorld struct {
	t       *testing.T
	node    *simNode
	nexcage string
	root    string // --root
	config  string
	wrapDir string // PCTWRAP_DIR
	env     []string
	base    []string // node files before the test (pvesim's lock files aside)
}

func newPveWorld(t *testing.T, proxmoxExtra map[string]any) *pveWorld {
	t.Helper()
	w := &pveWorld{t: t, node: newSimNode(t), nexcage: testutil.NexcageBin(t), root: filepath.Join(t.TempDir(), "root"), wrapDir: t.TempDir()}
	wrap := testutil.Binary(t, "", "github.com/nexcage/nexcage/test/reliability/pctwrap", "pctwrap")
	cfg := w.node.proxmoxConfig()
	px := cfg["proxmox"].(map[string]any)
	px["pct_path"] = wrap
	for k, v := range proxmoxExtra {
		px[k] = v
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	w.config = filepath.Join(t.TempDir(), "nexcage.json")
	writeFile(t, w.config, string(data))
	w.env = append(append([]string{}, w.node.env...), "PCTWRAP_REAL="+testutil.PvesimBin(t), "PCTWRAP_DIR="+w.wrapDir)
	w.base = w.nodeFiles()
	return w
}

func (w *pveWorld) args(a ...string) []string {
	return append([]string{"--root", w.root, "--config", w.config}, a...)
}

func (w *pveWorld) run(a ...string) testutil.Result {
	w.t.Helper()
	return testutil.Run(w.t, w.nexcage, w.env, w.args(a...)...)
}

func (w *pveWorld) must(a ...string) testutil.Result {
	w.t.Helper()
	r := w.run(a...)
	if r.Code != 0 {
		w.t.Fatalf("nexcage %s: %s", strings.Join(a, " "), r)
	}
	return r
}

// nodeFiles lists the node's files, leaving out what is kept on purpose
// and does not grow with the number of containers: pvesim's flock files
// container stderr logs (Proxmox too leaves
// /run/lock/lxc/pve-config-<vmid>.lock and /run/pve/ct-<vmid>.stderr) and
// the one lock of nexcage's template cache.
func (w *pveWorld) nodeFiles() []string {
	var out []string
	for _, f := range files(w.t, w.node.root) {
		if strings.HasPrefix(f, "run/lock/") || strings.HasPrefix(f, "run/pve/") || f == "etc/pve/.pvesim-cluster.lock" ||
			strings.HasSuffix(f, "template/cache/.nexcage/lock") ||
			// A node's Proxmox VE version, recorded by pvesim the first
			// time a node of the cluster is used, as a real node has one.
			strings.HasPrefix(f, "var/lib/pvesim/nodes/") && strings.HasSuffix(f, "/pve-version") {
			continue
		}
		out = append(out, f)
	}
	return out
}

// assertClean checks the environment is as before the test: no new
// file on the node (but the node files in allowed), no VMID, no state or
// lock file under --root.
func (w *pveWorld) assertClean(step string, allowed ...string) {
	w.t.Helper()
	var left []string
	for _, f := range added(w.base, w.nodeFiles()) {
		if !slices.Contains(allowed, f) {
			left = append(left, f)
		}
	}
	if len(left) > 0 {
		w.t.Errorf("%s: left on the node: %q", step, head(left))
	}
	if ids := w.node.vmids(w.t); len(ids) > 0 {
		w.t.Errorf("%s: VMIDs left in .vmlist: %v", step, ids)
	}
	if left := stateFiles(w.t, w.root); len(left) > 0 {
		w.t.Errorf("%s: left under --root: %q", step, left)
	}
}

func head(s []string) []string {
	if len(s) > 8 {
		return append(s[:8:8], fmt.Sprintf("... %d more", len(s)-8))
	}
	return s
}

// listIDs returns the ids `nexcage list` shows.
func (w *pveWorld) listIDs() []string {
	w.t.Helper()
	return testutil.ListIDs(w.t, w.must("list", "--format", "json").Stdout)
}

// waitFile polls for p until the deadline and returns its content.
func waitFile(t *testing.T, p string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if data, err := os.ReadFile(p); err == nil && len(data) > 0 {
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCreateUntil starts `nexcage create` of id (in its own process
// group, with env added) and polls reached until it reports the pid of
// the process the test stopped; it fails the test when create ends first
// or nothing is reached within timeout.
func (w *pveWorld) startCreateUntil(id, bundle, env, what string, timeout time.Duration, reached func() (int, bool)) (*exec.Cmd, chan error, string, int) {
	t := w.t
	t.Helper()
	cmd := exec.Command(w.nexcage, w.args("create", "--bundle", bundle, id)...)
	cmd.Env = append(append(os.Environ(), w.env...), env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(timeout)
	for {
		select {
		case err := <-exited:
			data, _ := os.ReadFile(out)
			t.Fatalf("nexcage create ended before %s (%v): %s", what, err, data)
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(10 * time.Millisecond):
			if pid, ok := reached(); ok {
				return cmd, exited, out, pid
			}
		}
	}
}

// mountsUnder lists the mounts of this host below dir.

// TestPctHangTimeout: a pct that never returns (and whose child never
// returns either) is killed with its whole process group after
// proxmox.timeout; nexcage reports a timeout and leaves nothing behind.
func TestPctHangTimeout(t *testing.T) {
	w := newPveWorld(t, map[string]any{"timeout": 1})
	w.env = append(w.env, "PCTWRAP_MODE=hang")
	b := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	r := w.run("create", "--bundle", b, "hang")
	if r.Code != 12 || !contains(r.Stderr, "timed out") || !contains(r.Stderr, "proxmox.timeout") {
		t.Errorf("want exit 12 naming the timeout and proxmox.timeout: %s", r)
	}
	for _, f := range []string{"held", "sleeper"} {
		pid, err := strconv.Atoi(waitFile(t, filepath.Join(w.wrapDir, f), 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WaitGone(t, pid, 10*time.Second)
	}
	w.assertClean("after the timeout")
}

// TestCorruptStateFile: a damaged state file gives a clear error naming
// the file with a repair hint (never a panic), `list` keeps working, and
// `delete --force` removes it.
func TestCorruptStateFile(t *testing.T) {
	bin := testutil.NexcageBin(t)
	root := filepath.Join(t.TempDir(), "root")
	cfg := filepath.Join(t.TempDir(), "nexcage.json")
	writeFile(t, cfg, `{"container_config": {"default_container_type": "runc"}}`)
	for name, body := range map[string]string{"garbage": "{\"id\": \"x\", \"sta", "empty": "", "binary": "\x00\xff\xfe", "wrong-type": `{"id": 5, "status": []}`} {
		t.Run(name, func(t *testing.T) {
			id := "corrupt-" + name
			dir := filepath.Join(root, id)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			args := func(a ...string) []string { return append([]string{"--root", root, "--config", cfg}, a...) }
			r := testutil.Run(t, bin, nil, args("state", id)...)
			if r.Code != 10 || !contains(r.Stderr, filepath.Join(dir, "state.json")) || !contains(r.Stderr, "delete --force") {
				t.Errorf("state: want exit 10 naming the file with a delete --force hint: %s", r)
			}
			if contains(r.Stderr, "panic") {
				t.Errorf("panic: %s", r.Stderr)
			}
			if r := testutil.Run(t, bin, nil, args("list")...); r.Code != 0 || !strings.Contains(r.Stdout, id) {
				t.Errorf("list with a damaged entry: %s", r)
			}
			if r := testutil.Run(t, bin, nil, args("delete", "--force", id)...); r.Code != 0 {
				t.Errorf("delete --force: %s", r)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("state dir still there after delete --force: %v", err)
			}
		})
	}
}

// TestStopFault: a pct shutdown that fails ("container did not stop") is
// reported as a timeout naming pct's words; the container keeps running,
// and delete --force still removes everything.
func TestStopFault(t *testing.T) {
	w := newPveWorld(t, nil)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	w.must("create", "--bundle", b, "stopfail")
	w.must("start", "stopfail")
	env := w.env
	w.env = append(append([]string{}, env...), "PVESIM_FAIL=shutdown:container did not stop")
	r := w.run("stop", "stopfail")
	w.env = env
	if r.Code != 12 || !contains(r.Stderr, "container did not stop") {
		t.Errorf("stop with a failing shutdown: want exit 12 with pct's words: %s", r)
	}
	if r := w.must("state", "stopfail"); !strings.Contains(r.Stdout, `"running"`) {
		t.Errorf("after the failed stop: %s", r.Stdout)
	}
	w.must("delete", "--force", "stopfail")
	w.assertClean("after delete --force")
}
