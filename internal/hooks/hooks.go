// Package hooks runs OCI hooks (runtime-spec config.md "POSIX-platform
// Hooks") on the host, for backends that do not hand them to a runtime
// that runs them itself (runc and crun do; the Proxmox backend does not).
//
// A hook is run as the runtime-spec says: path executed with args as its
// argv (argv[0] included; [path] when args is empty), env as its
// environment, the container's state JSON on stdin, killed after timeout
// seconds when it sets one; hooks of one kind run in the listed order and
// the first failure stops the list.
//
// Environment: a hook without env inherits nexcage's environment, as runc
// does (containerd's hooks are written against runc). Its stdout and
// stderr are captured (bounded) for the error and the debug log; they are
// never connected to the container's stdio.
//
// A hook's path comes from the bundle's config.json: before it runs it must
// pass internal/trust (the file and every directory and symlink to it
// owned by root or the caller and not writable by group or others), so no
// local user can plant or change what root runs (docs/SECURITY.md).
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/trust"
)

// Kinds of hooks, as config.json names them.
const (
	Prestart        = "prestart"
	CreateRuntime   = "createRuntime"
	CreateContainer = "createContainer"
	StartContainer  = "startContainer"
	Poststart       = "poststart"
	Poststop        = "poststop"
)

// maxOutput bounds the output of a hook kept for its error message.
const maxOutput = 4 << 10

// waitDelay bounds the wait for a hook's output pipes after it exited or
// was killed: a process it left behind (a daemon) may hold them open.
const waitDelay = 2 * time.Second

// Runner runs hooks. The zero value checks paths with trust.File and logs
// nowhere.
type Runner struct {
	// Log receives a debug line per hook run (with its output).
	Log *slog.Logger
	// Check decides whether a hook's path may be run; nil is trust.File.
	Check func(path string) error
}

// Failure is the error of a hook that could not be run, failed or timed
// out.
type Failure struct {
	Kind   string // "prestart", ...
	Index  int    // its index in the list
	Path   string
	Err    error  // exec's error, the timeout, or the trust refusal
	Output string // its stdout and stderr (bounded)
}

func (f *Failure) Error() string {
	s := fmt.Sprintf("%s hook #%d (%s) failed: %v", f.Kind, f.Index, f.Path, f.Err)
	if o := strings.TrimSpace(f.Output); o != "" {
		s += "; its output: " + o
	}
	return s
}

func (f *Failure) Unwrap() error { return f.Err }

// CheckAll verifies, before anything is created, that every hook of h
// that runs on the host has a path that may be run (see Runner.Check):
// all but startContainer, whose path resolves in the container. The error
// names the hook.
func (r *Runner) CheckAll(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	for _, l := range Lists(h) {
		if l.Kind == StartContainer {
			continue
		}
		for i, hk := range l.Hooks {
			if err := r.check(hk.Path); err != nil {
				return errs.Wrap(errs.KindInvalidBundle, err, "hooks.%s[%d]: %s may not be run as root on the host", l.Kind, i, hk.Path).
					WithHint("a hook runs as root on the host: it must be root's file in root's directories, not writable by others (docs/SECURITY.md)")
			}
		}
	}
	return nil
}

// List is the hooks of one kind.
type List struct {
	Kind  string
	Hooks []specs.Hook
}

// Lists returns the non-empty hook lists of h in lifecycle order.
func Lists(h *specs.Hooks) []List {
	if h == nil {
		return nil
	}
	//lint:ignore SA1019 the deprecated prestart hooks are still run
	pre := h.Prestart
	all := []List{{Prestart, pre}, {CreateRuntime, h.CreateRuntime}, {CreateContainer, h.CreateContainer},
		{StartContainer, h.StartContainer}, {Poststart, h.Poststart}, {Poststop, h.Poststop}}
	out := all[:0]
	for _, l := range all {
		if len(l.Hooks) > 0 {
			out = append(out, l)
		}
	}
	return out
}

