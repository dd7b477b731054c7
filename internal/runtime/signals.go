package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"syscall"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/state"
)

// Interrupted is the error of an operation that SIGINT or SIGTERM
// cancelled, returned after its undo steps ran. nexcage exits with
// 128+Signal for it, as a shell reports a process killed by that signal
// (130 for SIGINT, 143 for SIGTERM).
type Interrupted struct {
	Signal syscall.Signal
	Err    error // what the cancelled operation returned, if anything
}

func (e *Interrupted) Error() string {
	s := fmt.Sprintf("interrupted by %s", signalName(e.Signal))
	if e.Err != nil && !errors.Is(e.Err, context.Canceled) {
		s += "; " + e.Err.Error()
	}
	return s
}

// Unwrap returns the operation's own error.
func (e *Interrupted) Unwrap() error { return e.Err }

// ExitCode is 128 + the signal's number.
func (e *Interrupted) ExitCode() int { return 128 + int(e.Signal) }

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// ExitCode is the exit status for err: 128+n for an Interrupted by
// signal n, else the error kind's code (docs/CLI.md).
func ExitCode(err error) int {
	var in *Interrupted
	if errors.As(err, &in) {
		return in.ExitCode()
	}
	return errs.ExitCode(err)
}

// cancelSignals are the signals that cancel a create (and the create
// part of a run): the undo steps then run and nexcage exits 128+n.
var cancelSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}

// WithInterrupt returns a context cancelled when the process receives
// SIGINT or SIGTERM, and a stop function that restores the default
// handling and returns the signal received, if any. Wrap the error of
// the operation run on ctx with Interrupted when the signal is non-zero.
func WithInterrupt(parent context.Context) (context.Context, func() syscall.Signal) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, cancelSignals...)
	got := make(chan syscall.Signal, 1)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			// A second signal ends nexcage at once (default action), in
			// case the undo hangs; the record stays for delete --force.
			signal.Stop(ch)
			got <- s.(syscall.Signal)
			cancel()
		case <-done:
			got <- 0
		}
	}()
	return ctx, func() syscall.Signal {
		signal.Stop(ch)
		close(done)
		s := <-got
		cancel()
		return s
	}
}

// Interrupt wraps err in an Interrupted when sig is non-zero.
func Interrupt(sig syscall.Signal, err error) error {
	if sig == 0 {
		return err
	}
	return &Interrupted{Signal: sig, Err: err}
}

// relayedSignals are the signals a foreground run relays to the
// container's init (as runc run does), so that Ctrl-C or `kill <nexcage
// pid>` reaches the container.
var relayedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// signalRelay catches relayedSignals from before create until the run
// ends, so that none arriving between start and the wait is lost (or
// kills nexcage instead of reaching the container).
type signalRelay struct {
	ch chan os.Signal
}

func catchSignals() *signalRelay {
	r := &signalRelay{ch: make(chan os.Signal, 16)}
	signal.Notify(r.ch, relayedSignals...)
	return r
}

// cancelCreate returns a context cancelled by the first SIGINT or
// SIGTERM the relay catches, for the create part of a foreground run, and
// a function that ends this and returns that signal (0 when none) and the
// other signals caught meanwhile, to relay to the container once it runs.
// On a nil relay (detached run: the caller handles signals) it returns
// parent unchanged.
func (r *signalRelay) cancelCreate(parent context.Context) (context.Context, func() (syscall.Signal, []os.Signal)) {
	if r == nil {
		return parent, func() (syscall.Signal, []os.Signal) { return 0, nil }
	}
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	type result struct {
		sig     syscall.Signal
		pending []os.Signal
	}
	out := make(chan result, 1)
	go func() {
		var res result
		for {
			select {
			case s := <-r.ch:
				if sig := s.(syscall.Signal); res.sig == 0 && (sig == syscall.SIGINT || sig == syscall.SIGTERM) {
					res.sig = sig
					// A second signal ends nexcage at once while the
					// undo runs; relaying resumes if the create won.
					signal.Stop(r.ch)
					cancel()
				} else {
					res.pending = append(res.pending, s)
				}
			case <-done:
				out <- res
				return
			}
		}
	}()
	return ctx, func() (syscall.Signal, []os.Signal) {
		close(done)
		res := <-out
		cancel()
		if res.sig != 0 {
			signal.Notify(r.ch, relayedSignals...)
		}
		return res.sig, res.pending
	}
}

// stop restores the default handling.
func (r *signalRelay) stop() {
	if r != nil {
		signal.Stop(r.ch)
	}
}

// copyOf is a copy of c that a backend call may change while c is in use
// elsewhere (Kill refreshes its argument during a Wait).
func copyOf(c *state.Container) *state.Container {
	cp := *c
	cp.Data = maps.Clone(c.Data)
	cp.Annotations = maps.Clone(c.Annotations)
	return &cp
}
