package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/state"
)

// Decision is where the router sends a container id, and why.
type Decision struct {
	Backend string // canonical backend name
	Reason  string // e.g. "routing rule 1 (^cilium-.*$)"
}

// RouteRequest is what a routing decision is made on.
type RouteRequest struct {
	ID string
	// Override is --runtime ("" routes by config).
	Override string
	// Annotations are the bundle's (nil without a bundle): a Kubernetes
	// pod's identity (io.kubernetes.cri.*).
	Annotations map[string]string
	// SandboxBackend returns the backend recorded for a container id
	// ("" when there is none): a pod's containers follow their sandbox.
	SandboxBackend func(id string) (string, error)
}

// RouteFunc decides which backend a container goes to.
type RouteFunc func(RouteRequest) (Decision, error)

// Manager applies the OCI lifecycle rules shared by all backends: ids are
// validated first, every change happens under the container's lock, the
// bundle is validated before any side effect, and a failed create leaves
// nothing behind.
type Manager struct {
	Store    *state.Store
	Route    RouteFunc
	Backends *Registry
	Log      *slog.Logger
	// LoadBundle loads and validates a bundle; default bundle.Load.
	LoadBundle func(dir string) (*bundle.Bundle, error)
	// Now is the clock used for Created; default time.Now.
	Now func() time.Time
	// PollInterval is how often Stop polls the status; default 100ms.
	PollInterval time.Duration
	// Recordless names the backends (runc, crun) whose containers may have
	// no record in Store: the runtime's own state directory
	// (Store.RuntimeDir) tells that it has the id. The passthrough of
	// internal/fastpath creates such containers; every verb here finds
	// them too.
	Recordless []string
}

// CreateRequest is one create or run call.
type CreateRequest struct {
	ID string
	// Runtime is the --runtime override ("" routes by config).
	Runtime string
	// Options for the backend; Bundle may be relative to the cwd.
	Options CreateOptions
}

func (m *Manager) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Decide routes id without changing any state (for `nexcage route`),
// as create would: with the annotations of the bundle in bundleDir when
// it is not "" (the bundle must load), and the recorded backends of
// pods' sandboxes.
func (m *Manager) Decide(id, override, bundleDir string) (Decision, error) {
	if err := state.ValidateID(id); err != nil {
		return Decision{}, err
	}
	var ann map[string]string
	if bundleDir != "" {
		b, err := m.loadBundle(bundleDir)
		if err != nil {
			return Decision{}, err
		}
		if b.Spec != nil {
			ann = b.Spec.Annotations
		}
	}
	d, err := m.route(id, override, ann)
	if err == nil {
		m.log().Debug("routed", "id", id, "backend", d.Backend, "reason", d.Reason)
	}
	return d, err
}

// route asks m.Route, giving it the sandbox records of m.Store.
func (m *Manager) route(id, override string, ann map[string]string) (Decision, error) {
	return m.Route(RouteRequest{ID: id, Override: override, Annotations: ann, SandboxBackend: m.recordedBackend})
}

// recordedBackend is the backend of container id's state record, "" when
// no such container exists.
func (m *Manager) recordedBackend(id string) (string, error) {
	c, err := m.Store.Load(id)
	if errs.KindOf(err) == errs.KindNotFound {
		return m.Store.RuntimeOwner(id, m.Recordless...)
	}
	if err != nil {
		return "", err
	}
	return c.Backend, nil
}

// loadBundle loads and validates the bundle in dir (relative to the cwd).
func (m *Manager) loadBundle(dir string) (*bundle.Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidBundle, err, "cannot resolve bundle path %s", dir)
	}
	load := m.LoadBundle
	if load == nil {
		load = bundle.Load
	}
	return load(abs)
}