func (r *Runner) check(path string) error {
	if r.Check != nil {
		return r.Check(path)
	}
	return trust.File(path)
}

// Run runs the hooks of one kind in order, each with st as JSON on its
// stdin, and returns the first failure (a *Failure inside an errs.Error:
// KindTimeout for a timeout, KindInvalidBundle for an untrusted path,
// KindBackend otherwise). The rest of the list does not run after a
// failure.
func (r *Runner) Run(ctx context.Context, kind string, list []specs.Hook, st specs.State) error {
	if len(list) == 0 {
		return nil
	}
	in, err := json.Marshal(st)
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "cannot encode the state for the %s hooks", kind)
	}
	for i, h := range list {
		if err := r.runOne(ctx, kind, i, h, in); err != nil {
			return err
		}
	}
	return nil
}

// RunAll runs every hook of the list, logging each failure as a warning
// instead of stopping (poststart and poststop: "the runtime MUST log a
// warning, but the remaining hooks and lifecycle continue"). It returns
// the failures.
func (r *Runner) RunAll(ctx context.Context, kind string, list []specs.Hook, st specs.State) []error {
	in, err := json.Marshal(st)
	if err != nil {
		return []error{err}
	}
	var failed []error
	for i, h := range list {
		if err := r.runOne(ctx, kind, i, h, in); err != nil {
			if r.Log != nil {
				r.Log.Warn("hook failed; continuing as the runtime-spec says", "id", st.ID, "err", err)
			}
			failed = append(failed, err)
		}
	}
	return failed
}

func (r *Runner) runOne(ctx context.Context, kind string, i int, h specs.Hook, stdin []byte) error {
	if err := r.check(h.Path); err != nil {
		return wrap(errs.KindInvalidBundle, &Failure{Kind: kind, Index: i, Path: h.Path, Err: err})
	}
	if h.Timeout != nil && *h.Timeout <= 0 {
		return wrap(errs.KindInvalidBundle, &Failure{Kind: kind, Index: i, Path: h.Path, Err: fmt.Errorf("timeout %d is not positive", *h.Timeout)})
	}
	hctx := ctx
	var timeout time.Duration
	if h.Timeout != nil {
		timeout = time.Duration(*h.Timeout) * time.Second
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(hctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = append([]string(nil), h.Args...)
	}
	if h.Env != nil {
		cmd.Env = append([]string{}, h.Env...)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	out := &boundedBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed as a whole on timeout: `sh -c` and
	// what it started go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	start := time.Now()
	err := cmd.Run()
	if r.Log != nil {
		r.Log.Debug("hook ran", "kind", kind, "index", i, "path", h.Path, "took", time.Since(start).Round(time.Millisecond), "err", err, "output", out.String())
	}
	if err == nil || errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	if timeout > 0 && errors.Is(hctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return wrap(errs.KindTimeout, &Failure{Kind: kind, Index: i, Path: h.Path, Err: fmt.Errorf("killed after its timeout of %v", timeout), Output: out.String()})
	}
	if ctx.Err() != nil {
		return wrap(errs.KindBackend, &Failure{Kind: kind, Index: i, Path: h.Path, Err: fmt.Errorf("interrupted: %w", ctx.Err()), Output: out.String()})
	}
	return wrap(errs.KindBackend, &Failure{Kind: kind, Index: i, Path: h.Path, Err: err, Output: out.String()})
}

// wrap gives a failure its kind (the exit code); its text is the
// failure's own.
func wrap(k errs.Kind, f *Failure) error {
	return &errs.Error{Kind: k, Err: f}
}

// boundedBuffer keeps the first max bytes written to it.
type boundedBuffer struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
			b.cut = true
		} else {
			b.buf.Write(p)
		}
	} else if len(p) > 0 {
		b.cut = true
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	if b.cut {
		return b.buf.String() + " […]"
	}
	return b.buf.String()
}
