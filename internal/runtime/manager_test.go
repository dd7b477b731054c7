package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// fakeBackend keeps containers in memory and records calls.
type fakeBackend struct {
	name       string
	live       map[string]string // id -> status
	calls      []string
	failOn     string // verb that fails
	refreshes  int
	stopOnTerm bool
}

func newFake(name string) *fakeBackend {
	return &fakeBackend{name: name, live: map[string]string{}, stopOnTerm: true}
}

func (f *fakeBackend) fail(verb string) error {
	f.calls = append(f.calls, verb)
	if f.failOn == verb {
		return errs.New(errs.KindBackend, "%s failed on purpose", verb)
	}
	return nil
}

func (f *fakeBackend) Name() string { return f.name }

func (f *fakeBackend) Create(_ context.Context, c *state.Container, opts runtime.CreateOptions) error {
	if c.Status != state.Creating {
		return errors.New("create called with status " + c.Status)
	}
	if err := opts.Checkpoint(c); err != nil {
		return err
	}
	if err := f.fail("create"); err != nil {
		return err
	}
	f.live[c.ID] = state.Created
	c.Status, c.Pid = state.Created, 4242
	return nil
}

func (f *fakeBackend) Start(_ context.Context, c *state.Container) error {
	if err := f.fail("start"); err != nil {
		return err
	}
	f.live[c.ID] = state.Running
	c.Status = state.Running
	return nil
}

func (f *fakeBackend) Refresh(_ context.Context, cs []*state.Container) error {
	f.refreshes++
	for _, c := range cs {
		st, ok := f.live[c.ID]
		if !ok {
			st = state.Stopped
		}
		c.Status = st
		if st == state.Stopped {
			c.Pid = 0
		}
	}
	return nil
}

func (f *fakeBackend) Kill(_ context.Context, c *state.Container, sig syscall.Signal, _ bool) error {
	if err := f.fail("kill"); err != nil {
		return err
	}
	if sig == syscall.SIGKILL || (sig == syscall.SIGTERM && f.stopOnTerm) {
		f.live[c.ID] = state.Stopped
	}
	return nil
}

func (f *fakeBackend) Delete(_ context.Context, c *state.Container, force bool) error {
	if err := f.fail("delete"); err != nil {
		return err
	}
	delete(f.live, c.ID)
	return nil
}

// enforcingFake is a backend whose runtime enforces the lifecycle rules
// itself, refusing with its own words (crun's), like runc and crun.
type enforcingFake struct {
	*fakeBackend
	// exitsOnRefusal: the container exits right after a refused delete
	// (it was about to).
	exitsOnRefusal bool
}

func (f *enforcingFake) EnforcesLifecycle() bool { return true }

func (f *enforcingFake) status(id string) string {
	if st, ok := f.live[id]; ok {
		return st
	}
	return state.Stopped
}

func (f *enforcingFake) Start(ctx context.Context, c *state.Container) error {
	if f.status(c.ID) != state.Created {
		f.calls = append(f.calls, "start")
		return errs.New(errs.KindBackend, "cannot open `/run/crun/%s/exec.fifo`: No such file or directory", c.ID)
	}
	return f.fakeBackend.Start(ctx, c)
}

func (f *enforcingFake) Kill(ctx context.Context, c *state.Container, sig syscall.Signal, all bool) error {
	if st := f.status(c.ID); st != state.Created && st != state.Running {
		f.calls = append(f.calls, "kill")
		return errs.New(errs.KindBackend, "kill container: No such process")
	}
	return f.fakeBackend.Kill(ctx, c, sig, all)
}

func (f *enforcingFake) Delete(ctx context.Context, c *state.Container, force bool) error {
	if st := f.status(c.ID); !force && st != state.Created && st != state.Stopped {
		f.calls = append(f.calls, "delete")
		if f.exitsOnRefusal {
			f.live[c.ID] = state.Stopped
		}
		return errs.New(errs.KindBackend, "the container `%s` is not in `created` or `stopped` state", c.ID)
	}
	return f.fakeBackend.Delete(ctx, c, force)
}