// prepare validates a create request and builds the record and options
// without side effects.
func (m *Manager) prepare(req CreateRequest) (*state.Container, Backend, CreateOptions, error) {
	opts := req.Options
	c := &state.Container{ID: req.ID, Status: state.Creating, Image: opts.Image, Nonce: newNonce()}
	// The bundle first: its annotations (a Kubernetes pod's identity)
	// take part in routing.
	if opts.Bundle != "" {
		b, err := m.loadBundle(opts.Bundle)
		if err != nil {
			return nil, nil, opts, err
		}
		for _, w := range b.Warnings {
			m.log().Warn(w, "id", req.ID, "bundle", b.Dir)
		}
		opts.Bundle, opts.Spec = b.Dir, b.Spec
		c.Bundle, c.Rootfs = b.Dir, b.Rootfs
		if b.Spec != nil {
			c.OCIVersion = b.Spec.Version
			c.Annotations = b.Spec.Annotations
		}
	}
	d, err := m.route(req.ID, req.Runtime, c.Annotations)
	if err != nil {
		return nil, nil, opts, err
	}
	c.Backend = d.Backend
	be, err := m.Backends.Get(d.Backend)
	if err != nil {
		return nil, nil, opts, err
	}
	if opts.Bundle == "" && opts.Image == "" {
		return nil, nil, opts, errs.New(errs.KindUsage, "create %s: no bundle or image given", req.ID).
			WithHint("pass --bundle <dir> or --image <template>")
	}
	c.Created = m.now().UTC()
	m.log().Debug("routed", "id", req.ID, "backend", d.Backend, "reason", d.Reason)
	return c, be, opts, nil
}

// newNonce is a record's creation nonce (128 random bits, hex).
func newNonce() string {
	r := make([]byte, 16)
	if _, err := rand.Read(r); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(r)
}

// lock validates id and takes its lock.
func (m *Manager) lock(ctx context.Context, id string) (*state.Lock, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	return m.Store.Lock(ctx, id)
}

func unlock(l *state.Lock, log *slog.Logger) {
	if err := l.Unlock(); err != nil {
		log.Warn("unlock failed", "err", err)
	}
}

// Create sets a container up without running its process.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (*state.Container, error) {
	l, err := m.lock(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	defer unlock(l, m.log())
	c, be, opts, err := m.beginCreate(req)
	if err != nil {
		return nil, err
	}
	if err := be.Create(ctx, c, opts); err != nil {
		m.failedCreate(c, err)
		return nil, err
	}
	if err := m.Store.Save(c); err != nil {
		// Cleanup runs even when ctx was cancelled.
		if derr := be.Delete(context.WithoutCancel(ctx), c, true); derr != nil {
			m.log().Error("cleanup after failed save", "id", c.ID, "err", derr)
		}
		m.forget(c)
		return nil, err
	}
	m.log().Info("created", "id", c.ID, "backend", c.Backend, "pid", c.Pid)
	return c, nil
}

// beginCreate refuses an existing id, prepares the record and saves it as
// "creating" so that a crash leaves something `delete --force` can find.
// The caller holds the lock.
func (m *Manager) beginCreate(req CreateRequest) (*state.Container, Backend, CreateOptions, error) {
	exists, err := m.Store.Exists(req.ID)
	if err != nil {
		return nil, nil, req.Options, err
	}
	if !exists {
		owner, err := m.Store.RuntimeOwner(req.ID, m.Recordless...)
		if err != nil {
			return nil, nil, req.Options, err
		}
		exists = owner != ""
	}
	if exists {
		return nil, nil, req.Options, errs.New(errs.KindAlreadyExists, "container with given ID already exists: %s", req.ID).
			WithHint("pick another id or run `nexcage delete --force %s`", req.ID)
	}
	c, be, opts, err := m.prepare(req)
	if err != nil {
		return nil, nil, opts, err
	}
	if err := m.Store.Save(c); err != nil {
		return nil, nil, opts, err
	}
	opts.Checkpoint = m.Store.Save
	if opts.StateDir, err = m.Store.Dir(c.ID); err != nil {
		return nil, nil, opts, err
	}
	return c, be, opts, nil
}

// failedCreate removes c's record after a failed create, unless the
// backend could not undo everything (ErrCleanupIncomplete): then the
// record stays, status "creating", for `delete --force`.
func (m *Manager) failedCreate(c *state.Container, err error) {
	if errors.Is(err, ErrCleanupIncomplete) {
		if serr := m.Store.Save(c); serr != nil {
			m.log().Error("cannot keep the record of a create whose undo is incomplete", "id", c.ID, "err", serr)
		}
		return
	}
	m.forget(c)
}

// forget removes c's record after a failed create.
func (m *Manager) forget(c *state.Container) {
	if err := m.Store.Remove(c.ID); err != nil {
		m.log().Error("cannot remove state after failed create", "id", c.ID, "err", err)
	}
}

