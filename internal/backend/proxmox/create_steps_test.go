package proxmox

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
	"github.com/nexcage/nexcage/internal/testutil"
)

// TestCreateUndoesEachSupervisedStep runs the real create path (fake pct,
// fake supervisor speaking the supervisor's report protocol on fd 3) and
// makes it fail at each step of the supervised start: the supervisor
// cannot listen or dies before listening, pct start fails, the init
// helper reports an error, the supervisor dies or reports garbage instead
// of ready, or the create is cancelled (SIGINT/SIGTERM) while it waits
// for ready. In every case the supervisor was recorded (checkpointed)
// before pct start, and the undo leaves nothing: the supervisor is dead,
// the CT destroyed, the packed template, its reference and the helper
// directory gone, and the undo is complete (no ErrCleanupIncomplete).
func TestCreateUndoesEachSupervisedStep(t *testing.T) {
	destroy := "destroy 100 --purge 1 --force 1 --destroy-unreferenced-disks 1"
	for _, tc := range []struct {
		mode    string // sup-mode, "start-fails" or "cancel"
		started bool   // pct start ran
		want    string // in the error
	}{
		{"error-listen", false, "cannot listen on the init socket"},
		{"exit-listen", false, "the supervisor exited before listening"},
		{"start-fails", true, "startup for container '100' failed"},
		{"error-ready", true, "cannot run process.args"},
		{"exit-ready", true, "the supervisor exited before the init helper is ready"},
		{"bad-ready", true, "bad report from the supervisor"},
		{"cancel", true, "context canceled"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f := newFakeNode(t, "", "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			switch tc.mode {
			case "start-fails":
				writeTestFile(t, filepath.Join(f.dir, "start-fails"), "")
			case "cancel":
				writeTestFile(t, filepath.Join(f.dir, "sup-mode"), "hang-ready")
				go cancelWhenExists(ctx, cancel, filepath.Join(f.dir, "started-100"))
			default:
				writeTestFile(t, filepath.Join(f.dir, "sup-mode"), tc.mode)
			}
			var saved []map[string]string
			bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1"}, nil)
			c := &state.Container{ID: "ct1", Status: state.Creating, Backend: config.BackendProxmox, Created: time.Now()}
			opts := runtime.CreateOptions{Bundle: bundle, Spec: mustLoadSpec(t, bundle), Checkpoint: func(c *state.Container) error {
				saved = append(saved, maps.Clone(c.Data))
				return nil
			}}
			err := f.backend.Create(ctx, c, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if errors.Is(err, runtime.ErrCleanupIncomplete) {
				t.Errorf("undo incomplete: %v", err)
			}
			if tc.mode != "cancel" && errs.KindOf(err) != errs.KindBackend {
				t.Errorf("kind = %v, want backend", errs.KindOf(err))
			}
			// The supervisor was in a checkpoint (with the VMID and the
			// helper directory) before pct start could run.
			last := saved[len(saved)-1]
			sup, _ := strconv.Atoi(last[DataSupervisor])
			if sup <= 0 || last[DataVMID] != "100" || last[DataHelperDir] == "" || last[DataTemplateRef] == "" {
				t.Errorf("last checkpoint = %v, want the supervisor, VMID, helper directory and template reference", last)
			}
			if _, alive := procfs.StartTime(sup); alive {
				t.Errorf("supervisor %d still runs after the undo", sup)
			}
			want := []string{"create 100", destroy}
			if tc.started {
				want = []string{"create 100", "start 100", destroy}
			}
			calls := f.calls(t)
			if len(calls) != len(want) {
				t.Fatalf("pct calls = %q, want %q", calls, want)
			}
			for i := range want {
				if !strings.HasPrefix(calls[i], want[i]) {
					t.Errorf("pct call %d = %q, want %q", i, calls[i], want[i])
				}
			}
			if left := filesUnder(t, filepath.Join(f.etc, "nodes")); len(left) > 0 {
				t.Errorf("configs left: %q", left)
			}
			if left := filesUnder(t, f.backend.helperBase()); len(left) > 0 {
				t.Errorf("left in the helper base: %q", left)
			}
			if left := filesUnder(t, filepath.Join(f.dir, "vz/template/cache")); len(left) > 0 && !onlyCacheLock(left) {
				t.Errorf("left in the template cache: %q", left)
			}
		})
	}
}

// onlyCacheLock tells whether files is just the template cache's lock,
// which is kept on purpose.
func onlyCacheLock(files []string) bool {
	return len(files) == 1 && strings.HasSuffix(files[0], "/.nexcage/lock")
}

func writeTestFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cancelWhenExists cancels once p exists (polled), or returns when ctx
// is done.
func cancelWhenExists(ctx context.Context, cancel func(), p string) {
	for {
		if _, err := os.Stat(p); err == nil {
			cancel()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestDeleteKillsUnrecordedSupervisor: a create killed after it started
// the supervisor but before it recorded its pid leaves a record that names
// only the helper directory. delete --force finds the supervisor by that
// directory on its command line (and only that one: a supervisor of
// another directory stays), and removes the temporary files a killed
// write of the helper's side files left.
func TestDeleteKillsUnrecordedSupervisor(t *testing.T) {
	f := newFakeNode(t, "", "")
	b := f.backend
	b.SelfExe = testutil.BusyboxPath // a static binary
	c := &state.Container{ID: "ct1", Status: state.Creating, Data: map[string]string{}}
	dir, err := b.prepareHelper(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(b.helperBase(), "."+filepath.Base(dir)+".json123456"), "{")
	// Stand-ins whose command line is a supervisor's: busybox sh running
	// a script named like the verb, with --dir.
	work := t.TempDir()
	writeTestFile(t, filepath.Join(work, supervisor.Verb), "while :; do sleep 0.05; done\n")
	start := func(d string) *exec.Cmd {
		cmd := exec.Command(testutil.BusyboxPath, supervisor.Verb, "--dir", d)
		cmd.Args[0], cmd.Dir = "sh", work
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	sup, other := start(dir), start(dir+"-other")
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(supervisorsOf(dir), []int{sup.Process.Pid}) {
		if time.Now().After(deadline) {
			t.Fatalf("supervisorsOf(%s) = %v, want [%d]", dir, supervisorsOf(dir), sup.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Delete(context.Background(), c, true); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sup.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the unrecorded supervisor survived delete --force")
	}
	if _, alive := procfs.StartTime(other.Process.Pid); !alive {
		t.Error("the supervisor of another directory was killed")
	}
	if left := filesUnder(t, b.helperBase()); len(left) > 0 {
		t.Errorf("left in the helper base: %q", left)
	}
}
