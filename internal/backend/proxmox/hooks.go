package proxmox

import (
	"context"
	"encoding/json"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/atomicfile"
	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/hooks"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/state"
)

// OCI hooks on the Proxmox backend: nexcage runs them on the host
// (internal/hooks), at the lifecycle points of the runtime-spec
// (config.md "POSIX-platform Hooks", runtime.md "Lifecycle"):
//
//   - prestart, then createRuntime: in `create`, once the container runs
//     (pct start) with its namespaces, mounts and network set up and the
//     init helper waits for `start`, before the user's process runs. The
//     state on stdin says "created" with the init's host pid. A failure
//     fails create, which undoes everything (the CT is destroyed) and then
//     runs the poststop hooks (the lifecycle continues at "delete").
//   - startContainer: in `start`, by the init helper inside the container
//     (their path resolves there), before it applies and execs the
//     process; `start` writes the state for their stdin into the helper
//     directory (inithelper.StateFile) first. A failure fails start and
//     the helper exits, which stops the container.
//   - poststart: in `start`, once the init helper has been released to
//     exec the process, before start returns; a failure is logged as a
//     warning.
//   - poststop: in `delete`, after the CT is destroyed, before delete
//     returns; a failure is logged as a warning.
//
// createContainer hooks run in the container's namespaces with a path
// that resolves on the host, before the root is switched: LXC gives
// nexcage no such point, so they are refused by name.
//
// `start` and `delete` are other nexcage processes than `create`: the
// poststart and poststop hooks are recorded in the container's state
// (DataHooks) at create, before the CT exists, so that a delete --force
// after a crash runs poststop too.

// DataHooks is the state.Container.Data key holding the JSON of the
// poststart and poststop hooks (recordedHooks).
const DataHooks = "hooks"

// recordedHooks are the hooks later verbs run.
type recordedHooks struct {
	Poststart []specs.Hook `json:"poststart,omitempty"`
	Poststop  []specs.Hook `json:"poststop,omitempty"`
	// StartContainer is how many startContainer hooks the init helper
	// runs (it has them): start writes their state only then.
	StartContainer int `json:"startContainer,omitempty"`
	// StartContainerWait bounds (seconds) how long they may take: start
	// waits that much longer for the process (startWait).
	StartContainerWait int `json:"startContainerWait,omitempty"`
}

// startContainerBound is the time a startContainer hook without a
// timeout of its own is given before start stops waiting.
const startContainerBound = 5 * time.Minute

// startWait is how long start waits for the init helper's answer: the
// usual 30 s plus what the startContainer hooks may take.
func (r recordedHooks) startWait() time.Duration {
	return 30*time.Second + time.Duration(r.StartContainerWait)*time.Second
}

// startContainerWait is the seconds the hooks of list may take.
func startContainerWait(list []specs.Hook) int {
	n := 0
	for _, h := range list {
		if h.Timeout != nil && *h.Timeout > 0 {
			n += *h.Timeout
		} else {
			n += int(startContainerBound / time.Second)
		}
	}
	return n
}

// checkHooks refuses the hooks the Proxmox backend cannot run (the
// translator's step; paths are checked by Create with the trust rule).
func checkHooks(s *specs.Spec, hasProcess bool) error {
	h := s.Hooks
	if h == nil {
		return nil
	}
	if len(h.CreateContainer) > 0 {
		return unsupported("hooks.createContainer", "createContainer hooks run in the container's namespaces before its root is switched; a Proxmox container is set up by LXC, which gives nexcage no such point (use createRuntime hooks, which nexcage runs on the host with the container's pid on stdin, or route this container to runc/crun)")
	}
	if len(hooks.Lists(h)) > 0 && !hasProcess {
		return unsupported("hooks", "hooks are run around the container's process, and this spec has none")
	}
	return nil
}

// hookRunner is the runner of this backend's hooks.
func (b *Backend) hookRunner() *hooks.Runner {
	if b.hooks != nil {
		return b.hooks
	}
	return &hooks.Runner{Log: b.log}
}

