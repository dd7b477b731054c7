package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// waitingFake is a backend without a Runner whose containers can be
// waited for (the Proxmox backend's supervised containers).
type waitingFake struct {
	*fakeBackend
	code    int
	err     error
	during  func() // runs while Wait "waits"
	waitFor []string
}

func (f *waitingFake) Wait(_ context.Context, c *state.Container) (int, error) {
	f.calls = append(f.calls, "wait")
	f.waitFor = append(f.waitFor, c.ID+"/"+c.Status)
	if f.during != nil {
		f.during()
	}
	if f.err != nil {
		return 0, f.err
	}
	delete(f.live, c.ID) // the process exited
	return f.code, nil
}

func waitEnv(t *testing.T, w *waitingFake) *env {
	e := newEnv(t)
	reg := runtime.NewRegistry()
	reg.Register("proxmox-lxc", func() (runtime.Backend, error) { return w, nil })
	e.m.Backends = reg
	return e
}

// A foreground run on a backend that can wait: create, start, wait,
// the process's exit code, and the container deleted afterwards.
func TestRunWaitsAndDeletes(t *testing.T) {
	w := &waitingFake{fakeBackend: newFake("proxmox-lxc"), code: 3}
	e := waitEnv(t, w)
	var seen *state.Container
	w.during = func() {
		// The lock is not held while waiting: state works meanwhile.
		c, err := e.m.State(context.Background(), "ct-1")
		if err != nil {
			t.Errorf("state during the wait: %v", err)
		}
		seen = c
	}
	code, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false)
	if err != nil || code != 3 {
		t.Fatalf("run = %d, %v; want 3, nil", code, err)
	}
	if want := []string{"create", "start", "wait", "delete"}; !slices.Equal(w.calls, want) {
		t.Errorf("calls %v, want %v", w.calls, want)
	}
	if seen == nil || seen.Status != state.Running {
		t.Errorf("state during the wait: %+v", seen)
	}
	if ok, _ := e.m.Store.Exists("ct-1"); ok {
		t.Error("record left after the run")
	}
}

// Detached, nothing waits and the container stays.
func TestRunDetachedDoesNotWait(t *testing.T) {
	w := &waitingFake{fakeBackend: newFake("proxmox-lxc")}
	e := waitEnv(t, w)
	code, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, true)
	if err != nil || code != 0 {
		t.Fatalf("run -d = %d, %v", code, err)
	}
	if slices.Contains(w.calls, "wait") || slices.Contains(w.calls, "delete") {
		t.Errorf("calls %v", w.calls)
	}
	if ok, _ := e.m.Store.Exists("ct-1"); !ok {
		t.Error("record gone after run -d")
	}
}

// A container that cannot be waited for is left running, as before.
func TestRunCannotWaitLeavesRunning(t *testing.T) {
	w := &waitingFake{fakeBackend: newFake("proxmox-lxc"), err: runtime.ErrCannotWait}
	e := waitEnv(t, w)
	code, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false)
	if err != nil || code != 0 {
		t.Fatalf("run = %d, %v", code, err)
	}
	if slices.Contains(w.calls, "delete") {
		t.Errorf("deleted: %v", w.calls)
	}
	if ok, _ := e.m.Store.Exists("ct-1"); !ok {
		t.Error("record gone")
	}
}

// Deleted by someone else while waiting: the run still reports the code.
func TestRunDeletedDuringWait(t *testing.T) {
	w := &waitingFake{fakeBackend: newFake("proxmox-lxc"), code: 137}
	e := waitEnv(t, w)
	w.during = func() {
		if err := e.m.Delete(context.Background(), "ct-1", true); err != nil {
			t.Errorf("delete during the wait: %v", err)
		}
	}
	code, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false)
	if err != nil || code != 137 {
		t.Fatalf("run = %d, %v", code, err)
	}
	if n := len(slices.DeleteFunc(slices.Clone(w.calls), func(s string) bool { return s != "delete" })); n != 1 {
		t.Errorf("%d deletes: %v", n, w.calls)
	}
}

// signalFake's Wait ends when Kill delivers a signal, as a process that
// exits on SIGUSR1 would; Kill runs concurrently with Wait.
type signalFake struct {
	*fakeBackend
	started chan struct{}
	got     chan syscall.Signal
}

