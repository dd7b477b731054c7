package runtime

import (
	"context"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/state"
)

// Factory builds a backend. It is called at most once, the first time a
// container needs the backend, so that a runc-routed command never fails
// because pct is missing (and the other way round).
type Factory func() (Backend, error)

// Registry maps backend names to lazily built backends.
type Registry struct {
	mu        sync.Mutex
	factories map[string]Factory
	built     map[string]Backend
	failed    map[string]error
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{}, built: map[string]Backend{}, failed: map[string]error{}}
}

// Register adds (or replaces) the factory for name.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.factories[name] = f
	delete(r.built, name)
	delete(r.failed, name)
}

// Get returns the backend called name, building it on first use. A build
// failure is remembered and returned again.
func (r *Registry) Get(name string) (Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.built[name]; ok {
		return b, nil
	}
	if err, ok := r.failed[name]; ok {
		return nil, err
	}
	f, ok := r.factories[name]
	if !ok {
		return nil, errs.New(errs.KindUnsupported, "backend %q is not available in this build", name).
			WithHint("use one of: %v", r.namesLocked())
	}
	b, err := f()
	if err != nil {
		r.failed[name] = err
		return nil, err
	}
	r.built[name] = b
	return b, nil
}

func (r *Registry) namesLocked() []string {
	out := make([]string, 0, len(r.factories))
	for n := range r.factories {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Stdio is the caller's standard streams (and inherited descriptors) for
// verbs that hand them to a process, such as exec.
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// ExtraFiles are passed as fds 3, 4, ... (for --preserve-fds).
	ExtraFiles []*os.File
}

// Passthrougher is implemented by backends that can run a runc verb
// (ps, exec, pause, resume, update ...) unchanged against a container.
type Passthrougher interface {
	// Passthrough runs verb with args (the caller's arguments after the
	// verb, including the container id) and returns the exit code.
	Passthrough(ctx context.Context, c *state.Container, verb string, args []string, stdio Stdio) (int, error)
}

// Versioner is implemented by backends that can report the version of the
// tool they drive (for `nexcage version`).
type Versioner interface {
	Version(ctx context.Context) (string, error)
}
