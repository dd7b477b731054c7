package proxmox

import (
	"context"
	"os"
	"syscall"

	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

var _ runtime.Waiter = (*Backend)(nil)

// supervisorExit is how a supervisor started by this process ended:
// state is set before done closes.
type supervisorExit struct {
	done  chan struct{}
	state *os.ProcessState
}

// Wait waits for a supervised container created by this process: its
// supervisor lives as long as the container and exits with the process's
// status (128+n after signal n when the status itself is lost). Signals
// this process receives meanwhile are sent to the container's init.
// Containers without the init helper (a template's own init) and those
// created by another process cannot be waited for.
func (b *Backend) Wait(ctx context.Context, c *state.Container) (int, error) {
	v, ok := b.supervisors.Load(c.ID)
	if !supervised(c) || !ok {
		return 0, runtime.ErrCannotWait
	}
	exit := v.(*supervisorExit)
	select {
	case <-exit.done:
		b.supervisors.Delete(c.ID)
		return exitCode(exit.state), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// exitCode is a shell-style exit code of a finished process.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
