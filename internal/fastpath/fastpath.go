// Package fastpath is nexcage's passthrough for containers routed to runc
// or crun, run by the small front binary (cmd/nexcage), which imports
// nothing heavy, so that its start-up costs about a Go hello world.
//
// For such a container each verb is decided from the command line, the
// container's record (<root>/<id>/state.json, which only a create by the
// full CLI writes: which runtime) or, without one, the runtime's own state
// directory (state.Store.RuntimeDir) and, for create, the routing rules,
// and then:
//
//   - start, kill, delete and the passthrough verbs (exec, ps, pause,
//     resume, events, update) become the runtime (execve) with the
//     translated argv: its exit status, output, signals and pid file are
//     the caller's, with no copy and no wait. delete first removes a record
//     and a lock file, if there are any, under the id's lock (forget before the
//     runtime acts; a runtime that then refuses leaves a container without
//     a record, which every verb still finds by its state directory);
//   - create runs the full CLI's bundle checks (bundle.Verify) and,
//     under the id's lock, runs the runtime's create as its only child and waits, so
//     that an interrupt is undone and reported as before. It writes
//     nothing: what nexcage knows of the container afterwards is derived
//     from the runtime's state directory, so a crash at any point leaves
//     only what the runtime made, which `delete --force` finds there;
//   - state is read from the runtime's state directory (ocirun.ReadState):
//     starting runc just to print it would cost more than nexcage.
//
// The fast path takes only the cases whose outcome it can tell is the
// runtime's: everything else (other verbs, the Proxmox backend, a refusal
// such as starting a running container, a bundle nexcage must explain,
// nexcage's own log or --debug) is handed to the full command line,
// nexcage-core, which answers with nexcage's words and exit codes
// (docs/CLI.md), as before.
package fastpath

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/logging"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/signals"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/trust"
)

// DefaultRoot is the state root when neither --root nor the config's
// runtime.root_path is given.
const DefaultRoot = "/run/nexcage"

// runtimes are the backends the fast path serves.
var runtimes = []string{config.BackendRunc, config.BackendCrun}

// execve replaces the process (a variable for tests).
var execve = syscall.Exec

// Try carries out argv (without the program name) when it is a verb on a
// runc/crun-routed container whose outcome is the runtime's own. For
// start, kill, delete and the passthrough verbs it does not return then:
// the process becomes the runtime. create and state return their exit
// status with handled set. handled is false when the full CLI must
// handle argv (nothing was changed then).
func Try(argv []string) (code int, handled bool) {
	c, ok := parse(argv)
	if !ok {
		return 0, false
	}
	p, ok := prepare(c)
	if !ok {
		return 0, false
	}
	switch c.verb {
	case "state":
		return p.state()
	case "create":
		return p.create()
	case "delete":
		if !p.forget() {
			return 0, false
		}
	}
	_ = p.exec()
	return 0, false // exec failed: the full CLI reports it
}

// plan is a prepared call: which runtime, where its state is.
type plan struct {
	c      call
	store  *state.Store
	rec    *state.Container // the record, if any
	name   string           // runc or crun
	bin    string           // the runtime's path
	rt     config.OCIRuntime
	rtRoot string           // <root>/@<name>
	rtDir  string           // <root>/@<name>/<id>
	st     *state.Container // read from the runtime's state directory
	spec   bundleSpec       // create: what the bundle says
}

