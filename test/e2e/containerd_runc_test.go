package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestContainerdRuncRouted drives nexcage as containerd's runc (runc v2
// shim, `ctr run --runc-binary`) for an id routed to runc: output, exit
// code, detached run with kill/delete, exec, ps, pause/resume and a
// failing create, all as with runc itself.
func TestContainerdRuncRouted(t *testing.T) {
	cfg := WriteConfig(t, `{"runtime": {"routing": [{"pattern": "^runc-.*$", "runtime": "runc"}, {"pattern": ".*", "runtime": "proxmox-lxc"}]}}`)
	c := newContainerd(t, []string{"NEXCAGE_CONFIG=" + cfg})

	t.Run("run --rm prints output and returns the exit code", func(t *testing.T) {
		r := c.run([]string{"--rm"}, "runc-fg", "sh", "-c", "echo out-line; echo err-line >&2; exit 3")
		if r.Code != 3 || r.Stdout != "out-line\n" || !strings.Contains(r.Stderr, "err-line") {
			t.Fatalf("ctr run: %s", r)
		}
	})

	t.Run("detached, exec, ps, pause, kill, delete", func(t *testing.T) {
		id := "runc-bg"
		if r := c.run([]string{"-d"}, id, "sleep", "1000"); r.Code != 0 {
			t.Fatalf("ctr run -d: %s", r)
		}
		if st := c.taskStatus(id); st != "RUNNING" {
			t.Fatalf("task status %q", st)
		}
		pid := c.taskPid(id)
		if r := c.ctr("task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo exec-out; exit 5"); r.Code != 5 || r.Stdout != "exec-out\n" {
			t.Fatalf("ctr task exec: %s", r)
		}
		if r := c.ctr("task", "ps", id); r.Code != 0 || !strings.Contains(r.Stdout, strconv.Itoa(pid)) {
			t.Fatalf("ctr task ps (init pid %d): %s", pid, r)
		}
		if r := c.ctr("task", "pause", id); r.Code != 0 || c.taskStatus(id) != "PAUSED" {
			t.Fatalf("ctr task pause: %s, status %s", r, c.taskStatus(id))
		}
		if r := c.ctr("task", "resume", id); r.Code != 0 || c.taskStatus(id) != "RUNNING" {
			t.Fatalf("ctr task resume: %s, status %s", r, c.taskStatus(id))
		}
		if r := c.ctr("task", "kill", "-s", "KILL", id); r.Code != 0 {
			t.Fatalf("ctr task kill: %s", r)
		}
		Eventually(t, 20*time.Second, "the task to stop", func() bool { return c.taskStatus(id) == "STOPPED" })
		if r := c.ctr("task", "delete", id); r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, "137") {
			t.Fatalf("ctr task delete (want exit status 137): %s", r)
		}
		if r := c.ctr("container", "delete", id); r.Code != 0 {
			t.Fatalf("ctr container delete: %s", r)
		}
		if _, err := os.Stat(filepath.Join(c.nexcageRoot(), id)); !os.IsNotExist(err) {
			t.Fatalf("nexcage state of %s left: %v", id, err)
		}
	})

	t.Run("failing create shows the runtime's error", func(t *testing.T) {
		r := c.run([]string{"--rm"}, "runc-bad", "/no/such/binary")
		if r.Code == 0 || !strings.Contains(r.Stderr, "OCI runtime create failed") || !strings.Contains(r.Stderr, "/no/such/binary") {
			t.Fatalf("ctr run of a missing binary: %s", r)
		}
		c.ctr("container", "delete", "runc-bad")
	})
}