type env struct {
	m    *runtime.Manager
	runc *fakeBackend
	lxc  *fakeBackend
	enf  *enforcingFake
	root string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	store, err := state.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{runc: newFake("runc"), lxc: newFake("proxmox-lxc"), enf: &enforcingFake{fakeBackend: newFake("enforcing")}, root: root}
	reg := runtime.NewRegistry()
	reg.Register("runc", func() (runtime.Backend, error) { return e.runc, nil })
	reg.Register("proxmox-lxc", func() (runtime.Backend, error) { return e.lxc, nil })
	reg.Register("enforcing", func() (runtime.Backend, error) { return e.enf, nil })
	reg.Register("broken", func() (runtime.Backend, error) {
		return nil, errs.New(errs.KindBackend, "pct not found")
	})
	e.m = &runtime.Manager{
		Store:    store,
		Backends: reg,
		Route: func(q runtime.RouteRequest) (runtime.Decision, error) {
			id, override := q.ID, q.Override
			if override != "" {
				return runtime.Decision{Backend: override, Reason: "--runtime"}, nil
			}
			if sb := q.Annotations["io.kubernetes.cri.sandbox-id"]; sb != "" {
				b, err := q.SandboxBackend(sb)
				return runtime.Decision{Backend: b, Reason: "sandbox"}, err
			}
			if len(id) > 3 && id[:3] == "ct-" {
				return runtime.Decision{Backend: "proxmox-lxc", Reason: "rule"}, nil
			}
			return runtime.Decision{Backend: "runc", Reason: "default"}, nil
		},
		LoadBundle: func(dir string) (*bundle.Bundle, error) {
			if filepath.Base(dir) == "bad" {
				return nil, errs.New(errs.KindInvalidBundle, "%s/config.json: process.args is empty", dir)
			}
			spec := &specs.Spec{Version: "1.0.2"}
			if sb, ok := strings.CutPrefix(filepath.Base(dir), "pod-"); ok {
				// A Kubernetes app container of sandbox sb.
				spec.Annotations = map[string]string{"io.kubernetes.cri.sandbox-id": sb}
			}
			return &bundle.Bundle{Dir: dir, Rootfs: dir + "/rootfs", Spec: spec}, nil
		},
		PollInterval: time.Millisecond,
	}
	return e
}

func (e *env) create(t *testing.T, id string) {
	t.Helper()
	if _, err := e.m.Create(context.Background(), runtime.CreateRequest{ID: id, Options: runtime.CreateOptions{Bundle: "/b/good"}}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

func wantKind(t *testing.T, err error, k errs.Kind, code int) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s error, got nil", k)
	}
	if got := errs.KindOf(err); got != k {
		t.Fatalf("want kind %s, got %s (%v)", k, got, err)
	}
	if got := errs.ExitCode(err); got != code {
		t.Fatalf("want exit code %d, got %d", code, got)
	}
}

func (e *env) assertNoRecord(t *testing.T, id string) {
	t.Helper()
	ok, err := e.m.Store.Exists(id)
	if err != nil || ok {
		t.Fatalf("record of %s left behind (exists=%v err=%v)", id, ok, err)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "c1")
	c, err := e.m.State(ctx, "c1")
	if err != nil || c.Status != state.Created || c.Pid != 4242 || c.Backend != "runc" || c.Bundle != "/b/good" || c.OCIVersion != "1.0.2" {
		t.Fatalf("state after create: %+v %v", c, err)
	}
	if err := e.m.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	err = e.m.Start(ctx, "c1")
	wantKind(t, err, errs.KindState, 10)
	if want := "cannot start an already running container: c1"; err.Error() != want {
		t.Fatalf("got %q want %q", err, want)
	}
	err = e.m.Delete(ctx, "c1", false)
	wantKind(t, err, errs.KindState, 10)
	if want := "cannot delete container c1 that is not stopped: running"; !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q want %q", err, want)
	}
	if err := e.m.Kill(ctx, "c1", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	err = e.m.Kill(ctx, "c1", syscall.SIGKILL, false)
	wantKind(t, err, errs.KindState, 10)
	if !strings.Contains(err.Error(), "container not running") {
		t.Fatalf("kill of stopped: %v", err)
	}
	err = e.m.Start(ctx, "c1")
	if !strings.Contains(err.Error(), "cannot start a container that has stopped") {
		t.Fatalf("start of stopped: %v", err)
	}
	if err := e.m.Delete(ctx, "c1", false); err != nil {
		t.Fatal(err)
	}
	e.assertNoRecord(t, "c1")
	_, err = e.m.State(ctx, "c1")
	wantKind(t, err, errs.KindNotFound, 3)
	if !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("state of missing: %v", err)
	}
}