// prepare loads the config, finds who has the id and checks that the
// runtime's answer will be nexcage's; ok false hands over to the full
// CLI.
func prepare(c call) (p plan, ok bool) {
	p.c = c
	g := c.g
	if g.debug {
		return p, false
	}
	cfg, warnings, err := config.Load(g.config)
	if err != nil || len(warnings) > 0 {
		return p, false
	}
	// nexcage's own log (a file, or debug) is the full CLI's.
	if cfg.Runtime.LogPath != "" || strings.EqualFold(cfg.Runtime.LogLevel, "debug") {
		return p, false
	}
	root := g.root
	if !g.rootSet {
		root = DefaultRoot
		if cfg.Runtime.RootPath != "" {
			root = cfg.Runtime.RootPath
		}
	}
	if state.ValidateID(c.id) != nil {
		return p, false
	}
	if p.store, err = state.NewStore(root); err != nil {
		return p, false
	}
	switch rec, err := p.store.Load(c.id); {
	case err == nil:
		p.rec = rec
	case errs.KindOf(err) != errs.KindNotFound:
		return p, false // damaged: the full CLI explains
	}
	var owner string
	switch {
	case c.verb == "create":
		if p.rec != nil {
			return p, false // "already exists", in nexcage's words
		}
		if owner, err = p.store.RuntimeOwner(c.id, runtimes...); err != nil || owner != "" {
			return p, false
		}
		router, err := cfg.Router()
		if err != nil {
			return p, false
		}
		// Routed as the full CLI routes a create (config.Router.Decide):
		// with the name nexcage was called by and the bundle's
		// annotations (a Kubernetes pod's identity; a pod's container
		// follows its sandbox's backend).
		if !p.readBundle() {
			return p, false
		}
		d, err := router.Decide(config.Request{ID: c.id, Override: g.runtime, Program: filepath.Base(os.Args[0]),
			Annotations: p.spec.Annotations, SandboxBackend: p.recordedBackend})
		if err != nil {
			return p, false
		}
		owner = d.Backend
	case p.rec != nil:
		owner = p.rec.Backend
	default:
		if owner, err = p.store.RuntimeOwner(c.id, runtimes...); err != nil || owner == "" {
			return p, false // "does not exist", in nexcage's words
		}
	}
	if owner != config.BackendRunc && owner != config.BackendCrun {
		return p, false
	}
	p.name = owner
	p.rt = cfg.Runtimes.Runc
	if owner == config.BackendCrun {
		p.rt = cfg.Runtimes.Crun
	}
	bin := p.rt.Path
	if bin == "" {
		bin = owner
	}
	if p.bin, err = ocirun.LookPath(owner, bin); err != nil {
		return p, false
	}
	p.rtRoot = p.store.BackendRoot(owner)
	p.rtDir = p.store.RuntimeDir(owner, c.id)
	return p, p.check()
}

// check tells whether the runtime will carry out the verb: a refusal
// (start of a running container ...) goes to the full CLI, which words it
// as runc does for every backend and exits with nexcage's code.
func (p *plan) check() bool {
	c := p.c
	switch c.verb {
	case "create":
		return p.checkBundle()
	case "start":
		return p.created()
	case "kill":
		if _, err := signals.Parse(c.signal); err != nil {
			return false
		}
		return p.alive()
	case "delete":
		if _, err := os.Lstat(p.rtDir); err != nil {
			return false // only a record (a create that crashed): the full CLI
		}
		return c.force || p.created() || !p.alive()
	}
	return true // state and the passthrough verbs
}

// bundleSpec is what create keeps of the bundle.
type bundleSpec struct {
	OCIVersion  string
	Annotations map[string]string
}

// readBundle runs every check the full CLI runs on the bundle
// (bundle.Verify), before any side effect, so that a bad bundle gets
// nexcage's words and exit code, not the runtime's: runc itself takes a
// hostname with a newline, a NUL in an argument or a garbage ociVersion
// (test/reliability's corpus). A bundle that fails, or that the full CLI
// would warn about, goes to the full CLI, which reports it. Verify reads
// only the fields the checks need; a type error elsewhere in config.json
// is the runtime's to find, and create then reports it as the full CLI
// would (see create).
func (p *plan) readBundle() bool {
	b, err := bundle.Verify(p.c.bundle)
	if err != nil || len(b.Warnings) > 0 {
		return false
	}
	p.c.bundle, p.spec = b.Dir, bundleSpec{OCIVersion: b.OCIVersion, Annotations: b.Annotations}
	return true
}