// Run creates and starts a container. Without detach it waits for the
// container's process and returns its exit code; the container is deleted
// when it exits.
func (m *Manager) Run(ctx context.Context, req CreateRequest, detach bool) (int, error) {
	l, err := m.lock(ctx, req.ID)
	if err != nil {
		return 0, err
	}
	c, be, opts, err := m.beginCreate(req)
	if err != nil {
		unlock(l, m.log())
		return 0, err
	}
	runner, ok := be.(Runner)
	if !ok {
		// Create + Start under the lock; a foreground wait needs a
		// Runner or a Waiter.
		w, canWait := be.(Waiter)
		var sigs *signalRelay
		if canWait && !detach {
			sigs = catchSignals()
			defer sigs.stop()
		}
		// SIGINT/SIGTERM during create cancel it (its undo runs); the
		// other signals wait for the container.
		cctx, endCreate := sigs.cancelCreate(ctx)
		err := m.createStart(cctx, c, be, opts)
		sig, pending := endCreate()
		unlock(l, m.log())
		if err != nil {
			return 0, Interrupt(sig, err)
		}
		if sig != 0 {
			// Too late to cancel: the container runs and gets it.
			pending = append([]os.Signal{sig}, pending...)
		}
		if detach {
			return 0, nil
		}
		if canWait {
			return m.waitAndDelete(ctx, c, be, w, sigs, pending)
		}
		m.log().Warn("backend cannot run in the foreground; container left running", "id", c.ID, "backend", c.Backend)
		return 0, nil
	}
	// The lock is released while the container runs so that state, kill
	// and delete work from other processes meanwhile.
	unlock(l, m.log())
	code, runErr := runner.Run(ctx, c, opts, detach)
	l, err = m.Store.Lock(context.WithoutCancel(ctx), req.ID)
	if err != nil {
		return code, errors.Join(runErr, err)
	}
	defer unlock(l, m.log())
	if runErr != nil || !detach {
		// Failed, or finished in the foreground: the runtime removed the
		// container (after a failure, what it left is deleted here), so
		// remove our record too. Only ours: the id may have been deleted
		// and created again meanwhile, and that container is not touched.
		m.forgetOwn(context.WithoutCancel(ctx), c, be, runErr != nil)
		return code, runErr
	}
	if err := m.Store.Save(c); err != nil {
		return code, err
	}
	return code, nil
}

// forgetOwn removes the record of id only when it is still c's (same
// creation nonce), first deleting (force) what the backend may have left
// of it when cleanup is set. The caller holds the lock.
func (m *Manager) forgetOwn(ctx context.Context, c *state.Container, be Backend, cleanup bool) {
	cur, err := m.Store.Load(c.ID)
	if err != nil {
		if errs.KindOf(err) != errs.KindNotFound {
			m.log().Warn("cannot read the record to remove", "id", c.ID, "err", err)
		}
		return
	}
	if cur.Nonce != c.Nonce {
		m.log().Warn("the id now names another container (created after this one was deleted); its record stays", "id", c.ID)
		return
	}
	if cleanup {
		if err := be.Delete(ctx, cur, true); err != nil {
			m.log().Error("cleanup after a failed run", "id", c.ID, "err", err)
		}
	}
	m.forget(c)
}

// createStart creates and starts c for Run; the caller holds the lock.
// On failure nothing is left.
func (m *Manager) createStart(ctx context.Context, c *state.Container, be Backend, opts CreateOptions) error {
	if err := be.Create(ctx, c, opts); err != nil {
		m.failedCreate(c, err)
		return err
	}
	if err := be.Start(ctx, c); err != nil {
		// Cleanup runs even when ctx was cancelled.
		if derr := be.Delete(context.WithoutCancel(ctx), c, true); derr != nil {
			m.log().Error("cleanup after failed start", "id", c.ID, "err", derr)
		}
		m.forget(c)
		return err
	}
	return m.Store.Save(c)
}