// TestLifecycleEnforcingBackend: a backend that enforces the lifecycle
// itself gets one call per verb and no refresh when the call succeeds;
// when its runtime refuses, the error is the same as for any backend.
func TestLifecycleEnforcingBackend(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.enf
	if _, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1", Runtime: "enforcing", Options: runtime.CreateOptions{Bundle: "/b/good"}}); err != nil {
		t.Fatal(err)
	}
	wantCalls := func(step string, refreshes int, calls ...string) {
		t.Helper()
		if f.refreshes != refreshes || strings.Join(f.calls, " ") != strings.Join(calls, " ") {
			t.Fatalf("%s: refreshes %d (want %d), calls %q (want %q)", step, f.refreshes, refreshes, f.calls, calls)
		}
		f.refreshes, f.calls = 0, nil
	}
	wantCalls("create", 0, "create")

	if err := e.m.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	wantCalls("start", 0, "start")
	// The runtime holds the live status: start does not rewrite the record.
	if c, err := e.m.Store.Load("c1"); err != nil || c.Status != state.Created || c.Pid != 4242 {
		t.Fatalf("record after start: %+v %v", c, err)
	}
	if c, err := e.m.State(ctx, "c1"); err != nil || c.Status != state.Running || c.Pid != 4242 {
		t.Fatalf("state after start: %+v %v", c, err)
	}
	wantCalls("state", 1)
	err := e.m.Start(ctx, "c1")
	wantKind(t, err, errs.KindState, 10)
	if want := "cannot start an already running container: c1"; err.Error() != want {
		t.Fatalf("got %q want %q", err, want)
	}
	wantCalls("start of a running container", 1, "start")

	err = e.m.Delete(ctx, "c1", false)
	wantKind(t, err, errs.KindState, 10)
	if want := "cannot delete container c1 that is not stopped: running"; !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q want %q", err, want)
	}
	wantCalls("delete of a running container", 1, "delete")
	if ok, _ := e.m.Store.Exists("c1"); !ok {
		t.Fatal("a refused delete removed the record")
	}

	if err := e.m.Kill(ctx, "c1", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	wantCalls("kill", 0, "kill")
	err = e.m.Kill(ctx, "c1", syscall.SIGKILL, false)
	wantKind(t, err, errs.KindState, 10)
	if want := "container not running: c1 is stopped"; err.Error() != want {
		t.Fatalf("got %q want %q", err, want)
	}
	wantCalls("kill of a stopped container", 1, "kill")

	err = e.m.Start(ctx, "c1")
	wantKind(t, err, errs.KindState, 10)
	if want := "cannot start a container that has stopped: c1"; !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q want %q", err, want)
	}
	wantCalls("start of a stopped container", 1, "start")

	if c, err := e.m.State(ctx, "c1"); err != nil || c.Status != state.Stopped || c.Pid != 0 {
		t.Fatalf("state: %+v %v", c, err)
	}
	wantCalls("state", 1)

	if err := e.m.Delete(ctx, "c1", false); err != nil {
		t.Fatal(err)
	}
	wantCalls("delete", 0, "delete")
	e.assertNoRecord(t, "c1")
}

// A container that exits between the runtime's refusal to delete it and
// the refresh is deleted, as a check-then-delete would have done.
func TestEnforcingDeleteOfAContainerThatJustExited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1", Runtime: "enforcing", Options: runtime.CreateOptions{Bundle: "/b/good"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	e.enf.exitsOnRefusal = true
	e.enf.calls = nil
	if err := e.m.Delete(ctx, "c1", false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := strings.Join(e.enf.calls, " "); got != "delete delete" {
		t.Fatalf("calls: %q", got)
	}
	e.assertNoRecord(t, "c1")
}

