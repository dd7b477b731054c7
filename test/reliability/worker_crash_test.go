package reliability

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// The create worker's pause points of pvesim (PVESIM_PAUSE, pvesim's task
// workers: a real node's pct create runs its work in a worker in a new
// session). At each the worker holds Proxmox's config lock.
var workerPoints = []string{"create-after-lock", "create-after-disks", "create-after-config"}

// startPaused starts `nexcage create` with pvesim's create worker paused
// at point and returns nexcage, its exit channel, its output file, the
// worker's pid and the file that releases the worker.
func (w *pveWorld) startPaused(id, bundle, point string) (*exec.Cmd, chan error, string, int, string) {
	release := filepath.Join(w.t.TempDir(), "release")
	what := "pvesim's create worker paused at " + point + " (PVESIM_PAUSE needs pvesim's task workers)"
	cmd, exited, out, pid := w.startCreateUntil(id, bundle, "PVESIM_PAUSE="+point+":"+release, what, 90*time.Second, func() (int, bool) {
		data, err := os.ReadFile(release + ".reached")
		if err != nil || !strings.HasSuffix(string(data), "\n") {
			return 0, false
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		return pid, true
	})
	return cmd, exited, out, pid, release
}

// configWith writes a copy of w's config with proxmox keys changed.
func (w *pveWorld) configWith(proxmox map[string]any) string {
	w.t.Helper()
	data, err := os.ReadFile(w.config)
	if err != nil {
		w.t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		w.t.Fatal(err)
	}
	px := cfg["proxmox"].(map[string]any)
	for k, v := range proxmox {
		px[k] = v
	}
	data, _ = json.Marshal(cfg)
	p := filepath.Join(w.t.TempDir(), "nexcage.json")
	writeFile(w.t, p, string(data))
	return p
}

// parentOf returns the parent pid of pid.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestCrashInCreateWorker: nexcage and pct are SIGKILLed while pct
// create's worker (own session, holding the config lock) is at each of
// its steps; the worker goes on without anyone reading its output and
// dies without rolling back, as on a real node, leaving a `lock: create`
// config or a full one, and disks. `delete --force` waits for the config
// lock, clears the create lock, destroys with --purge 1
// --destroy-unreferenced-disks 1: no config, volume, VMID, mount, lock or
// helper directory is left.
func TestCrashInCreateWorker(t *testing.T) {
	for _, point := range workerPoints {
		t.Run(point, func(t *testing.T) {
			w := newPveWorld(t, nil)
			b := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
			id := "wcrash-" + point
			cmd, exited, _, worker, release := w.startPaused(id, b, point)
			pct := parentOf(t, worker)
			if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-exited
			if err := syscall.Kill(pct, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			testutil.WaitGone(t, pct, 30*time.Second)
			if !testutil.Alive(worker) {
				t.Fatalf("the create worker died with pct; want it to outlive it (own session)")
			}
			// While the worker holds the config lock, delete --force
			// waits for it, and after its bound (proxmox.timeout +
			// kill_grace, shortened here) gives up with a lock error,
			// destroying nothing.
			short := w.configWith(map[string]any{"timeout": 1, "kill_grace": 1})
			r := testutil.Run(t, w.nexcage, w.env, "--root", w.root, "--config", short, "delete", "--force", id)
			if r.Code != 9 || !contains(r.Stderr, "pve-config-") {
				t.Errorf("delete --force while the worker holds the lock: want exit 9 naming the lock: %s", r)
			}
			if ids := w.listIDs(); len(ids) != 1 {
				t.Errorf("the record went with a failed delete: list shows %q", ids)
			}
			confs, _ := filepath.Glob(filepath.Join(w.node.confDir(), "*.conf"))
			if len(confs) != 1 {
				t.Errorf("configs while the worker is paused: %q", confs)
			}
			writeFile(t, release, "go")
			// delete --force while the worker may still run: it waits for
			// the worker's config lock.
			w.must("delete", "--force", id)
			testutil.WaitGone(t, worker, 60*time.Second)
			w.assertClean("after delete --force", "var/lib/lxc/.nexcage/vmid.lock")
			if m := testutil.MountsUnder(t, w.node.root); len(m) > 0 {
				t.Errorf("mounts left: %q", m)
			}
			if ids := w.listIDs(); len(ids) != 0 {
				t.Errorf("after delete --force, list shows %q", ids)
			}
		})
	}
}

// TestInterruptInCreateWorker: SIGTERM to nexcage while pct create's
// worker is at each of its steps: nexcage sends pct SIGTERM, pct forwards
// it to the worker, which rolls back; nexcage then undoes the rest and
// exits 143 with nothing left and no record.
func TestInterruptInCreateWorker(t *testing.T) {
	for _, point := range workerPoints {
		t.Run(point, func(t *testing.T) {
			w := newPveWorld(t, nil)
			b := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
			id := "wintr-" + point
			cmd, exited, out, worker, _ := w.startPaused(id, b, point)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(120 * time.Second):
				t.Fatal("nexcage did not end after SIGTERM")
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 143 {
				data, _ := os.ReadFile(out)
				t.Errorf("nexcage ended with %v, want exit 143: %s", err, data)
			}
			testutil.WaitGone(t, worker, 30*time.Second)
			if ids := w.listIDs(); len(ids) != 0 {
				t.Errorf("after the interrupt, list shows %q", ids)
			}
			w.assertClean("after the interrupt")
			if m := testutil.MountsUnder(t, w.node.root); len(m) > 0 {
				t.Errorf("mounts left: %q", m)
			}
		})
	}
}
