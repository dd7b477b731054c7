package proxmox

import (
	"context"
	"errors"
	"os/exec"
	"testing"

	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// Wait reports the exit of the supervisor this process started: its code,
// or 128+n after signal n; containers without one cannot be waited for.
func TestWait(t *testing.T) {
	b := &Backend{}
	ctx := context.Background()
	tmpl := &state.Container{ID: "t", Data: map[string]string{DataVMID: "100"}}
	if _, err := b.Wait(ctx, tmpl); !errors.Is(err, runtime.ErrCannotWait) {
		t.Errorf("template container: %v, want ErrCannotWait", err)
	}
	other := &state.Container{ID: "o", Data: map[string]string{DataVMID: "101", DataHelperDir: "/x"}}
	if _, err := b.Wait(ctx, other); !errors.Is(err, runtime.ErrCannotWait) {
		t.Errorf("created by another process: %v, want ErrCannotWait", err)
	}
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 3", 3}, {"kill -9 $$", 137}} {
		cmd := exec.Command("sh", "-c", tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exit := &supervisorExit{done: make(chan struct{})}
		b.supervisors.Store("s", exit)
		go func() { exit.state, _ = cmd.Process.Wait(); close(exit.done) }()
		c := &state.Container{ID: "s", Data: map[string]string{DataVMID: "102", DataHelperDir: "/x"}}
		code, err := b.Wait(ctx, c)
		if err != nil || code != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.script, code, err, tc.want)
		}
		if _, ok := b.supervisors.Load("s"); ok {
			t.Errorf("%s: the exit stays recorded", tc.script)
		}
	}
	// A cancelled wait returns the context's error.
	b.supervisors.Store("s", &supervisorExit{done: make(chan struct{})})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Wait(cctx, &state.Container{ID: "s", Data: map[string]string{DataHelperDir: "/x"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
