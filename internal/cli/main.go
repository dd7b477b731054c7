package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/logging"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
)

// App runs nexcage with the given standard streams.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Program is the base name nexcage was called by (argv[0]): a link
	// named nexcage-<runtime> forces that backend (config.ProgramBackend).
	Program string

	inv *Invocation
	cfg *config.Config
	log *logging.Logger
	mgr *runtime.Manager
}

// Main runs nexcage with argv (without the program name) on the process's
// stdio and returns the exit status.
func Main(argv []string) int {
	a := &App{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Program: filepath.Base(os.Args[0])}
	return a.Main(context.Background(), argv)
}

// Main parses argv, carries it out and returns the exit status: 0, the
// container's status for run and passthrough verbs, or the error kind's
// code (docs/CLI.md).
func (a *App) Main(ctx context.Context, argv []string) int {
	if len(argv) > 0 {
		// Hidden helper verbs: no config, no logging setup.
		switch argv[0] {
		case ocirun.HelperVerb:
			return ocirun.HelperMain(argv[1:])
		case inithelper.InitVerb:
			return inithelper.InitMain(argv[1:])
		case inithelper.ExecVerb:
			return inithelper.ExecMain(argv[1:])
		case inithelper.PodRunVerb:
			return inithelper.PodRunMain(argv[1:])
		case supervisor.Verb:
			return supervisor.Main(argv[1:])
		}
	}
	inv, err := Parse(argv, a.Stdout, a.Stderr)
	if err != nil {
		a.report(err)
		return errs.ExitCode(err)
	}
	if inv.Verb == "" { // help or --version was printed
		return 0
	}
	a.inv = inv
	if err := a.setup(); err != nil {
		a.report(err)
		a.close()
		return errs.ExitCode(err)
	}
	defer a.close()
	code, err := a.execute(ctx)
	if err != nil {
		a.report(err)
		return runtime.ExitCode(err)
	}
	return code
}

// setup loads the config and opens the log. spec works without a
// config (features needs it: the route and the runtimes' paths);
// version and health tolerate a broken one (health reports it as a
// failed check).
func (a *App) setup() error {
	g := &a.inv.Globals
	var cfgErr error
	switch a.inv.Verb {
	case "spec":
		a.cfg = config.Default()
	default:
		var warnings []string
		a.cfg, warnings, cfgErr = config.Load(g.Config)
		if cfgErr != nil {
			a.cfg = config.Default()
		}
		defer func() {
			for _, w := range warnings {
				a.log.Warn(w)
			}
		}()
	}
	logFile, level := g.Log, a.cfg.Runtime.LogLevel
	if logFile == "" {
		logFile = a.cfg.Runtime.LogPath
	}
	if logFile == "" && !strings.EqualFold(level, "debug") {
		// On stderr only warnings and errors unless debugging: stderr
		// is shared with the container for create and run.
		level = "warning"
	}
	l, err := logging.New(logging.Options{File: logFile, Format: g.LogFormat, Level: level, Debug: g.Debug, Stderr: a.Stderr})
	if err != nil {
		// Fall back to stderr so the error itself can be reported.
		a.log, _ = logging.New(logging.Options{Stderr: a.Stderr, Format: "text"})
		return err
	}
	a.log = l
	if cfgErr != nil && a.inv.Verb == "version" {
		// version still answers, with the defaults; say why they apply
		// (a refused file is otherwise silent here).
		a.log.Warn("config not loaded, showing the defaults: " + strings.ReplaceAll(cfgErr.Error(), "\n", " "))
	}
	if cfgErr != nil && a.inv.Verb != "version" && a.inv.Verb != "health" {
		return cfgErr
	}
	if !g.RootSet && a.cfg.Runtime.RootPath != "" {
		g.Root = a.cfg.Runtime.RootPath
	}
	return nil
}

func (a *App) close() {
	if a.log != nil {
		_ = a.log.Close()
	}
}

// report prints err on stderr as one line and, when logging to a file,
// also logs it there at error level (containerd reads the last error
// line of --log).
func (a *App) report(err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if a.log != nil && a.log.ToFile {
		a.log.Error(msg, "kind", errs.KindOf(err).String())
	} else if a.log != nil {
		a.log.Debug("failed", "kind", errs.KindOf(err).String())
	}
	fmt.Fprintf(a.Stderr, "nexcage: %s\n", msg)
}

// manager builds the lifecycle manager on first use, so that verbs that do
// not need the state root never create it.
func (a *App) manager() (*runtime.Manager, error) {
	if a.mgr != nil {
		return a.mgr, nil
	}
	store, err := state.NewStore(a.inv.Globals.Root)
	if err != nil {
		return nil, err
	}
	router, err := a.cfg.Router()
	if err != nil {
		return nil, err
	}
	a.mgr = &runtime.Manager{
		Store: store,
		Route: func(q runtime.RouteRequest) (runtime.Decision, error) {
			d, err := router.Decide(config.Request{ID: q.ID, Override: q.Override, Program: a.Program,
				Annotations: q.Annotations, SandboxBackend: q.SandboxBackend})
			return runtime.Decision{Backend: d.Backend, Reason: d.Reason}, err
		},
		Backends:   a.backends(store),
		Log:        a.log.Logger,
		Recordless: []string{config.BackendRunc, config.BackendCrun},
	}
	return a.mgr, nil
}