// A failure the lifecycle does not explain keeps the backend's error.
func TestEnforcingBackendFailureKeepsItsError(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1", Runtime: "enforcing", Options: runtime.CreateOptions{Bundle: "/b/good"}}); err != nil {
		t.Fatal(err)
	}
	e.enf.failOn = "start"
	err := e.m.Start(ctx, "c1")
	wantKind(t, err, errs.KindBackend, 8)
	if !strings.Contains(err.Error(), "start failed on purpose") {
		t.Fatalf("got %v", err)
	}
	if c, _ := e.m.Store.Load("c1"); c.Status != state.Created {
		t.Fatalf("record after a failed start: %+v", c)
	}
	e.enf.failOn = "delete"
	err = e.m.Delete(ctx, "c1", true)
	wantKind(t, err, errs.KindBackend, 8)
	if ok, _ := e.m.Store.Exists("c1"); !ok {
		t.Fatal("a failed delete removed the record")
	}
	e.enf.failOn = ""
	if err := e.m.Delete(ctx, "c1", true); err != nil {
		t.Fatal(err)
	}
	e.assertNoRecord(t, "c1")
}

func TestCreateRefusesExistingID(t *testing.T) {
	e := newEnv(t)
	e.create(t, "c1")
	_, err := e.m.Create(context.Background(), runtime.CreateRequest{ID: "c1", Options: runtime.CreateOptions{Bundle: "/b/good"}})
	wantKind(t, err, errs.KindAlreadyExists, 4)
	if !strings.Contains(err.Error(), "container with given ID already exists") {
		t.Fatalf("got %v", err)
	}
	if n := countCalls(e.runc, "create"); n != 1 {
		t.Fatalf("backend create called %d times", n)
	}
}

func countCalls(f *fakeBackend, verb string) int {
	n := 0
	for _, c := range f.calls {
		if c == verb {
			n++
		}
	}
	return n
}

func TestCreateFailuresLeaveNothing(t *testing.T) {
	ctx := context.Background()
	t.Run("invalid id", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.m.Create(ctx, runtime.CreateRequest{ID: "../x", Options: runtime.CreateOptions{Bundle: "/b/good"}})
		wantKind(t, err, errs.KindUsage, 2)
		entries, _ := os.ReadDir(e.root)
		for _, en := range entries {
			if en.Name() != "@locks" {
				t.Fatalf("left %s in root", en.Name())
			}
		}
	})
	t.Run("invalid bundle", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1", Options: runtime.CreateOptions{Bundle: "/b/bad"}})
		wantKind(t, err, errs.KindInvalidBundle, 5)
		e.assertNoRecord(t, "c1")
		if len(e.runc.calls) != 0 {
			t.Fatalf("backend called before the bundle was validated: %v", e.runc.calls)
		}
	})
	t.Run("backend create fails", func(t *testing.T) {
		e := newEnv(t)
		e.runc.failOn = "create"
		_, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1", Options: runtime.CreateOptions{Bundle: "/b/good"}})
		wantKind(t, err, errs.KindBackend, 8)
		e.assertNoRecord(t, "c1")
	})
	t.Run("backend cannot be built", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1", Runtime: "broken", Options: runtime.CreateOptions{Bundle: "/b/good"}})
		wantKind(t, err, errs.KindBackend, 8)
		e.assertNoRecord(t, "c1")
	})
	t.Run("no bundle or image", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.m.Create(ctx, runtime.CreateRequest{ID: "c1"})
		wantKind(t, err, errs.KindUsage, 2)
		e.assertNoRecord(t, "c1")
	})
}

func TestCreatingRecordIsCheckpointed(t *testing.T) {
	e := newEnv(t)
	var seen *state.Container
	e.m.Backends.Register("peek", func() (runtime.Backend, error) {
		return &peekBackend{fakeBackend: newFake("peek"), store: e.m.Store, seen: &seen}, nil
	})
	_, err := e.m.Create(context.Background(), runtime.CreateRequest{ID: "c1", Runtime: "peek", Options: runtime.CreateOptions{Bundle: "/b/good"}})
	if err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.Status != state.Creating || seen.Backend != "peek" {
		t.Fatalf("record during create: %+v", seen)
	}
}