// waitAndDelete waits (without the lock, so that state, kill and delete
// work meanwhile) for c's process, relaying the signals sigs caught to
// its init, and then deletes c, as `runc run` removes its container when
// the process exits. A container that cannot be waited for is left
// running.
//
// Only the container this run created is deleted: a record under the same
// id with another creation nonce is a newer container (this one was
// deleted and the id created again while the lock was free); it is left
// alone.
func (m *Manager) waitAndDelete(ctx context.Context, c *state.Container, be Backend, w Waiter, sigs *signalRelay, pending []os.Signal) (int, error) {
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := w.Wait(ctx, c)
		done <- result{code, err}
	}()
	relay := func(s os.Signal) {
		sig := s.(syscall.Signal)
		if err := be.Kill(ctx, copyOf(c), sig, false); err != nil {
			m.log().Debug("signal not relayed", "id", c.ID, "signal", sig, "err", err)
		}
	}
	for _, s := range pending {
		relay(s)
	}
	var res result
	for waiting := true; waiting; {
		select {
		case res = <-done:
			waiting = false
		case s := <-sigs.ch:
			relay(s)
		}
	}
	code, werr := res.code, res.err
	if errors.Is(werr, ErrCannotWait) {
		m.log().Warn("container cannot be waited for; left running", "id", c.ID, "backend", c.Backend)
		return 0, nil
	}
	// Clean up also when the wait was interrupted: the container belongs
	// to this run.
	dctx := context.WithoutCancel(ctx)
	l, err := m.Store.Lock(dctx, c.ID)
	if err != nil {
		return code, errors.Join(werr, err)
	}
	defer unlock(l, m.log())
	cur, err := m.Store.Load(c.ID)
	if errs.KindOf(err) == errs.KindNotFound {
		return code, werr // deleted by someone else meanwhile
	}
	if err != nil {
		return code, errors.Join(werr, err)
	}
	if cur.Nonce != c.Nonce {
		m.log().Warn("the id now names another container (created after this run's was deleted); leaving it", "id", c.ID)
		return code, werr
	}
	if err := be.Delete(dctx, cur, true); err != nil {
		return code, errors.Join(werr, err)
	}
	m.forget(cur)
	m.log().Info("run finished", "id", c.ID, "exit_code", code)
	return code, werr
}