// hookState is the state a hook gets on stdin.
func hookState(c *state.Container, status specs.ContainerState) specs.State {
	v := c.OCIVersion
	if v == "" {
		v = bundle.SpecVersion
	}
	pid := c.Pid
	if status == specs.StateStopped {
		pid = 0
	}
	return specs.State{Version: v, ID: c.ID, Status: status, Pid: pid, Bundle: c.Bundle, Annotations: c.Annotations}
}

// recordHooks checks every hook path (trust) and records the hooks later
// verbs run in c. It returns whether c has hooks at all.
func (b *Backend) recordHooks(c *state.Container, h *specs.Hooks) (bool, error) {
	if len(hooks.Lists(h)) == 0 {
		return false, nil
	}
	if err := b.hookRunner().CheckAll(h); err != nil {
		return false, addContainer(c.ID, err)
	}
	if len(h.Poststart)+len(h.Poststop)+len(h.StartContainer) > 0 {
		data, err := json.Marshal(recordedHooks{Poststart: h.Poststart, Poststop: h.Poststop,
			StartContainer: len(h.StartContainer), StartContainerWait: startContainerWait(h.StartContainer)})
		if err != nil {
			return false, errs.Wrap(errs.KindInternal, err, "container %s: cannot encode its hooks", c.ID)
		}
		c.Data[DataHooks] = string(data)
	}
	return true, nil
}

// recorded returns the hooks recorded in c (none when the record is
// unreadable: a warning, as poststart and poststop failures are).
func (b *Backend) recorded(c *state.Container) recordedHooks {
	var r recordedHooks
	if s := c.Data[DataHooks]; s != "" {
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			b.log.Warn("the container's recorded hooks are unreadable; not run", "id", c.ID, "err", err)
		}
	}
	return r
}

// runCreateHooks runs the prestart and createRuntime hooks (create, the
// container set up and waiting for start).
func (b *Backend) runCreateHooks(ctx context.Context, c *state.Container, h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	r := b.hookRunner()
	st := hookState(c, specs.StateCreated)
	//lint:ignore SA1019 the deprecated prestart hooks are still run, before createRuntime
	pre := h.Prestart
	if err := r.Run(ctx, hooks.Prestart, pre, st); err != nil {
		return addContainer(c.ID, err)
	}
	if err := r.Run(ctx, hooks.CreateRuntime, h.CreateRuntime, st); err != nil {
		return addContainer(c.ID, err)
	}
	return nil
}

// writeStartState writes the state the init helper's startContainer
// hooks get on stdin (status created: the process has not run yet), when
// c has such hooks.
func (b *Backend) writeStartState(c *state.Container) error {
	if b.recorded(c).StartContainer == 0 {
		return nil
	}
	data, err := json.Marshal(hookState(c, specs.StateCreated))
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "container %s: cannot encode its state", c.ID)
	}
	// 0644 in the helper directory (0700, the container root's): only
	// root and the container's root read it.
	p := filepath.Join(c.Data[DataHelperDir], inithelper.StateFileName)
	if err := atomicfile.Write(p, data, 0o644); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot write the state for its startContainer hooks", c.ID)
	}
	return nil
}

// startContainerHooks are the startContainer hooks of spec (for the init
// helper's message).
func startContainerHooks(spec *specs.Spec) []specs.Hook {
	if spec == nil || spec.Hooks == nil {
		return nil
	}
	return spec.Hooks.StartContainer
}

// runPoststart runs the recorded poststart hooks; failures are warnings.
func (b *Backend) runPoststart(ctx context.Context, c *state.Container) {
	if l := b.recorded(c).Poststart; len(l) > 0 {
		b.hookRunner().RunAll(ctx, hooks.Poststart, l, hookState(c, specs.StateRunning))
	}
}

// runPoststop runs the recorded poststop hooks once (the record is
// cleared); failures are warnings. It runs on a context of its own:
// after an interrupted create's undo too.
func (b *Backend) runPoststop(c *state.Container) {
	l := b.recorded(c).Poststop
	delete(c.Data, DataHooks)
	if len(l) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), poststopBound)
	defer cancel()
	b.hookRunner().RunAll(ctx, hooks.Poststop, l, hookState(c, specs.StateStopped))
}

// poststopBound bounds all poststop hooks of one container that set no
// timeout of their own, so that a hung hook cannot hang delete forever.
const poststopBound = 10 * time.Minute