// checkBundle tells whether crun will take the bundle: crun 1.8 refuses
// a spec above 1.0.x, and the full CLI says what to do.
func (p *plan) checkBundle() bool {
	return p.name != config.BackendCrun || strings.HasPrefix(p.spec.OCIVersion, "1.0.")
}

// recordedBackend is the backend of container id (a pod's sandbox): its
// record's, else the runtime's that keeps it, "" when none.
func (p *plan) recordedBackend(id string) (string, error) {
	c, err := p.store.Load(id)
	if err == nil {
		return c.Backend, nil
	}
	if errs.KindOf(err) != errs.KindNotFound {
		return "", err
	}
	return p.store.RuntimeOwner(id, runtimes...)
}

// read reads the container's state from the runtime's state directory
// (ocirun.ReadState), once.
func (p *plan) read() (*state.Container, bool) {
	if p.st == nil {
		st, err := ocirun.ReadState(p.name, p.rtDir, p.c.id)
		if err != nil {
			return nil, false
		}
		p.st = st
	}
	return p.st, true
}

// alive tells whether the container's init runs (created, running or
// paused).
func (p *plan) alive() bool {
	st, ok := p.read()
	return ok && st.Status != state.Stopped
}

// created tells whether the container waits for start.
func (p *plan) created() bool {
	st, ok := p.read()
	return ok && st.Status == state.Created
}

// argv is the runtime's command line for the call; logPath overrides the
// caller's --log (create's private log).
func (p *plan) argv(logPath, logFormat string) []string {
	c := p.c
	a := append(p.globals(logPath, logFormat), c.verb)
	switch c.verb {
	case "create":
		a = append(a, ocirun.CreateArgs(runtime.CreateOptions{Bundle: c.bundle, PidFile: c.pidFile, ConsoleSocket: c.consoleSocket,
			NoPivot: c.noPivot, NoNewKeyring: c.noNewKeyring, PreserveFDs: c.preserveFDs})...)
		a = append(a, c.id)
	case "kill":
		sig, _ := signals.Parse(c.signal)
		if c.all {
			a = append(a, "--all")
		}
		a = append(a, c.id, strconv.Itoa(int(sig)))
	case "delete":
		if c.force {
			a = append(a, "--force")
		}
		a = append(a, c.id)
	case "start", "state":
		a = append(a, c.id)
	default:
		a = append(a, c.pass...)
	}
	return a
}

// globals are the runtime's name and global flags.
func (p *plan) globals(logPath, logFormat string) []string {
	g := p.c.g
	a := []string{filepath.Base(p.bin), "--root", p.rtRoot}
	if logPath != "" {
		a = append(a, "--log", logPath, "--log-format", logFormat)
	}
	if g.systemdCgroup {
		a = append(a, "--systemd-cgroup")
	}
	if g.rootless != "" {
		a = append(a, "--rootless="+g.rootless)
	}
	return a
}

// exec becomes the runtime; it returns only on failure.
func (p *plan) exec() error {
	return execve(p.bin, p.argv(p.c.g.log, p.c.g.logFormat), os.Environ())
}

// forget removes the record, if any, under the id's lock, before delete
// becomes the runtime: afterwards nothing of nexcage's is left to remove
// (the lock file goes too, see state.Lock.Unlock, also one a crashed
// create left). Taking the lock also waits for a create of the id that is
// still running.
func (p *plan) forget() bool {
	if p.rec == nil && !p.store.HasLockFile(p.c.id) {
		// Nothing to remove and no create of the id running (it would
		// hold the lock file); one starting now finds the runtime's
		// state directory and refuses the id.
		return true
	}
	l, err := p.store.Lock(context.Background(), p.c.id)
	if err != nil {
		return false
	}
	if p.rec != nil {
		err = p.store.Remove(p.c.id)
	}
	if uerr := l.Unlock(); err == nil {
		err = uerr
	}
	return err == nil
}

