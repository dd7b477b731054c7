// Package cli is nexcage's command line. It serves two kinds of callers
// with one verb set: the runc contract (containerd, runtime-tools) and
// the nexcage style users of the original know (--name, --image, stop,
// route). Parsing (this file and one file per verb) only fills an
// Invocation; execute.go carries it out.
package cli

import (
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/fastpath"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/version"
)

// DefaultRoot is the state root when neither --root nor the config's
// runtime.root_path is given.
const DefaultRoot = fastpath.DefaultRoot

// Globals are the flags given before (or after) the verb.
type Globals struct {
	Root          string
	RootSet       bool // --root was given explicitly
	Log           string
	LogFormat     string
	Debug         bool
	SystemdCgroup bool
	Rootless      string
	Config        string
	Runtime       string // --runtime: force a backend (list: filter)
}

// Invocation is what one command line asks for.
type Invocation struct {
	Verb    string
	Globals Globals
	ID      string

	// create, run
	Create runtime.CreateRequest
	Detach bool

	// kill
	Signal syscall.Signal
	All    bool

	// delete
	Force bool

	// list, route, ps
	Format string
	Quiet  bool

	// stop
	Timeout time.Duration

	// spec
	Bundle string

	// templates: Sub is "list" or "prune"
	Sub       string
	OlderThan time.Duration
	DryRun    bool

	// ps, exec, pause, resume, update: the arguments after the verb,
	// passed to the backend unchanged.
	PassArgs []string
}

// passthroughVerbs are runc verbs whose arguments nexcage does not parse
// (the fast path's table).
var passthroughVerbs = fastpath.PassthroughVerbs

// newRoot builds the command tree; every RunE fills inv.
func newRoot(inv *Invocation) *cobra.Command {
	root := &cobra.Command{
		Use:   "nexcage",
		Short: "OCI runtime for Proxmox VE (routes chosen containers to runc or crun)",
		Long: `nexcage runs OCI bundles and Proxmox templates as Proxmox LXC containers
through pct, and routes chosen container ids to runc or crun instead.
It speaks runc's command line (for containerd) and the original nexcage's.`,
		Version:       version.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("nexcage version {{.Version}}\n")
	f := root.PersistentFlags()
	g := &inv.Globals
	f.StringVar(&g.Root, "root", DefaultRoot, "state directory (default: config runtime.root_path, else "+DefaultRoot+")")
	f.StringVar(&g.Log, "log", "", "log file (default: stderr; config runtime.log_path)")
	f.StringVar(&g.LogFormat, "log-format", "text", "log format: text or json")
	f.BoolVar(&g.Debug, "debug", false, "enable debug logging")
	f.BoolVar(&g.SystemdCgroup, "systemd-cgroup", false, "use systemd cgroups (passed to runc/crun)")
	f.StringVar(&g.Rootless, "rootless", "", "accepted for runc compatibility (passed to runc/crun)")
	f.StringVar(&g.Config, "config", "", "config file, an absolute path (default: $NEXCAGE_CONFIG, /etc/nexcage/config.json, /etc/nexcage/nexcage.json)")
	f.StringVar(&g.Runtime, "runtime", "", "force a backend: lxc|proxmox-lxc|runc|crun (list: show only this backend)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return errs.Wrap(errs.KindUsage, err, "invalid command line")
	})
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		g.RootSet = cmd.Flags().Changed("root")
	}
	for _, c := range []*cobra.Command{
		createCmd(inv), runCmd(inv), startCmd(inv), stateCmd(inv), killCmd(inv), deleteCmd(inv),
		listCmd(inv), stopCmd(inv), routeCmd(inv), specCmd(inv), featuresCmd(inv), versionCmd(inv), healthCmd(inv),
		templatesCmd(inv),
	} {
		root.AddCommand(c)
	}
	for verb := range passthroughVerbs {
		root.AddCommand(passthroughCmd(inv, verb))
	}
	return root
}

// Parse turns argv (without the program name) into an Invocation.
// A help request returns an Invocation with an empty Verb.
func Parse(argv []string, out, errOut interface{ Write([]byte) (int, error) }) (*Invocation, error) {
	inv := &Invocation{}
	root := newRoot(inv)
	root.SetOut(out)
	root.SetErr(errOut)
	args := argv
	// Passthrough verbs: cobra parses only what precedes the verb.
	if i := verbIndex(root.PersistentFlags(), argv); i >= 0 {
		if _, ok := passthroughVerbs[argv[i]]; ok {
			args = argv[:i+1]
			inv.PassArgs = append([]string{}, argv[i+1:]...)
		}
	}
	root.SetArgs(args)
	if _, err := root.ExecuteC(); err != nil {
		if errs.KindOf(err) == errs.KindInternal {
			// cobra's own errors (unknown command, missing args ...)
			err = errs.Wrap(errs.KindUsage, err, "invalid command line").WithHint("see nexcage --help")
		}
		return nil, err
	}
	return inv, nil
}

// verbIndex finds the verb in argv by skipping global flags (and their
// values); -1 when there is none.
func verbIndex(globals *pflag.FlagSet, argv []string) int {
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			return -1
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return i
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		var fl *pflag.Flag
		if strings.HasPrefix(a, "--") {
			fl = globals.Lookup(name)
		} else if len(name) == 1 {
			fl = globals.ShorthandLookup(name)
		}
		if fl != nil && fl.Value.Type() != "bool" {
			i++
		}
	}
	return -1
}

// usage is a command line error.
func usage(format string, args ...any) error {
	return errs.New(errs.KindUsage, format, args...).WithHint("see nexcage --help")
}

// idFrom picks the container id from --name or the first positional
// argument, refusing two different ones. rest is what remains.
func idFrom(verb, name string, args []string) (id string, rest []string, err error) {
	switch {
	case name != "" && len(args) > 0 && args[0] == name:
		return name, args[1:], nil
	case name != "":
		return name, args, nil
	case len(args) > 0:
		return args[0], args[1:], nil
	}
	return "", nil, usage("%s: container id missing (give <id> or --name <id>)", verb)
}

// noMore refuses extra positional arguments.
func noMore(verb string, rest []string) error {
	if len(rest) > 0 {
		return usage("%s: unexpected arguments %q", verb, rest)
	}
	return nil
}
