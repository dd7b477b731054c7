// Package ocirun is the backend for containers routed to runc or crun: it
// runs the real binary with the same verb and flags, under its own state
// root inside nexcage's --root, so that each verb behaves as with the
// runtime itself.
package ocirun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/trust"
)

// Workaround modes for crun on hybrid cgroup hosts (config
// runtimes.crun.cgroup_workaround).
const (
	WorkaroundAuto   = "auto"
	WorkaroundAlways = "always"
	WorkaroundNever  = "never"
)

// Options configure one backend.
type Options struct {
	// Name is "runc" or "crun"; it is also the backend's name in state.
	Name string
	// Path of the binary; empty looks Name up on PATH.
	Path string
	// Root is the runtime's --root (state.Store.BackendRoot(Name)).
	Root string

	// Global flags passed through to every call.
	Log           string
	LogFormat     string
	Debug         bool
	SystemdCgroup bool
	Rootless      string

	// CgroupWorkaround is auto (default), always or never; crun only.
	CgroupWorkaround string
	// SelfExe is the nexcage binary re-executed as the workaround helper;
	// empty means os.Executable().
	SelfExe string

	Logger *slog.Logger
}

// Backend runs containers through runc or crun.
type Backend struct {
	o    Options
	path string

	hybridOnce sync.Once
	hybrid     bool
}

var (
	_ runtime.Backend       = (*Backend)(nil)
	_ runtime.Runner        = (*Backend)(nil)
	_ runtime.Passthrougher = (*Backend)(nil)
	_ runtime.Versioner     = (*Backend)(nil)

	_ runtime.LifecycleEnforcer = (*Backend)(nil)
)

