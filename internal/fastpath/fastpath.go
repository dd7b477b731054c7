// Package fastpath is nexcage's passthrough for containers routed to runc
// or crun: the verb is decided from the command line, the config's
// routing and the runtime's own state directory, and nexcage then
// becomes the runtime (execve) with the translated argv, so that the
// runtime's exit status, output, signals and pid file are the caller's,
// with no copy and no wait. It keeps no record of its own: runc and crun
// keep the state of their containers under <root>/@runc and <root>/@crun
// (state.Store.RuntimeDir), which is what every later verb, and the full
// CLI (runtime.Manager.Recordless), look at.
//
// The fast path takes only the cases whose outcome it can tell is the
// runtime's: everything else (another verb, the Proxmox backend, an id
// with a record, a refusal such as starting a running container, a bundle
// nexcage must explain) goes to the full CLI, which answers with
// nexcage's words and exit codes (docs/CLI.md), as before. It runs in the
// small front binary (cmd/nexcage), which imports nothing heavy, so its
// start-up is about that of a Go hello world.
package fastpath

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	goruntime "runtime"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
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
// every verb but state it does not return then: the process becomes the
// runtime. state returns its exit status with handled set. handled is
// false when the full CLI must handle argv (nothing was done then).
func Try(argv []string) (code int, handled bool) {
	c, ok := parse(argv)
	if !ok {
		return 0, false
	}
	p, ok := prepare(c)
	if !ok {
		return 0, false
	}
	if c.verb == "state" {
		return p.state()
	}
	p.exec()
	return 0, false // exec failed: the full CLI reports it
}

// plan is a prepared call: which runtime, where its state is.
type plan struct {
	c       call
	name    string // runc or crun
	bin     string // the runtime's path
	rt      config.OCIRuntime
	rtRoot  string // <root>/@<name>
	rtDir   string // <root>/@<name>/<id>
	st      *state.Container // read from the runtime's state directory
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
	store, err := state.NewStore(root)
	if err != nil {
		return p, false
	}
	// A record: the Proxmox backend, or a container the full CLI made.
	if exists, err := store.Exists(c.id); err != nil || exists {
		return p, false
	}
	owner, err := store.RuntimeOwner(c.id, runtimes...)
	if err != nil {
		return p, false
	}
	if c.verb == "create" {
		if owner != "" {
			return p, false // "already exists", in nexcage's words
		}
		router, err := cfg.Router()
		if err != nil {
			return p, false
		}
		d, err := router.Route(c.id, g.runtime)
		if err != nil || (d.Backend != config.BackendRunc && d.Backend != config.BackendCrun) {
			return p, false
		}
		owner = d.Backend
	} else if owner == "" {
		return p, false // "does not exist", in nexcage's words
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
	p.rtRoot = store.BackendRoot(owner)
	p.rtDir = store.RuntimeDir(owner, c.id)
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
		return c.force || p.created() || !p.alive()
	}
	return true // state and the passthrough verbs
}

// checkBundle reads of the bundle only what tells whether the runtime
// will take it (root.path exists; crun: a 1.0.x spec): the full CLI
// explains a bundle that fails these. The runtime validates the rest.
func (p *plan) checkBundle() bool {
	c := &p.c
	if c.bundle == "" {
		c.bundle = "."
	}
	dir, err := filepath.Abs(c.bundle)
	if err != nil {
		return false
	}
	c.bundle = dir
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var spec struct {
		OCIVersion string `json:"ociVersion"`
		Root       *struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if json.Unmarshal(data, &spec) != nil || spec.Root == nil || spec.Root.Path == "" {
		return false
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(dir, rootfs)
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return false
	}
	if p.name == config.BackendCrun && !strings.HasPrefix(spec.OCIVersion, "1.0.") {
		return false // crun 1.8 refuses newer specs; nexcage says what to do
	}
	return true
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

// argv is the runtime's command line for the call.
func (p *plan) argv() []string {
	c, g := p.c, p.c.g
	a := []string{filepath.Base(p.bin), "--root", p.rtRoot}
	if g.log != "" {
		a = append(a, "--log", g.log, "--log-format", g.logFormat)
	}
	if g.systemdCgroup {
		a = append(a, "--systemd-cgroup")
	}
	if g.rootless != "" {
		a = append(a, "--rootless="+g.rootless)
	}
	a = append(a, c.verb)
	switch c.verb {
	case "create":
		a = append(a, "--bundle", c.bundle)
		if c.pidFile != "" {
			a = append(a, "--pid-file", c.pidFile)
		}
		if c.consoleSocket != "" {
			a = append(a, "--console-socket", c.consoleSocket)
		}
		if c.noPivot {
			a = append(a, "--no-pivot")
		}
		if c.noNewKeyring {
			a = append(a, "--no-new-keyring")
		}
		if c.preserveFDs > 0 {
			a = append(a, "--preserve-fds", strconv.Itoa(c.preserveFDs))
		}
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

// exec becomes the runtime. crun's create on a hybrid cgroup host first
// moves this thread into a private mount namespace without the cgroup2
// mount (see ocirun's hybrid.go), in process: the namespace of the
// thread that calls execve is the runtime's. It returns only on failure.
func (p *plan) exec() {
	argv := p.argv()
	if p.c.verb == "create" {
		if err := os.MkdirAll(p.rtRoot, 0o700); err != nil {
			return
		}
		if p.workaround() {
			// The thread stays locked: it is never handed back to Go
			// in another mount namespace (execve replaces the process;
			// a failure ends it below).
			goruntime.LockOSThread()
			if err := ocirun.DetachCgroup2(); err != nil {
				return
			}
		}
	}
	_ = execve(p.bin, argv, os.Environ())
}

// workaround tells whether crun's create needs the hybrid cgroup
// workaround (runtimes.crun.cgroup_workaround, as ocirun.Backend decides).
func (p *plan) workaround() bool {
	if p.name != config.BackendCrun {
		return p.rt.CgroupWorkaround == ocirun.WorkaroundAlways
	}
	switch p.rt.CgroupWorkaround {
	case ocirun.WorkaroundAlways:
		return true
	case ocirun.WorkaroundNever:
		return false
	}
	return ocirun.HybridWithV2Controllers(ocirun.CgroupRoot)
}

// state prints the container's state as the full CLI does, read from
// the runtime's state directory: running `runc state` would cost more
// than nexcage itself. What it cannot read goes to the full CLI, which
// asks the runtime.
func (p *plan) state() (int, bool) {
	st, ok := p.read()
	if !ok {
		return 0, false
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
// executable) with argv; it returns only on failure, with nexcage's exit
// code for an internal error. The binary is checked like a runtime
// (trust.LookPath): nexcage runs it as root.
func Delegate(argv []string) int {
	self, err := os.Executable()
	if err == nil {
		core := filepath.Join(filepath.Dir(self), CoreName)
		if core, err = trust.LookPath(core); err == nil {
			err = execve(core, append([]string{"nexcage"}, argv...), os.Environ())
		}
	}
	os.Stderr.WriteString("nexcage: cannot run " + CoreName + ", the full command line installed next to nexcage: " + err.Error() + " (reinstall nexcage)\n")
	return errs.ExitCode(errs.New(errs.KindInternal, "no core"))
}