func (f *signalFake) Kill(_ context.Context, c *state.Container, sig syscall.Signal, _ bool) error {
	f.got <- sig
	return nil
}

func (f *signalFake) Wait(ctx context.Context, c *state.Container) (int, error) {
	close(f.started)
	select {
	case sig := <-f.got:
		return 128 + int(sig), nil
	case <-time.After(time.Minute):
		return 0, errors.New("no signal relayed")
	}
}

// A signal nexcage receives during a foreground run is relayed to the
// container (Kill), whose exit code run returns.
func TestRunRelaysSignals(t *testing.T) {
	f := &signalFake{fakeBackend: newFake("proxmox-lxc"), started: make(chan struct{}), got: make(chan syscall.Signal, 1)}
	e := newEnv(t)
	reg := runtime.NewRegistry()
	reg.Register("proxmox-lxc", func() (runtime.Backend, error) { return f, nil })
	e.m.Backends = reg
	go func() {
		<-f.started
		_ = syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	}()
	code, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false)
	if err != nil || code != 128+int(syscall.SIGUSR1) {
		t.Fatalf("run = %d, %v; want %d", code, err, 128+int(syscall.SIGUSR1))
	}
	if ok, _ := e.m.Store.Exists("ct-1"); ok {
		t.Error("record left after the run")
	}
}

// A foreground run deletes only the container it created: when, during
// the wait, its container was deleted and another created under the same
// id, that newer one (another creation nonce) is left alone.
func TestRunDeletesOnlyItsOwnContainer(t *testing.T) {
	w := &waitingFake{fakeBackend: newFake("proxmox-lxc"), code: 0}
	e := waitEnv(t, w)
	var newer *state.Container
	w.during = func() {
		ctx := context.Background()
		if err := e.m.Delete(ctx, "ct-1", true); err != nil {
			t.Errorf("delete during the wait: %v", err)
		}
		c, err := e.m.Create(ctx, runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}})
		if err != nil {
			t.Errorf("create during the wait: %v", err)
		}
		newer = c
	}
	if _, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false); err != nil {
		t.Fatal(err)
	}
	cur, err := e.m.Store.Load("ct-1")
	if err != nil {
		t.Fatalf("the newer container's record is gone: %v", err)
	}
	if newer == nil || cur.Nonce != newer.Nonce || cur.Nonce == "" {
		t.Errorf("record = %+v, want the newer container's", cur)
	}
	if n := len(slices.DeleteFunc(slices.Clone(w.calls), func(s string) bool { return s != "delete" })); n != 1 {
		t.Errorf("backend deletes = %d (calls %v), want only the one made during the wait", n, w.calls)
	}
}

// SIGINT or SIGTERM during the create part of a foreground run cancels
// the create (the backend sees its context cancelled and undoes), and the
// run returns an Interrupted error (exit 128+n); no record stays.
func TestRunInterruptedDuringCreate(t *testing.T) {
	w := &waitingFake{fakeBackend: newFake("proxmox-lxc")}
	e := waitEnv(t, w)
	e.m.Backends = runtime.NewRegistry()
	cb := &cancelAwareFake{waitingFake: w}
	e.m.Backends.Register("proxmox-lxc", func() (runtime.Backend, error) { return cb, nil })
	_, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false)
	var in *runtime.Interrupted
	if !errors.As(err, &in) || in.Signal != syscall.SIGTERM || runtime.ExitCode(err) != 143 {
		t.Fatalf("err = %v (exit %d), want interrupted by SIGTERM, exit 143", err, runtime.ExitCode(err))
	}
	if !cb.sawCancel {
		t.Error("the backend's create did not see its context cancelled")
	}
	if ok, _ := e.m.Store.Exists("ct-1"); ok {
		t.Error("record left after an interrupted create")
	}
}

// cancelAwareFake's Create sends this process SIGTERM and waits for its
// context to be cancelled, as a long pct create would.
type cancelAwareFake struct {
	*waitingFake
	sawCancel bool
}

func (f *cancelAwareFake) Create(ctx context.Context, c *state.Container, opts runtime.CreateOptions) error {
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		f.sawCancel = true
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("not cancelled")
	}
}

