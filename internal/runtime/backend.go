// Package runtime defines the Backend interface every container backend
// implements, and the lifecycle rules shared by all backends.
package runtime

import (
	"context"
	"errors"
	"io"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/state"
)

// CreateOptions carries everything a backend needs to create a container.
type CreateOptions struct {
	// Bundle is the absolute path of the OCI bundle; empty when the
	// container is created from Image alone.
	Bundle string
	// Spec is the bundle's validated config.json; nil when Bundle is empty.
	Spec *specs.Spec
	// Image is the nexcage-style --image argument (template, volume id,
	// bundle directory ...); empty for runc-style create.
	Image string

	PidFile       string
	ConsoleSocket string
	NoPivot       bool
	NoNewKeyring  bool
	PreserveFDs   int

	// Stdio of the caller, handed to the container where the backend can.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// StateDir is the container's own directory in the state store,
	// removed with its record (by delete --force after a crash too):
	// a backend keeps the temporary files of a create or run there, so
	// that nothing it leaves can be found by nobody. Empty: none.
	StateDir string

	// Checkpoint persists c as it is now. Backends call it as soon as they
	// hold a resource that must be cleaned up after a crash (e.g. a VMID),
	// so that `delete --force` can find and release it.
	Checkpoint func(c *state.Container) error
}

// Backend is one way of running containers (runc, crun, Proxmox LXC).
// The caller holds the container's lock around every call.
type Backend interface {
	// Name is the backend's canonical name as stored in state.
	Name() string
	// Create sets the container up without running process.args.
	// c arrives with ID, Bundle, Created, Backend set and status "creating";
	// Create fills Status, Pid and Data. On error it must leave nothing behind.
	Create(ctx context.Context, c *state.Container, opts CreateOptions) error
	// Start runs process.args of a created container.
	Start(ctx context.Context, c *state.Container) error
	// Refresh updates Status and Pid of the given containers in place from
	// the live system, in as few external calls as possible.
	Refresh(ctx context.Context, cs []*state.Container) error
	// Kill sends sig to the container's init (all processes when all).
	Kill(ctx context.Context, c *state.Container, sig syscall.Signal, all bool) error
	// Delete removes everything the backend created for c. Without force it
	// fails on a container that is not stopped or created.
	Delete(ctx context.Context, c *state.Container, force bool) error
}

// Runner is implemented by backends that run a container in the
// foreground themselves (create + start + wait), passing stdio through.
type Runner interface {
	// Run returns the container process's exit code.
	Run(ctx context.Context, c *state.Container, opts CreateOptions, detach bool) (int, error)
}

// LifecycleEnforcer is implemented by backends whose runtime enforces the
// OCI lifecycle rules itself: runc and crun refuse to start a container
// that is not created, to delete one that is not stopped (without force)
// and to signal one that is neither created nor running, and they change
// nothing when they refuse. For such a backend the Manager calls Start,
// Kill and Delete without refreshing the status first (one runtime call
// per verb); only when the call fails does it refresh and, if a rule was
// broken, report it with the same message and kind as for any backend.
// Its runtime is also the one source of the live status (asked by every
// State and List): the record is not rewritten after Start or Kill. A
// backend returning true must leave Status and Pid right after a
// successful Create without a refresh of its own.
type LifecycleEnforcer interface {
	EnforcesLifecycle() bool
}

// enforcesLifecycle tells whether be checks the lifecycle rules itself.
func enforcesLifecycle(be Backend) bool {
	e, ok := be.(LifecycleEnforcer)
	return ok && e.EnforcesLifecycle()
}

// Stopper is implemented by backends with a graceful stop (nexcage `stop`).
type Stopper interface {
	Stop(ctx context.Context, c *state.Container, timeoutSec int) error
}

// Waiter is implemented by backends without a Runner whose containers,
// once created and started by this process, can be waited for: a
// foreground `run` then waits, returns the process's exit code and
// deletes the container, as `runc run` does.
type Waiter interface {
	// Wait blocks until c's process exits and returns its exit code
	// (the Manager relays signals to the container meanwhile, with
	// Kill). It returns ErrCannotWait (and nothing else happens) when c
	// cannot be waited for.
	Wait(ctx context.Context, c *state.Container) (int, error)
}

// ErrCannotWait is returned by Waiter.Wait for a container it cannot
// wait for (e.g. one running a template's own init): `run` then leaves
// it running, as with --detach.
var ErrCannotWait = errors.New("cannot wait for this container in the foreground")

// ErrCleanupIncomplete is wrapped by a Create error when the backend
// could not undo everything it had done: the Manager then keeps the
// container's record (status "creating") so that `delete --force` can
// free the rest, instead of forgetting it.
var ErrCleanupIncomplete = errors.New("cleanup after a failed create is incomplete")
