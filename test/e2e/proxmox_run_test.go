package e2e

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// TestProxmoxRunForeground: `nexcage run` without -d on the Proxmox
// backend prints the container's output, returns its exit code and
// leaves nothing behind, as `runc run` does: pct create, start and
// destroy, nothing else.
func TestProxmoxRunForeground(t *testing.T) {
	e := newPveEnv(t, false, "")
	bundle := testutil.BusyboxBundle(t, "", []string{"sh", "-c", "echo hi; echo oops >&2; exit 3"}, nil)
	var r Result
	calls := e.countCalls(func() { r = e.n.Run("run", "--bundle", bundle, "lxc-run-fg") })
	if r.Code != 3 || r.Stdout != "hi\n" || !strings.Contains(r.Stderr, "oops") {
		t.Fatalf("run: want exit 3, stdout \"hi\\n\" and oops on stderr, got %s", r)
	}
	wantCalls(t, "run", calls, map[string]int{"create": 1, "start": 1, "destroy": 1})
	if out, err := e.pctRun("list"); err != nil || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Errorf("pct list after the run: %v\n%s", err, out)
	}
	e.assertNothingLeft("after run")

	// Exit 0 is 0, and the id is free again.
	ok := testutil.BusyboxBundle(t, "", []string{"true"}, nil)
	if r := e.n.Run("run", "--bundle", ok, "lxc-run-fg"); r.Code != 0 || r.Stdout != "" {
		t.Fatalf("run true: %s", r)
	}
	e.assertNothingLeft("after run true")
}

// TestProxmoxRunForwardsSignals: SIGTERM to a foreground nexcage run
// reaches the container's process, whose exit code run returns; the
// container is deleted afterwards.
func TestProxmoxRunForwardsSignals(t *testing.T) {
	e := newPveEnv(t, false, "")
	bundle := testutil.BusyboxBundle(t, "", []string{"sh", "-c",
		`trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.05; done`}, nil)
	out, errOut := tempFile(t, "stdout"), tempFile(t, "stderr")
	cmd := exec.Command(e.n.Bin, append(append([]string{}, e.n.Globals...), "run", "--bundle", bundle, "lxc-run-sig")...)
	cmd.Env = append(os.Environ(), e.n.Env...)
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	exited := make(chan struct{})
	go func() { waited <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
			e.n.Run("delete", "--force", "lxc-run-sig")
		}
	})
	Eventually(t, 60*time.Second, "the container's ready line", func() bool {
		return strings.Contains(readAll(t, out), "ready")
	})
	if s := stateOf(t, e.n, "lxc-run-sig"); s.Status != "running" {
		t.Errorf("state while running in the foreground: %+v", s)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("nexcage run did not end after SIGTERM")
	}
	if cmd.ProcessState.ExitCode() != 7 {
		t.Errorf("run exited %v, want 7; stderr:\n%s", err, readAll(t, errOut))
	}
	if got := readAll(t, out); got != "ready\ngot TERM\n" {
		t.Errorf("stdout %q", got)
	}
	e.assertNothingLeft("after the signalled run")
}
