package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestContainerdProxmoxRouted drives nexcage as containerd's runc for an
// id routed to the Proxmox backend (against pvesim with real LXC): the
// supervisor stands in for the container in the shim's process tree, so
// ctr sees the container's output and exit status; exec, ps and kill
// reach the container; delete leaves nothing on the node.
func TestContainerdProxmoxRouted(t *testing.T) {
	e := newPveEnv(t, false, "")
	// The shim calls nexcage without --config: the config and pvesim's
	// variables reach it through containerd's environment.
	c := newContainerd(t, append([]string{"NEXCAGE_CONFIG=" + e.config}, e.env...))
	// nexcage's state root is the shim's --root; pvesim's node is checked
	// for leftovers by e's cleanup, which runs after containerd's.

	t.Run("run --rm prints output and returns the exit code", func(t *testing.T) {
		r := c.run([]string{"--rm"}, "lxc-fg", "sh", "-c", "echo out-line; echo err-line >&2; exit 3")
		if r.Code != 3 || r.Stdout != "out-line\n" || !strings.Contains(r.Stderr, "err-line") {
			t.Fatalf("ctr run: %s", r)
		}
		e.assertNothingLeftOn(t, c.nexcageRoot(), "after ctr run --rm")
	})

	t.Run("detached, exec, ps, kill, delete", func(t *testing.T) {
		id := "lxc-bg"
		calls := e.countCalls(func() {
			if r := c.run([]string{"-d"}, id, "sleep", "1000"); r.Code != 0 {
				t.Fatalf("ctr run -d: %s", r)
			}
		})
		wantCalls(t, "ctr run -d", calls, map[string]int{"create": 1, "start": 1})
		if st := c.taskStatus(id); st != "RUNNING" {
			t.Fatalf("task status %q", st)
		}
		// The task's pid is the supervisor, a child of the shim.
		sup := c.taskPid(id)
		if sup <= 1 {
			t.Fatalf("task pid %d", sup)
		}
		if r := c.ctr("task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo exec-out; exit 5"); r.Code != 5 || r.Stdout != "exec-out\n" {
			t.Fatalf("ctr task exec: %s", r)
		}
		var initPid int
		{
			s := stateOf(t, &Nexcage{T: t, Bin: c.nexcage, Globals: []string{"--root", c.nexcageRoot(), "--config", e.config}, Env: e.env}, id)
			if s.Status != "running" || s.Pid <= 1 {
				t.Fatalf("nexcage state: %+v", s)
			}
			initPid = s.Pid
		}
		if cmd := readProc(t, initPid, "cmdline"); strings.Join(cmd, " ") != "sleep 1000" {
			t.Errorf("container init runs %q, want sleep 1000", cmd)
		}
		if r := c.ctr("task", "ps", id); r.Code != 0 || !strings.Contains(r.Stdout, strconv.Itoa(initPid)) {
			t.Fatalf("ctr task ps (init pid %d): %s", initPid, r)
		}
		// SIGTERM is ignored by sleep as PID 1 (as with runc); SIGKILL is not.
		calls = e.countCalls(func() {
			if r := c.ctr("task", "kill", "-s", "KILL", id); r.Code != 0 {
				t.Fatalf("ctr task kill: %s", r)
			}
			Eventually(t, 20*time.Second, "the task to stop", func() bool { return c.taskStatus(id) == "STOPPED" })
		})
		wantCalls(t, "kill", calls, nil)
		calls = e.countCalls(func() {
			if r := c.ctr("task", "delete", id); r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, "137") {
				t.Fatalf("ctr task delete (want exit status 137): %s", r)
			}
		})
		wantCalls(t, "delete", calls, map[string]int{"destroy": 1})
		if r := c.ctr("container", "delete", id); r.Code != 0 {
			t.Fatalf("ctr container delete: %s", r)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(sup)); err == nil {
			if st, _ := os.ReadFile("/proc/" + strconv.Itoa(sup) + "/cmdline"); strings.Contains(string(st), "__nexcage-supervise") {
				t.Errorf("supervisor %d still running", sup)
			}
		}
		e.assertNothingLeftOn(t, c.nexcageRoot(), "after ctr task delete")
	})

	t.Run("failing create shows nexcage's error", func(t *testing.T) {
		r := c.run([]string{"--rm"}, "lxc-bad", "/no/such/binary")
		if r.Code == 0 || !strings.Contains(r.Stderr, "OCI runtime create failed") || !strings.Contains(r.Stderr, `exec: "/no/such/binary": stat /no/such/binary: no such file or directory`) {
			t.Fatalf("ctr run of a missing binary: %s", r)
		}
		c.ctr("container", "delete", "lxc-bad")
		e.assertNothingLeftOn(t, c.nexcageRoot(), "after a failed create")
	})
}

// assertNothingLeftOn is assertNothingLeft for a nexcage whose state
// root is root (here: the shim's --root), plus the init helper files
// (the shared copy of nexcage goes with the last container using it).
func (e *pveEnv) assertNothingLeftOn(t *testing.T, root, step string) {
	t.Helper()
	saved := e.n
	e.n = &Nexcage{T: t, Globals: []string{"--root", root}}
	e.assertNothingLeft(step)
	e.n = saved
	ents, _ := os.ReadDir(filepath.Join(e.root, "var/lib/lxc/.nexcage"))
	for _, en := range ents {
		t.Errorf("%s: init helper file left: %s", step, en.Name())
	}
}
