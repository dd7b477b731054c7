package cli

import (
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexcage/nexcage/internal/fastpath"
	"github.com/nexcage/nexcage/internal/signals"
)

// idCmd builds a verb taking just <id> or --name <id>.
func idCmd(inv *Invocation, verb, short string, extra func(*cobra.Command)) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   verb + " <id> | " + verb + " --name <id>",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = verb
			id, rest, err := idFrom(verb, name, args)
			if err != nil {
				return err
			}
			inv.ID = id
			return noMore(verb, rest)
		},
	}
	c.Flags().StringVar(&name, "name", "", "container id (nexcage style)")
	if extra != nil {
		extra(c)
	}
	return c
}

func startCmd(inv *Invocation) *cobra.Command {
	return idCmd(inv, "start", "Run the process of a created container", nil)
}

func stateCmd(inv *Invocation) *cobra.Command {
	return idCmd(inv, "state", "Print the container's OCI state as JSON", nil)
}

func deleteCmd(inv *Invocation) *cobra.Command {
	return idCmd(inv, "delete", "Delete a stopped container (--force: also a running one)", func(c *cobra.Command) {
		c.Flags().BoolVarP(&inv.Force, "force", "f", false, "kill the container first if it is running; succeed if it does not exist")
	})
}

func stopCmd(inv *Invocation) *cobra.Command {
	var secs int
	c := idCmd(inv, "stop", "Stop a container gracefully (SIGTERM, then SIGKILL after --timeout)", func(c *cobra.Command) {
		c.Flags().IntVarP(&secs, "timeout", "t", 10, "seconds to wait before killing")
	})
	run := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if secs < 0 {
			return usage("stop: --timeout must not be negative")
		}
		inv.Timeout = time.Duration(secs) * time.Second
		return run(cmd, args)
	}
	return c
}

func killCmd(inv *Invocation) *cobra.Command {
	var name, sig string
	c := &cobra.Command{
		Use:   "kill <id> [SIGNAL] | kill --signal SIGNAL <id>",
		Short: "Send a signal (default SIGTERM) to the container's init process",
		Example: `  nexcage kill c1 KILL
  nexcage kill c1 9
  nexcage kill -s SIGKILL c1
  nexcage kill --name c1 --signal TERM`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "kill"
			id, rest, err := idFrom("kill", name, args)
			if err != nil {
				return err
			}
			inv.ID = id
			if len(rest) > 1 {
				return usage("kill: unexpected arguments %q", rest[1:])
			}
			s := sig
			if len(rest) == 1 {
				if s != "" && s != rest[0] {
					return usage("kill: signal given twice (%q and %q)", s, rest[0])
				}
				s = rest[0]
			}
			if s == "" {
				s = "SIGTERM"
			}
			n, err := signals.Parse(s)
			if err != nil {
				return err
			}
			inv.Signal = n
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "container id (nexcage style)")
	c.Flags().StringVarP(&sig, "signal", "s", "", "signal: number, name or SIG-name (default SIGTERM)")
	c.Flags().BoolVarP(&inv.All, "all", "a", false, "send the signal to all processes of the container")
	return c
}

func listCmd(inv *Invocation) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "list",
		Short: "List containers of all backends",
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "list"
			inv.Format = format
			if inv.Format != "table" && inv.Format != "json" {
				return usage("list: unknown format %q (use table or json)", inv.Format)
			}
			return noMore("list", args)
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	c.Flags().BoolVarP(&inv.Quiet, "quiet", "q", false, "print only the ids")
	return c
}

func routeCmd(inv *Invocation) *cobra.Command {
	var format, name, bundleDir string
	c := &cobra.Command{
		Use:   "route <id> | route --bundle <dir> [<id>]",
		Short: "Tell which backend a container goes to, and why",
		Long: `Tell which backend a container goes to, and why, as create would decide.
With --bundle, the bundle's annotations (a Kubernetes pod's identity) and, for
a pod's container, the backend recorded for its sandbox take part; the id
defaults to the bundle directory's name (containerd names bundles by id).`,
		Example: `  nexcage route cilium-agent
  nexcage --root /run/containerd/runc/k8s.io route --bundle /run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "route"
			inv.Format = format
			if inv.Format != "text" && inv.Format != "json" {
				return usage("route: unknown format %q (use text or json)", inv.Format)
			}
			inv.Bundle = bundleDir
			if bundleDir != "" && name == "" && len(args) == 0 {
				abs, err := filepath.Abs(bundleDir)
				if err != nil {
					return usage("route: bundle path %s: %v", bundleDir, err)
				}
				inv.ID = filepath.Base(abs)
				return nil
			}
			id, rest, err := idFrom("route", name, args)
			if err != nil {
				return err
			}
			inv.ID = id
			return noMore("route", rest)
		},
	}
	c.Flags().StringVar(&name, "name", "", "container id (nexcage style)")
	c.Flags().StringVarP(&format, "format", "f", "text", "text or json")
	c.Flags().StringVarP(&bundleDir, "bundle", "b", "", "decide for this OCI bundle (its annotations), as create would")
	return c
}

func specCmd(inv *Invocation) *cobra.Command {
	var rootless bool
	c := &cobra.Command{
		Use:   "spec [--bundle <dir>]",
		Short: "Write a default config.json (busybox-ready, like `runc spec`)",
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "spec"
			if rootless {
				return usage("spec: --rootless is not supported")
			}
			if inv.Bundle == "" {
				inv.Bundle = "."
			}
			return noMore("spec", args)
		},
	}
	c.Flags().StringVarP(&inv.Bundle, "bundle", "b", "", "bundle directory (default: current directory)")
	c.Flags().BoolVar(&rootless, "rootless", false, "not supported")
	return c
}

func featuresCmd(inv *Invocation) *cobra.Command {
	c := &cobra.Command{
		Use:   "features",
		Short: "Print the runtime-spec features of the backend that would run a container (JSON)",
		Long: `Print the runtime-spec features (JSON) of the backend that would run a
container: the one --runtime names, else the route of --id, else
container_config.default_container_type. For runc and crun it is the
runtime's own "features" output; for the Proxmox backend what it maps
(docs/CLI.md says how it is computed).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "features"
			return noMore("features", args)
		},
	}
	c.Flags().StringVar(&inv.ID, "id", "", "answer for the backend this container id is routed to")
	return c
}

func versionCmd(inv *Invocation) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print nexcage's version, the spec version and the backends found",
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "version"
			return noMore("version", args)
		},
	}
}

// passthroughCmd is a runc verb handed to the container's backend.
func passthroughCmd(inv *Invocation, verb string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " [runc flags] <id> ...",
		Short: "runc's " + verb + ", passed through to runc/crun-routed containers",
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = verb
			id, err := passthroughID(verb, inv.PassArgs)
			if err != nil {
				return err
			}
			inv.ID = id
			return nil
		},
	}
}

// passthroughID finds the container id among a passthrough verb's
// arguments: the first argument that is neither a flag nor a flag value.
func passthroughID(verb string, args []string) (string, error) {
	if id, ok := fastpath.PassthroughID(verb, args); ok {
		return id, nil
	}
	return "", usage("%s: container id missing", verb)
}
