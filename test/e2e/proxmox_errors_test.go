package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/testutil"
)

// TestProxmoxInjectedCreateFailures injects each pct create failure of
// proxmox-pct.md §5 and checks the mapped error (exit code, pct's text,
// the hint) and that nothing is left behind: no container config, no
// VMID, no packed template, no nexcage state.
func TestProxmoxInjectedCreateFailures(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	tests := []struct {
		name  string
		fail  string // PVESIM_FAIL
		code  int
		want  []string // on stderr
		calls int      // pct create calls
	}{
		{"template missing", "create:unable to create CT {vmid} - can't find file 'local:vztmpl/x.tar.zst'", 7,
			[]string{"can't find file 'local:vztmpl/x.tar.zst'", "pveam"}, 1},
		{"storage without rootdir", "create:storage: storage 'local' does not support container directories", 6,
			[]string{"does not support container directories", "storage 'local' cannot hold containers; set proxmox.storage"}, 1},
		{"os detection", "create:unable to create CT {vmid} - unable to detect OS distribution", 7,
			[]string{"unable to detect OS distribution", "org.nexcage.proxmox.ostype"}, 1},
		{"not root", "create:please run as root", 8, []string{"please run as root", "run nexcage as root"}, 1},
		{"locked, retried", "create:CT is locked (create)", 9, []string{"CT is locked (create)", "pct unlock"}, 4},
		{"lock timeout, retried", "create:can't lock file '/run/lock/lxc/pve-config-{vmid}.lock' - got timeout", 9, []string{"got timeout"}, 4},
		// Taken by creators on other nodes: the next free VMID is tried, 32
		// in all (docs/PROXMOX.md), then the error names the range.
		{"vmid taken everywhere", "create:CT {vmid} already exists on node 'pve2'", 4, []string{"already exists on node 'pve2'", "vmid_range"}, 32},
		{"unknown option", "create:Unknown option: tags", 11, []string{"Unknown option: tags", "newer Proxmox"}, 1},
		{"unknown failure keeps stderr", "create:unable to create CT {vmid} - storage full: 0 bytes left", 8,
			[]string{"unable to create CT", "storage full: 0 bytes left"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n.Env = append(append([]string{}, e.env...), "PVESIM_FAIL="+tc.fail)
			defer func() { n.Env = e.env }()
			id := "fail-" + strings.ReplaceAll(tc.name, " ", "-")
			id = strings.ReplaceAll(id, ",", "")
			calls := e.countCalls(func() {
				r := n.Run("create", "--bundle", bundle, id)
				if r.Code != tc.code {
					t.Errorf("exit %d, want %d: %s", r.Code, tc.code, r)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.Stderr, w) {
						t.Errorf("stderr lacks %q: %s", w, r.Stderr)
					}
				}
				if !strings.Contains(r.Stderr, id) {
					t.Errorf("stderr does not name the container %s: %s", id, r.Stderr)
				}
			})
			wantCalls(t, "failed create", calls, map[string]int{"create": tc.calls})
			e.assertNothingLeft(tc.name)
			n.Fails(3, "", "state", id)
		})
	}
}

// TestProxmoxInjectedLifecycleFailures: a failing start leaves a created
// container that delete still removes; a locked destroy fails with the
// lock error and keeps the container until it succeeds.
func TestProxmoxInjectedLifecycleFailures(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	id := "lxc-failures"
	// create starts the container (its init helper waits for start), so
	// a failing pct start fails create and leaves nothing behind.
	n.Env = append(append([]string{}, e.env...), "PVESIM_FAIL=start:startup for container '{vmid}' failed")
	r := n.Fails(8, "startup for container", "create", "--bundle", bundle, id)
	if !strings.Contains(r.Stderr, "pct start") {
		t.Errorf("error does not say which pct call failed: %s", r.Stderr)
	}
	n.Env = e.env
	e.assertNothingLeft("after a failed start")
	n.Must("create", "--bundle", bundle, id)
	n.CleanupContainer(id)

	n.Env = append(append([]string{}, e.env...), "PVESIM_FAIL=destroy:CT is locked (backup)")
	n.Fails(9, "CT is locked (backup)", "delete", id)
	n.Env = e.env
	// Deleting a created container first stops its init helper (pct
	// stop), which a failing pct destroy cannot undo.
	if s := stateOf(t, n, id); s.Status != "stopped" {
		t.Errorf("after a failed delete: %+v", s)
	}
	n.Must("delete", id)
	e.assertNothingLeft("after delete")
}

// TestProxmoxTimeout: a pct call slower than proxmox.timeout is killed and
// reported as a timeout, leaving nothing behind.
func TestProxmoxTimeout(t *testing.T) {
	e := newPveEnv(t, false, `"timeout": 1`)
	n := e.n
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	n.Env = append(append([]string{}, e.env...), "PVESIM_LATENCY_MS=10000")
	n.Fails(12, "timed out", "create", "--bundle", bundle, "slow")
	n.Env = e.env
	e.assertNothingLeft("after timeout")
	n.Fails(3, "", "state", "slow")
}

// TestProxmoxVanished: a container destroyed behind nexcage's back shows
// as stopped and delete still cleans up nexcage's side.
func TestProxmoxVanished(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	id := "lxc-vanish"
	n.Must("create", "--bundle", bundle, id)
	vmid := e.vmidOf(id)
	// The created container runs (its init helper waits for start).
	if out, err := e.pctRun("destroy", strconv.Itoa(vmid), "--purge", "1", "--force", "1"); err != nil {
		t.Fatalf("pct destroy: %v %s", err, out)
	}
	if s := stateOf(t, n, id); s.Status != "stopped" {
		t.Errorf("vanished container: %+v", s)
	}
	wantCalls(t, "delete vanished", e.countCalls(func() { n.Must("delete", id) }), nil)
	e.assertNothingLeft("after delete")
}