// New finds the binary and prepares the state root.
func New(o Options) (*Backend, error) {
	if o.Name != "runc" && o.Name != "crun" {
		return nil, errs.New(errs.KindInternal, "ocirun: unknown runtime %q", o.Name)
	}
	bin := o.Path
	if bin == "" {
		bin = o.Name
	}
	path, err := LookPath(o.Name, bin)
	if err != nil {
		return nil, err
	}
	switch o.CgroupWorkaround {
	case "":
		o.CgroupWorkaround = WorkaroundAuto
	case WorkaroundAuto, WorkaroundAlways, WorkaroundNever:
	default:
		return nil, errs.New(errs.KindInvalidConfig, "runtimes.%s.cgroup_workaround: unknown value %q", o.Name, o.CgroupWorkaround).
			WithHint("use auto, always or never")
	}
	if o.Root == "" {
		return nil, errs.New(errs.KindInternal, "ocirun: empty state root")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{o: o, path: path}, nil
}

// Name is "runc" or "crun".
func (b *Backend) Name() string { return b.o.Name }

// Path is the binary that is run.
func (b *Backend) Path() string { return b.path }

// useWorkaround tells whether create/run must go through the hybrid
// cgroup helper.
func (b *Backend) useWorkaround() bool {
	switch b.o.CgroupWorkaround {
	case WorkaroundAlways:
		return true
	case WorkaroundNever:
		return false
	}
	if b.o.Name != "crun" {
		return false // runc handles hybrid hosts; "auto" means never
	}
	b.hybridOnce.Do(func() {
		b.hybrid = HybridWithV2Controllers(CgroupRoot)
		if b.hybrid {
			b.o.Logger.Debug("hybrid cgroup host: crun create/run use a private mount namespace without the cgroup2 mount")
		}
	})
	return b.hybrid
}

// CreateArgs turns create options into the runtime's create/run flags
// (the front binary's passthrough builds the same command line with it).
func CreateArgs(opts runtime.CreateOptions) []string {
	args := []string{"--bundle", opts.Bundle}
	if opts.PidFile != "" {
		args = append(args, "--pid-file", opts.PidFile)
	}
	if opts.ConsoleSocket != "" {
		args = append(args, "--console-socket", opts.ConsoleSocket)
	}
	if opts.NoPivot {
		args = append(args, "--no-pivot")
	}
	if opts.NoNewKeyring {
		args = append(args, "--no-new-keyring")
	}
	if opts.PreserveFDs > 0 {
		args = append(args, "--preserve-fds", strconv.Itoa(opts.PreserveFDs))
	}
	return args
}

func stdioOf(opts runtime.CreateOptions) runtime.Stdio {
	st := runtime.Stdio{Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr}
	for i := 0; i < opts.PreserveFDs; i++ {
		st.ExtraFiles = append(st.ExtraFiles, os.NewFile(uintptr(3+i), "preserved-fd-"+strconv.Itoa(3+i)))
	}
	return st
}

// EnforcesLifecycle is true: runc and crun refuse start, kill and delete
// in the wrong state and change nothing then (runtime.LifecycleEnforcer),
// so each of those verbs is one runtime call.
func (b *Backend) EnforcesLifecycle() bool { return true }

// Create runs `<runtime> create`, handing the container the caller's
// stdio and preserved fds, as runc does for containerd. The pid comes
// from the --pid-file (the caller's, else a private one), not from a
// second runtime call.
func (b *Backend) Create(ctx context.Context, c *state.Container, opts runtime.CreateOptions) error {
	if opts.Bundle == "" {
		return errs.New(errs.KindUsage, "%s create %s: a bundle is required", b.o.Name, c.ID).
			WithHint("pass --bundle <dir>; templates and images need the proxmox-lxc backend")
	}
	done, err := b.withPidFile(&opts)
	if err != nil {
		return err
	}
	defer done()
	args := append(CreateArgs(opts), c.ID)
	res, err := b.attached(ctx, "create", args, stdioOf(opts), b.useWorkaround(), nil, opts.StateDir)
	if err == nil && res.code != 0 {
		err = b.failure("create", c, res, opts)
	}
	if err != nil {
		// The runtime cleans up after itself; make sure nothing is left
		// (also after a cancel: SIGINT/SIGTERM to nexcage).
		_, _ = b.captured(context.WithoutCancel(ctx), "delete", "--force", c.ID)
		return err
	}
	c.Status = state.Created
	return b.pidFrom(ctx, c, opts.PidFile)
}

// withPidFile makes sure opts names a --pid-file: the caller's, or a
// private one under the state root that done removes.
func (b *Backend) withPidFile(opts *runtime.CreateOptions) (done func(), err error) {
	if opts.PidFile != "" {
		return func() {}, nil
	}
	dir, err := b.tempDir(opts.StateDir)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".pid-*")
	if err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "cannot create a pid file for %s", b.o.Name)
	}
	_ = f.Close()
	opts.PidFile = f.Name()
	return func() { _ = os.Remove(f.Name()) }, nil
}

// tempDir is where a create or run keeps its temporary files: the
// container's state directory (removed with its record, so a crash leaves
// nothing elsewhere), else the runtime's state root.
func (b *Backend) tempDir(stateDir string) (string, error) {
	if stateDir != "" {
		return stateDir, nil
	}
	if err := os.MkdirAll(b.o.Root, 0o700); err != nil {
		return "", errs.Wrap(errs.KindInternal, err, "cannot create the %s state root", b.o.Name)
	}
	return b.o.Root, nil
}

// pidFrom sets c.Pid from the pid file the runtime wrote. Should the file
// be unreadable, the runtime is asked instead.
func (b *Backend) pidFrom(ctx context.Context, c *state.Container, path string) error {
	data, err := os.ReadFile(path)
	if err == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil && pid > 0 {
			c.Pid = pid
			return nil
		}
	}
	b.o.Logger.Debug("no pid in the pid file; asking the runtime", "id", c.ID, "pid_file", path, "err", err)
	return b.Refresh(ctx, []*state.Container{c})
}