// peekBackend reads the stored record while Create runs.
type peekBackend struct {
	*fakeBackend
	store *state.Store
	seen  **state.Container
}

func (p *peekBackend) Create(ctx context.Context, c *state.Container, opts runtime.CreateOptions) error {
	got, err := p.store.Load(c.ID)
	if err != nil {
		return err
	}
	*p.seen = got
	return p.fakeBackend.Create(ctx, c, opts)
}

func TestDeleteForce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.m.Delete(ctx, "missing", true); err != nil {
		t.Fatalf("delete --force of a missing container: %v", err)
	}
	wantKind(t, e.m.Delete(ctx, "missing", false), errs.KindNotFound, 3)
	e.create(t, "c1")
	if err := e.m.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(ctx, "c1", true); err != nil {
		t.Fatal(err)
	}
	e.assertNoRecord(t, "c1")
	if _, ok := e.runc.live["c1"]; ok {
		t.Fatal("backend container left behind")
	}
}

func TestDeleteCreated(t *testing.T) {
	e := newEnv(t)
	e.create(t, "c1")
	if err := e.m.Delete(context.Background(), "c1", false); err != nil {
		t.Fatalf("delete of a created container (runc allows it): %v", err)
	}
	e.assertNoRecord(t, "c1")
}

func TestStop(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.create(t, "c1")
	if err := e.m.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Stop(ctx, "c1", time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ := e.m.State(ctx, "c1")
	if c.Status != state.Stopped {
		t.Fatalf("status after stop: %s", c.Status)
	}
	// A container ignoring SIGTERM is killed after the timeout.
	e.runc.stopOnTerm = false
	e.create(t, "c2")
	if err := e.m.Start(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Stop(ctx, "c2", 0); err != nil {
		t.Fatal(err)
	}
	if e.runc.live["c2"] != state.Stopped {
		t.Fatalf("c2 not stopped: %v", e.runc.live)
	}
}

func TestListRefreshesOncePerBackend(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"a", "b", "ct-1", "ct-2"} {
		e.create(t, id)
	}
	e.runc.refreshes, e.lxc.refreshes = 0, 0
	cs, err := e.m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 4 {
		t.Fatalf("got %d containers", len(cs))
	}
	if e.runc.refreshes != 1 || e.lxc.refreshes != 1 {
		t.Fatalf("refreshes: runc %d lxc %d", e.runc.refreshes, e.lxc.refreshes)
	}
	backends := map[string]string{}
	for _, c := range cs {
		backends[c.ID] = c.Backend
	}
	if backends["a"] != "runc" || backends["ct-1"] != "proxmox-lxc" {
		t.Fatalf("backends: %v", backends)
	}
}

func TestLazyBackends(t *testing.T) {
	e := newEnv(t)
	built := 0
	e.m.Backends.Register("lxc-counting", func() (runtime.Backend, error) {
		built++
		return nil, errs.New(errs.KindBackend, "pct not found")
	})
	e.create(t, "c1") // runc-routed: must not build other backends
	if built != 0 {
		t.Fatal("an unrelated backend was built")
	}
}

func TestPassthroughUnsupported(t *testing.T) {
	e := newEnv(t)
	e.create(t, "c1")
	_, err := e.m.Passthrough(context.Background(), "c1", "pause", []string{"c1"}, runtime.Stdio{})
	wantKind(t, err, errs.KindUnsupported, 11)
}

func TestDeleteForceDamagedRecord(t *testing.T) {
	ctx := context.Background()
	for name, content := range map[string]string{
		"invalid JSON": "{not json",
		"wrong id":     `{"id":"other","status":"running","backend":"runc"}`,
		"empty":        "",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.create(t, "c1")
			if err := os.WriteFile(filepath.Join(e.root, "c1", "state.json"), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := e.m.Delete(ctx, "c1", false)
			wantKind(t, err, errs.KindState, 10)
			if !strings.Contains(err.Error(), "delete --force") {
				t.Fatalf("hint of %v does not suggest --force", err)
			}
			if ok, _ := e.m.Store.Exists("c1"); !ok {
				t.Fatal("delete without --force removed the damaged record")
			}
			if err := e.m.Delete(ctx, "c1", true); err != nil {
				t.Fatalf("delete --force of a damaged record: %v", err)
			}
			e.assertNoRecord(t, "c1")
			// The id is free again.
			e.create(t, "c1")
		})
	}
}