// workaround tells whether crun's create needs the hybrid cgroup
// workaround (runtimes.crun.cgroup_workaround, as ocirun.Backend decides).
func (p *plan) workaround() bool {
	switch p.rt.CgroupWorkaround {
	case ocirun.WorkaroundAlways:
		return true
	case ocirun.WorkaroundNever:
		return false
	}
	return p.name == config.BackendCrun && ocirun.HybridWithV2Controllers(ocirun.CgroupRoot)
}

// create runs, under the id's lock, `<runtime> create` as its only child, with the caller's
// stdio and preserved fds, and waits: an interrupt (SIGINT/SIGTERM)
// kills it and deletes whatever it made, and is reported as the full CLI
// reports it (128+n); a failure deletes what the runtime may have left
// and is reported as the full CLI reports it, with the runtime's last
// error from --log or a private log (exit code by kind). nexcage writes nothing of its own for a runc/crun container:
// every later verb finds it in the runtime's state directory
// (state.Store.RuntimeOwner), and state, list and the rest read bundle,
// annotations and creation time from there (ocirun.ReadState), so a
// crash at any point leaves only what the runtime made, which delete
// --force finds. crun's create on a hybrid cgroup host runs in a private
// mount namespace without the cgroup2 mount (ocirun's hybrid.go), made on
// this locked thread, which the child inherits.
func (p *plan) create() (int, bool) {
	// The id's lock, held until the runtime is done, keeps concurrent
	// creates of the id apart, whichever backend they go to (nexcage-core
	// takes it too), so that an undo only ever deletes this create's.
	l, err := p.store.Lock(context.Background(), p.c.id)
	if err != nil {
		return 0, false
	}
	defer func() { _ = l.Unlock() }()
	if exists, err := p.store.Exists(p.c.id); err != nil || exists {
		return 0, false
	}
	if owner, err := p.store.RuntimeOwner(p.c.id, runtimes...); err != nil || owner != "" {
		return 0, false
	}
	if err := os.MkdirAll(p.rtRoot, 0o700); err != nil {
		return p.report(errs.Wrap(errs.KindInternal, err, "cannot create the %s state root", p.name))
	}
	logPath, logFormat := p.c.g.log, p.c.g.logFormat
	var offset int64
	if logPath == "" {
		// A private log beside the id's lock (root's only) tells why the
		// runtime failed; the lock's Unlock removes it (after a crash, the
		// next delete's does).
		logPath, logFormat = p.store.CreateLogPath(p.c.id), "json"
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return p.report(errs.Wrap(errs.KindInternal, err, "cannot create a log file for %s", p.name))
		}
		_ = f.Close()
	} else if fi, err := os.Stat(logPath); err == nil {
		offset = fi.Size()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if p.workaround() {
		// This thread stays locked until the process ends: it is never
		// handed back to Go in the other mount namespace.
		goruntime.LockOSThread()
		if err := ocirun.DetachCgroup2(); err != nil {
			return p.report(errs.Wrap(errs.KindBackend, err, "crun cgroup workaround for %s", p.c.id))
		}
	}
	files := []uintptr{0, 1, 2} // the caller's stdio and preserved fds
	for i := 0; i < p.c.preserveFDs; i++ {
		files = append(files, uintptr(3+i))
	}
	pid, err := p.spawn(p.argv(logPath, logFormat), files)
	if err != nil {
		return p.report(errs.Wrap(errs.KindBackend, err, "cannot run %s", p.bin))
	}
	done := make(chan int, 1)
	go func() { done <- wait(pid) }()
	select {
	case code := <-done:
		if code == 0 {
			return 0, true
		}
		p.undo()
		if _, berr := bundle.Load(p.c.bundle); berr != nil {
			// A type error readBundle did not look for: the full CLI
			// would have refused the bundle before running anything.
			return p.report(berr)
		}
		return p.report(ocirun.CreateFailure(p.name, "create", p.c.id, ocirun.LastLogError(logPath, offset), code, p.c.bundle, p.spec.OCIVersion))
	case s := <-sigs:
		signal.Stop(sigs) // a second signal ends nexcage at once
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-done
		p.undo()
		return p.report(&runtime.Interrupted{Signal: s.(syscall.Signal)})
	}
}