// Run runs `<runtime> run [--detach]` in the foreground with the caller's
// stdio and returns the container's exit code.
func (b *Backend) Run(ctx context.Context, c *state.Container, opts runtime.CreateOptions, detach bool) (int, error) {
	if opts.Bundle == "" {
		return 0, errs.New(errs.KindUsage, "%s run %s: a bundle is required", b.o.Name, c.ID).
			WithHint("pass --bundle <dir>; templates and images need the proxmox-lxc backend")
	}
	if detach {
		done, err := b.withPidFile(&opts)
		if err != nil {
			return 0, err
		}
		defer done()
	}
	args := CreateArgs(opts)
	if detach {
		args = append(args, "--detach")
	}
	args = append(args, c.ID)
	setProc, stop := forwardSignals(b.o.Logger)
	res, err := b.attached(ctx, "run", args, stdioOf(opts), b.useWorkaround(), setProc, opts.StateDir)
	stop()
	if err != nil {
		return 0, err
	}
	if ctx.Err() != nil {
		// Cancelled (SIGINT/SIGTERM to a detached run): the runtime was
		// killed midway. The Manager deletes what it left.
		return res.code, errs.Wrap(errs.KindBackend, ctx.Err(), "%s run %s interrupted", b.o.Name, c.ID)
	}
	if res.code != 0 && res.logErr != "" {
		// The runtime itself failed (its error is in the log), as
		// opposed to the container exiting non-zero. The Manager deletes
		// what is left, under the lock and only if the id is still
		// this run's container.
		return res.code, b.failure("run", c, res, opts)
	}
	if detach && res.code == 0 {
		c.Status = state.Running
		return 0, b.pidFrom(ctx, c, opts.PidFile)
	}
	c.Status = state.Stopped
	return res.code, nil
}

// failure builds the error for a failed create/run from the runtime's log.
func (b *Backend) failure(verb string, c *state.Container, res result, opts runtime.CreateOptions) error {
	version := ""
	if opts.Spec != nil {
		version = opts.Spec.Version
	}
	return CreateFailure(b.o.Name, verb, c.ID, res.logErr, res.code, opts.Bundle, version)
}

// CreateFailure is the error of a failed `create` or `run` (verb) of id by
// runtime name: the runtime's last logged error (logErr; its exit status
// when there is none), with a hint for the refusals that have a known
// fix. bundle and ociVersion name the bundle's spec ("" when unknown).
func CreateFailure(name, verb, id, logErr string, code int, bundle, ociVersion string) error {
	msg := logErr
	if msg == "" {
		msg = fmt.Sprintf("exit status %d", code)
	}
	e := errs.Wrap(errs.KindBackend, errors.New(msg), "%s %s %s", name, verb, id)
	if strings.Contains(msg, "unknown version specified") && ociVersion != "" {
		return e.WithHint("%s on this host only accepts runtime-spec 1.0.x bundles and %s/config.json declares ociVersion %q: set it to \"1.0.2\" or route the container to runc",
			name, bundle, ociVersion)
	}
	if strings.Contains(msg, "hybrid mode not supported") {
		return e.WithHint("set runtimes.crun.cgroup_workaround to \"auto\" or \"always\" in the config")
	}
	return e
}

// Start runs `<runtime> start`. The init keeps its pid; the status is
// running from here on (the process may exit at once, which the next
// Refresh shows).
func (b *Backend) Start(ctx context.Context, c *state.Container) error {
	if _, err := b.captured(ctx, "start", c.ID); err != nil {
		return err
	}
	c.Status = state.Running
	return nil
}

// listEntry is one element of `<runtime> list --format json`, and the
// output of `<runtime> state`.
type listEntry struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations"`
}

// Refresh updates cs from the runtime: one `<runtime> state <id>` call
// for a single container, else one `<runtime> list --format json`. A
// container the runtime does not know any more is stopped.
func (b *Backend) Refresh(ctx context.Context, cs []*state.Container) error {
	switch len(cs) {
	case 0:
		return nil
	case 1:
		return b.refreshOne(ctx, cs[0])
	}
	out, err := b.captured(ctx, "list", "--format", "json")
	if err != nil {
		return err
	}
	var entries []listEntry
	if s := bytes.TrimSpace(out); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
		if err := json.Unmarshal(s, &entries); err != nil {
			return errs.Wrap(errs.KindBackend, err, "cannot parse `%s list --format json` output", b.o.Name)
		}
	}
	byID := make(map[string]listEntry, len(entries))
	for _, e := range entries {
		byID[e.ID] = e
	}
	for _, c := range cs {
		e, ok := byID[c.ID]
		if !ok {
			c.Status, c.Pid = state.Stopped, 0
			continue
		}
		b.apply(e, c)
	}
	return nil
}