func TestDeleteForceMissingStateFile(t *testing.T) {
	e := newEnv(t)
	e.create(t, "c1")
	if err := os.Remove(filepath.Join(e.root, "c1", "state.json")); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(context.Background(), "c1", true); err != nil {
		t.Fatalf("delete --force with state.json missing: %v", err)
	}
	e.assertNoRecord(t, "c1")
}

// TestRecordlessContainers: a container of a Recordless backend that has
// no record (the passthrough's delete removed it, the runtime kept the
// container) is found by its runtime state directory: state, list, kill,
// delete work on it and create refuses its id.
func TestRecordlessContainers(t *testing.T) {
	e := newEnv(t)
	e.m.Recordless = []string{"runc"}
	ctx := context.Background()
	if err := os.MkdirAll(e.m.Store.RuntimeDir("runc", "orphan"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.runc.live["orphan"] = state.Running
	c, err := e.m.State(ctx, "orphan")
	if err != nil || c.Backend != "runc" || c.Status != state.Running {
		t.Fatalf("state: %+v %v", c, err)
	}
	cs, err := e.m.List(ctx)
	if err != nil || len(cs) != 1 || cs[0].ID != "orphan" || cs[0].Backend != "runc" {
		t.Fatalf("list: %v %v", cs, err)
	}
	_, err = e.m.Create(ctx, runtime.CreateRequest{ID: "orphan", Runtime: "proxmox-lxc", Options: runtime.CreateOptions{Bundle: "/b/good"}})
	wantKind(t, err, errs.KindAlreadyExists, 4)
	if err := e.m.Kill(ctx, "orphan", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(ctx, "orphan", true); err != nil {
		t.Fatal(err)
	}
	if n := countCalls(e.runc, "delete"); n != 1 {
		t.Fatalf("runtime deletes: %d", n)
	}
	// Without the runtime's directory the id is unknown again.
	if err := os.RemoveAll(e.m.Store.RuntimeDir("runc", "orphan")); err != nil {
		t.Fatal(err)
	}
	_, err = e.m.State(ctx, "orphan")
	wantKind(t, err, errs.KindNotFound, 3)
}

// TestCreateRoutesByBundleAndSandboxRecord: create routes with the
// bundle's annotations, and a pod's container gets the backend recorded
// for its sandbox (Decide, for `nexcage route --bundle`, says the same).
func TestCreateRoutesByBundleAndSandboxRecord(t *testing.T) {
	e := newEnv(t)
	e.create(t, "ct-sb") // routed to proxmox-lxc by its id
	d, err := e.m.Decide("c1", "", "/b/pod-ct-sb")
	if err != nil || d.Backend != "proxmox-lxc" {
		t.Fatalf("Decide for a container of sandbox ct-sb: %+v, %v", d, err)
	}
	c, err := e.m.Create(context.Background(), runtime.CreateRequest{ID: "c1", Options: runtime.CreateOptions{Bundle: "/b/pod-ct-sb"}})
	if err != nil || c.Backend != "proxmox-lxc" {
		t.Fatalf("create of a container of sandbox ct-sb: %+v, %v", c, err)
	}
	// No record for the sandbox: the route function hears "".
	if d, err := e.m.Decide("c2", "", "/b/pod-ct-none"); err != nil || d.Backend != "" {
		t.Fatalf("Decide for a container of an unknown sandbox: %+v, %v", d, err)
	}
	if _, err := e.m.Decide("c1", "", "/b/bad"); errs.KindOf(err) != errs.KindInvalidBundle {
		t.Fatalf("Decide with a bad bundle: %v", err)
	}
}