// spawn starts the runtime with argv and files as its fds 0, 1, 2, ...,
// as this process's child. It forks with syscall rather than
// os.StartProcess, whose first use in a process checks pidfd support by
// starting a throw-away child (os.checkClonePidfd): a fork more per
// create (issue 16).
func (p *plan) spawn(argv []string, files []uintptr) (int, error) {
	return syscall.ForkExec(p.bin, argv, &syscall.ProcAttr{Env: os.Environ(), Files: files})
}

// wait reaps child pid and returns its exit code (-1: killed by a
// signal, or not reaped).
func wait(pid int) int {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil || !ws.Exited():
			return -1
		}
		return ws.ExitStatus()
	}
}

// undo deletes what the runtime may have made of a failed or interrupted
// create.
func (p *plan) undo() {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer null.Close()
	fd := null.Fd()
	if pid, err := p.spawn(append(p.globals(p.c.g.log, p.c.g.logFormat), "delete", "--force", p.c.id), []uintptr{fd, fd, fd}); err == nil {
		wait(pid)
	}
}

// report prints err as the full CLI does ("nexcage: <message>" on
// stderr, and an error line in the caller's --log) and returns the exit
// status.
func (p *plan) report(err error) (int, bool) {
	if err == nil {
		return 0, true
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if p.c.g.log != "" {
		if l, lerr := logging.New(logging.Options{File: p.c.g.log, Format: p.c.g.logFormat, Level: "warning", Stderr: os.Stderr}); lerr == nil {
			l.Error(msg, "kind", errs.KindOf(err).String())
			_ = l.Close()
		}
	}
	fmt.Fprintf(os.Stderr, "nexcage: %s\n", msg)
	return runtime.ExitCode(err), true
}

// state prints the container's state as the full CLI does, read from
// the runtime's state directory: running `runc state` would cost more
// than nexcage itself. The record, when there is one, gives what nexcage
// keeps (the bundle's ociVersion, created ...). What it cannot read goes
// to the full CLI, which asks the runtime.
func (p *plan) state() (int, bool) {
	st, ok := p.read()
	if !ok {
		return 0, false
	}
	if p.rec != nil {
		c := *p.rec
		c.Status, c.Pid = st.Status, st.Pid
		st = &c
	}
	data, err := json.MarshalIndent(st.OCIState(""), "", "  ")
	if err != nil {
		return 0, false
	}
	if _, err := os.Stdout.Write(append(data, '\n')); err != nil {
		return 1, true
	}
	return 0, true
}

// CoreName is the file name of the full command line, installed next to
// the front binary.
const CoreName = "nexcage-core"

// Delegate execs the full command line (CoreName next to this
// executable) with argv, argv[0] included (the name nexcage was called by
// may force a backend, config.ProgramBackend); it returns only on
// failure, with nexcage's exit code for an internal error. The binary is
// checked like a runtime (trust.LookPath): nexcage runs it as root.
func Delegate(argv []string) int {
	self, err := os.Executable()
	if err == nil {
		core := filepath.Join(filepath.Dir(self), CoreName)
		if core, err = trust.LookPath(core); err == nil {
			err = execve(core, argv, os.Environ())
		}
	}
	fmt.Fprintf(os.Stderr, "nexcage: cannot run %s, the full command line installed next to nexcage: %v (reinstall nexcage)\n", CoreName, err)
	return errs.ExitCode(errs.New(errs.KindInternal, "no core"))
}
