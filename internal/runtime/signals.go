package runtime

import (
	"maps"
	"os"
	"os/signal"
	"syscall"

	"github.com/nexcage/nexcage/internal/state"
)

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