// load reads c's record and gets its backend, without asking the backend
// for the live status (see refresh).
func (m *Manager) load(id string) (*state.Container, Backend, error) {
	c, err := m.Store.Load(id)
	if errs.KindOf(err) == errs.KindNotFound {
		if a, aerr := m.adopt(id); aerr != nil {
			return nil, nil, aerr
		} else if a != nil {
			c, err = a, nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	be, err := m.Backends.Get(c.Backend)
	if err != nil {
		return c, nil, err
	}
	return c, be, nil
}

// adopt returns the container id of a Recordless backend that has no
// record (its status and the rest come with the backend's Refresh), or
// nil when no such runtime has the id.
func (m *Manager) adopt(id string) (*state.Container, error) {
	owner, err := m.Store.RuntimeOwner(id, m.Recordless...)
	if err != nil || owner == "" {
		return nil, err
	}
	return &state.Container{ID: id, Backend: owner, Status: state.Created}, nil
}

// loadLive reads c and refreshes its live status.
func (m *Manager) loadLive(ctx context.Context, id string) (*state.Container, Backend, error) {
	c, be, err := m.load(id)
	if err != nil {
		return c, be, err
	}
	if err := be.Refresh(ctx, []*state.Container{c}); err != nil {
		return c, be, err
	}
	return c, be, nil
}

// State returns the container with its live status.
func (m *Manager) State(ctx context.Context, id string) (*state.Container, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	c, _, err := m.loadLive(ctx, id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// The lifecycle rules: each returns the error for the operation on a
// container in c's status, or nil when the operation is allowed. The words
// are runc's, which containerd recognises.

func startRule(c *state.Container) error {
	switch c.Status {
	case state.Created:
		return nil
	case state.Stopped:
		return errs.New(errs.KindState, "cannot start a container that has stopped: %s", c.ID).
			WithHint("delete it and create it again")
	case state.Running:
		return errs.New(errs.KindState, "cannot start an already running container: %s", c.ID)
	}
	return errs.New(errs.KindState, "cannot start a container in the %s state: %s", c.Status, c.ID)
}

func killRule(c *state.Container) error {
	switch c.Status {
	case state.Created, state.Running, state.Paused:
		return nil
	}
	return errs.New(errs.KindState, "container not running: %s is %s", c.ID, c.Status)
}

func deleteRule(c *state.Container) error {
	switch c.Status {
	case state.Stopped, state.Created, state.Creating:
		return nil
	}
	return errs.New(errs.KindState, "cannot delete container %s that is not stopped: %s", c.ID, c.Status).
		WithHint("stop or kill it first, or use delete --force")
}

// checkFirst refreshes c and applies rule before an operation, for a
// backend that does not enforce the lifecycle itself; for one that does
// it does nothing (see LifecycleEnforcer).
func checkFirst(ctx context.Context, be Backend, c *state.Container, rule func(*state.Container) error) error {
	if enforcesLifecycle(be) {
		return nil
	}
	if err := be.Refresh(ctx, []*state.Container{c}); err != nil {
		return err
	}
	return rule(c)
}

// explain returns the error for an operation that failed with err: when
// the backend enforces the lifecycle itself and the refreshed status breaks
// rule, the rule's error (so that a refusal reads the same on every
// backend and runtime); else err.
func (m *Manager) explain(ctx context.Context, be Backend, c *state.Container, rule func(*state.Container) error, err error) error {
	if !enforcesLifecycle(be) {
		return err
	}
	if rerr := be.Refresh(ctx, []*state.Container{c}); rerr != nil {
		m.log().Debug("cannot refresh after a failed operation", "id", c.ID, "err", rerr)
		return err
	}
	if rerr := rule(c); rerr != nil {
		m.log().Debug("runtime refused", "id", c.ID, "err", err)
		return rerr
	}
	return err
}

// Start runs the process of a created container.
func (m *Manager) Start(ctx context.Context, id string) error {
	return m.act(ctx, id, startRule, func(be Backend, c *state.Container) error {
		if err := be.Start(ctx, c); err != nil {
			return err
		}
		m.log().Info("started", "id", id, "pid", c.Pid)
		return nil
	})
}

// Kill sends sig to a created or running container.
func (m *Manager) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	return m.act(ctx, id, killRule, func(be Backend, c *state.Container) error {
		if err := be.Kill(ctx, c, sig, all); err != nil {
			return err
		}
		m.log().Info("signalled", "id", id, "signal", int(sig))
		return nil
	})
}

// act runs op on id's container under its lock. rule is checked first
// unless the backend enforces the lifecycle itself, in which case a refusal
// of op is explained with rule afterwards. The record is saved unless such
// a runtime keeps the live status: it is asked on every read, and the
// record goes stale anyway when the process exits on its own.
func (m *Manager) act(ctx context.Context, id string, rule func(*state.Container) error, op func(Backend, *state.Container) error) error {
	l, err := m.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock(l, m.log())
	c, be, err := m.load(id)
	if err != nil {
		return err
	}
	if err := checkFirst(ctx, be, c, rule); err != nil {
		return err
	}
	if err := op(be, c); err != nil {
		return m.explain(ctx, be, c, rule, err)
	}
	if enforcesLifecycle(be) {
		return nil
	}
	return m.Store.Save(c)
}

// Delete removes a stopped (or created) container; force kills it first.
// Deleting a missing container with force succeeds, as with runc.
func (m *Manager) Delete(ctx context.Context, id string, force bool) error {
	l, err := m.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock(l, m.log())
	c, be, err := m.load(id)
	if err == nil && !enforcesLifecycle(be) {
		err = be.Refresh(ctx, []*state.Container{c})
	}
	if err != nil {
		if force && errs.KindOf(err) == errs.KindNotFound && c == nil {
			return nil
		}
		if force && errs.KindOf(err) == errs.KindState && c == nil {
			return m.removeDamaged(ctx, id, err)
		}
		if c == nil || !force {
			return err
		}
		// A backend that cannot be built or refreshed must not keep a
		// forced delete from removing our record.
		m.log().Warn("deleting record of a container whose backend failed", "id", id, "err", err)
		if be != nil {
			if derr := be.Delete(ctx, c, true); derr != nil {
				m.log().Warn("backend delete failed", "id", id, "err", derr)
			}
		}
		return m.Store.Remove(id)
	}
	if !force && !enforcesLifecycle(be) {
		if err := deleteRule(c); err != nil {
			return err
		}
	}
	if err := be.Delete(ctx, c, force); err != nil {
		if force || !enforcesLifecycle(be) {
			return err
		}
		if err = m.explain(ctx, be, c, deleteRule, err); errs.KindOf(err) == errs.KindState {
			return err
		}
		// The runtime refused, yet the container is stopped now: it may
		// have exited between the two calls. Once more, so that the
		// outcome is the one a check-then-delete would have had.
		if err := be.Delete(ctx, c, false); err != nil {
			return err
		}
	}
	m.log().Info("deleted", "id", id)
	return m.Store.Remove(id)
}

// removeDamaged removes the record of id whose state file cannot be read
// (delete --force). A runc or crun container of that id (a Recordless
// backend's state directory) is deleted too; for the other backends we
// cannot tell without the record, so the warning names where leftovers
// could be. The caller holds id's lock.
func (m *Manager) removeDamaged(ctx context.Context, id string, loadErr error) error {
	if c, err := m.adopt(id); err == nil && c != nil {
		if be, err := m.Backends.Get(c.Backend); err == nil {
			if derr := be.Delete(ctx, c, true); derr != nil {
				m.log().Warn("cannot delete the container of a damaged record", "id", id, "backend", c.Backend, "err", derr)
			}
		}
	}
	m.log().Warn("removing damaged container record; backend resources may remain",
		"id", id, "err", loadErr,
		"check", fmt.Sprintf("runc --root %s list; crun --root %s list; pct list (a container tagged nexcage whose hostname starts with %s)",
			m.Store.BackendRoot("runc"), m.Store.BackendRoot("crun"), id))
	if err := m.Store.Remove(id); err != nil {
		return err
	}
	m.log().Info("deleted", "id", id)
	return nil
}

// Stop stops a container gracefully: the backend's Stop when it has one,
// else SIGTERM, then SIGKILL after timeout.
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	l, err := m.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock(l, m.log())
	c, be, err := m.loadLive(ctx, id)
	if err != nil {
		return err
	}
	if c.Status == state.Stopped {
		return nil
	}
	if s, ok := be.(Stopper); ok {
		if err := s.Stop(ctx, c, int(timeout/time.Second)); err != nil {
			return err
		}
		return m.Store.Save(c)
	}
	if err := m.signalAndWait(ctx, be, c, syscall.SIGTERM, timeout); err != nil {
		return err
	}
	if c.Status != state.Stopped {
		m.log().Warn("container did not stop in time, killing", "id", id, "timeout", timeout)
		if err := m.signalAndWait(ctx, be, c, syscall.SIGKILL, 10*time.Second); err != nil {
			return err
		}
		if c.Status != state.Stopped {
			return errs.New(errs.KindTimeout, "container %s did not stop after SIGKILL", id)
		}
	}
	return m.Store.Save(c)
}

func (m *Manager) signalAndWait(ctx context.Context, be Backend, c *state.Container, sig syscall.Signal, timeout time.Duration) error {
	if err := be.Kill(ctx, c, sig, true); err != nil {
		if rerr := be.Refresh(ctx, []*state.Container{c}); rerr == nil && c.Status == state.Stopped {
			return nil
		}
		return err
	}
	interval := m.PollInterval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := be.Refresh(ctx, []*state.Container{c}); err != nil {
			return err
		}
		if c.Status == state.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return errs.Wrap(errs.KindTimeout, ctx.Err(), "stop %s", c.ID)
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
	}
}

// List returns all containers, refreshed with one Refresh call per
// backend. A backend that cannot be built keeps its containers' stored
// status (a warning is logged) rather than failing the whole list.
func (m *Manager) List(ctx context.Context) ([]*state.Container, error) {
	cs, err := m.Store.List()
	if err != nil {
		return nil, err
	}
	if cs, err = m.withRecordless(cs); err != nil {
		return nil, err
	}
	groups := map[string][]*state.Container{}
	var order []string
	for _, c := range cs {
		if _, ok := groups[c.Backend]; !ok {
			order = append(order, c.Backend)
		}
		groups[c.Backend] = append(groups[c.Backend], c)
	}
	for _, name := range order {
		be, err := m.Backends.Get(name)
		if err == nil {
			err = be.Refresh(ctx, groups[name])
		}
		if err != nil {
			m.log().Warn("cannot refresh containers; showing stored status", "backend", name, "err", err)
		}
	}
	return cs, nil
}

// withRecordless adds to cs (sorted by id) the containers of the
// Recordless backends that have no record.
func (m *Manager) withRecordless(cs []*state.Container) ([]*state.Container, error) {
	if len(m.Recordless) == 0 {
		return cs, nil
	}
	known := make(map[string]bool, len(cs))
	for _, c := range cs {
		known[c.ID] = true
	}
	added := false
	for _, name := range m.Recordless {
		ids, err := m.Store.RuntimeIDs(name)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if !known[id] {
				known[id] = true
				cs = append(cs, &state.Container{ID: id, Backend: name, Status: state.Created})
				added = true
			}
		}
	}
	if added {
		sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	}
	return cs, nil
}

// Passthrough runs a runc verb unchanged for a container whose backend
// supports it and returns the exit code.
func (m *Manager) Passthrough(ctx context.Context, id, verb string, args []string, stdio Stdio) (int, error) {
	if err := state.ValidateID(id); err != nil {
		return 0, err
	}
	c, be, err := m.load(id)
	if err != nil {
		return 0, err
	}
	p, ok := be.(Passthrougher)
	if !ok {
		return 0, errs.New(errs.KindUnsupported, "%s is not supported for container %s on the %s backend", verb, id, c.Backend)
	}
	return p.Passthrough(ctx, c, verb, args, stdio)
}