func (b *Backend) refreshOne(ctx context.Context, c *state.Container) error {
	out, err := b.captured(ctx, "state", c.ID)
	if err != nil {
		if gone(err) {
			c.Status, c.Pid = state.Stopped, 0
			return nil
		}
		return err
	}
	var e listEntry
	if err := json.Unmarshal(out, &e); err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot parse `%s state %s` output", b.o.Name, c.ID)
	}
	b.apply(e, c)
	return nil
}

// apply sets c's live status from e and, for a container without a
// record of nexcage's (no bundle known: the runtime keeps it all), the
// rest of its state. Its ociVersion is then the bundle's, as the
// runtime keeps it (the passthrough's `state` shows the same, see
// ReadState), else the runtime's.
func (b *Backend) apply(e listEntry, c *state.Container) {
	c.Status, c.Pid = e.Status, e.Pid
	if c.Status == state.Stopped {
		c.Pid = 0
	}
	if c.Bundle == "" {
		c.OCIVersion, c.Bundle, c.Created, c.Annotations = e.OCIVersion, e.Bundle, e.Created, e.Annotations
		c.Rootfs = state.AbsRootfs(e.Bundle, e.Rootfs)
		if st, err := ReadState(b.o.Name, filepath.Join(b.o.Root, c.ID), c.ID); err == nil {
			c.OCIVersion, c.Annotations = st.OCIVersion, st.Annotations
		}
	}
}

// Kill runs `<runtime> kill [--all] <id> <signal number>`.
func (b *Backend) Kill(ctx context.Context, c *state.Container, sig syscall.Signal, all bool) error {
	args := []string{}
	if all {
		args = append(args, "--all")
	}
	args = append(args, c.ID, strconv.Itoa(int(sig)))
	_, err := b.captured(ctx, "kill", args...)
	return err
}

// Delete runs `<runtime> delete [--force]`; a container the runtime does
// not know any more counts as deleted.
func (b *Backend) Delete(ctx context.Context, c *state.Container, force bool) error {
	args := []string{}
	if force {
		args = append(args, "--force")
	}
	args = append(args, c.ID)
	_, err := b.captured(ctx, "delete", args...)
	if err != nil && gone(err) {
		return nil
	}
	return err
}

// gone tells whether a runtime error says the container does not exist.
func gone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "does not exist") || strings.Contains(s, "No such file or directory")
}

// Passthrough runs verb with the caller's arguments and stdio unchanged.
func (b *Backend) Passthrough(ctx context.Context, c *state.Container, verb string, args []string, stdio runtime.Stdio) (int, error) {
	res, err := b.attached(ctx, verb, args, stdio, false, nil, "")
	if err != nil {
		return 0, err
	}
	return res.code, nil
}

// Version returns the first line of `<runtime> --version`.
func (b *Backend) Version(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, b.path, "--version").Output()
	if err != nil {
		return "", errs.Wrap(errs.KindBackend, err, "%s --version", b.path)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// LookPath finds bin (runtimes.<name>.path: a name on PATH or a path)
// and checks that no user but root can have planted or redirected it
// (trust.LookPath): nexcage runs it as root.
func LookPath(name, bin string) (string, error) {
	path, err := trust.LookPath(bin)
	if errs.KindOf(err) == errs.KindInvalidConfig {
		return "", errs.Wrap(errs.KindInvalidConfig, err, "runtimes.%s.path %s: refusing to run it", name, bin)
	}
	if err != nil {
		return "", errs.Wrap(errs.KindBackend, err, "%s not found", bin).
			WithHint("install it (apt-get install %s) or set runtimes.%s.path in the config", name, name)
	}
	return path, nil
}

// BinaryVersion returns the first line of `<bin> --version`, bin being a
// path or a name looked up on PATH (runtimes.<name>.path), without
// building a backend. bin is checked like New checks it.
func BinaryVersion(ctx context.Context, name, bin string) (path, version string, err error) {
	path, err = LookPath(name, bin)
	if err != nil {
		return "", "", err
	}
	b := &Backend{path: path}
	version, err = b.Version(ctx)
	return path, version, err
}
