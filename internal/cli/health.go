package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/health"
)

// healthCmd is `nexcage health [--format text|json] [--id <sample>]`.
func healthCmd(inv *Invocation) *cobra.Command {
	var format, id string
	c := &cobra.Command{
		Use:   "health [--format text|json] [--id <sample-id>]",
		Short: "Check that this host can run nexcage (config, Proxmox, runc/crun, cgroups, routing)",
		Long: `Check that this host can run nexcage: the config file parses; the state
root is writable; pct, pveam and pvesh are found and answer; /etc/pve (or
proxmox.etc_pve) is readable and names this node; storage.cfg has storages
for container root disks (content rootdir) and templates (content vztmpl),
including the configured ones; the configured bridge exists; runc and crun
are found (with versions) and whether crun needs the hybrid cgroup
workaround here; the cgroup layout (v1, v2, hybrid); the LXC tools; the
routing rules compile, and which backend --id would get.

Each check prints PASS, WARN or FAIL and, unless it passed, one line of
advice. A problem with a backend no route leads to is only a warning.

Exit status: 0 every check passed, 1 at least one FAIL, 2 warnings only.`,
		Example: `  nexcage health
  nexcage health --format json
  nexcage --config /etc/nexcage/config.json health --id cilium-agent`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "health"
			if format != "text" && format != "json" {
				return usage("health: unknown format %q (use text or json)", format)
			}
			inv.Format, inv.ID = format, id
			return noMore("health", args)
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "text", "text or json")
	c.Flags().StringVar(&id, "id", health.DefaultSampleID, "container id whose route the routing check shows")
	return c
}

// health runs the checks and prints the report on stdout. The status is
// the report's (0, 1 or 2); only a failure to print is an error.
func (a *App) health(ctx context.Context) (int, error) {
	// The config is loaded again so that a broken file is a FAIL of the
	// config check (with the other checks on the defaults) rather than
	// the end of the command.
	cfg, warnings, err := config.Load(a.inv.Globals.Config)
	if err != nil {
		cfg = config.Default()
	}
	r := health.Run(ctx, health.Env{
		Config:         cfg,
		ConfigErr:      err,
		ConfigWarnings: warnings,
		Root:           a.inv.Globals.Root,
		SampleID:       a.inv.ID,
	})
	if a.inv.Format == "json" {
		err = r.WriteJSON(a.Stdout)
	} else {
		err = r.WriteText(a.Stdout)
	}
	return r.ExitCode(), err
}