// A create whose undo is incomplete keeps its record (status creating)
// for delete --force, instead of forgetting what is left.
func TestCreateKeepsRecordWhenUndoIncomplete(t *testing.T) {
	w := &incompleteFake{fakeBackend: newFake("proxmox-lxc")}
	e := newEnv(t)
	e.m.Backends = runtime.NewRegistry()
	e.m.Backends.Register("proxmox-lxc", func() (runtime.Backend, error) { return w, nil })
	_, err := e.m.Create(context.Background(), runtime.CreateRequest{ID: "ct-1", Options: runtime.CreateOptions{Bundle: "/b/good"}})
	if !errors.Is(err, runtime.ErrCleanupIncomplete) {
		t.Fatalf("err = %v", err)
	}
	c, err := e.m.Store.Load("ct-1")
	if err != nil || c.Status != state.Creating || c.Data["vmid"] != "100" {
		t.Fatalf("record = %+v, %v; want it kept with what is left", c, err)
	}
	if err := e.m.Delete(context.Background(), "ct-1", true); err != nil {
		t.Fatal(err)
	}
}

type incompleteFake struct{ *fakeBackend }

func (f *incompleteFake) Create(_ context.Context, c *state.Container, opts runtime.CreateOptions) error {
	c.Data = map[string]string{"vmid": "100"}
	if err := opts.Checkpoint(c); err != nil {
		return err
	}
	return errors.Join(errors.New("pct create failed"), runtime.ErrCleanupIncomplete)
}

// runningFake is a backend with a Runner (runc, crun): Run creates, runs
// and (when err is set) fails, after during ran in place of the runtime.
type runningFake struct {
	*fakeBackend
	err    error
	during func()
}

func (f *runningFake) Run(_ context.Context, c *state.Container, opts runtime.CreateOptions, _ bool) (int, error) {
	f.calls = append(f.calls, "run")
	if opts.StateDir == "" {
		return 0, errors.New("no state directory for the run's temporary files")
	}
	if f.during != nil {
		f.during()
	}
	return 1, f.err
}

// A runtime's run that fails: what it left is deleted under the lock, but
// only when the id is still this run's container; a container created
// under the same id meanwhile is neither deleted nor forgotten.
func TestFailedRunnerRunDeletesOnlyItsOwnContainer(t *testing.T) {
	for _, recreated := range []bool{false, true} {
		t.Run(fmt.Sprintf("recreated=%v", recreated), func(t *testing.T) {
			r := &runningFake{fakeBackend: newFake("runc"), err: errs.New(errs.KindBackend, "runc run failed")}
			e := newEnv(t)
			reg := runtime.NewRegistry()
			reg.Register("runc", func() (runtime.Backend, error) { return r, nil })
			e.m.Backends = reg
			var newer *state.Container
			if recreated {
				r.during = func() {
					ctx := context.Background()
					if err := e.m.Delete(ctx, "run-1", true); err != nil {
						t.Errorf("delete during the run: %v", err)
					}
					c, err := e.m.Create(ctx, runtime.CreateRequest{ID: "run-1", Options: runtime.CreateOptions{Bundle: "/b/good"}})
					if err != nil {
						t.Errorf("create during the run: %v", err)
					}
					newer = c
				}
			}
			if _, err := e.m.Run(context.Background(), runtime.CreateRequest{ID: "run-1", Options: runtime.CreateOptions{Bundle: "/b/good"}}, false); err == nil {
				t.Fatal("the failed run succeeded")
			}
			deletes := len(slices.DeleteFunc(slices.Clone(r.calls), func(s string) bool { return s != "delete" }))
			cur, err := e.m.Store.Load("run-1")
			if !recreated {
				if deletes != 1 || err == nil {
					t.Errorf("calls %v, record %v (%v): want the failed run's container deleted and forgotten", r.calls, cur, err)
				}
				return
			}
			if deletes != 1 || err != nil || newer == nil || cur.Nonce != newer.Nonce {
				t.Errorf("calls %v, record %+v (%v): want only the delete made during the run, and the newer record", r.calls, cur, err)
			}
		})
	}
}
