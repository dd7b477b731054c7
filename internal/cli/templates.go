package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexcage/nexcage/internal/backend/proxmox"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/logging"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/template"
)

// templatesCmd is `nexcage templates list|prune`: the cache of templates
// nexcage placed in the template storage (issue 5, cache hygiene).
func templatesCmd(inv *Invocation) *cobra.Command {
	c := &cobra.Command{
		Use:   "templates list|prune",
		Short: "Show or prune the templates nexcage placed in the template cache",
		Long: `Templates nexcage created in the template storage's cache (packed from
bundles, copied from paths, downloaded from URLs, built from OCI images) and
templates containers use. Official templates nexcage only used are listed
while a container uses them, and never pruned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usage("templates: name a subcommand: list or prune")
		},
	}
	var format string
	list := &cobra.Command{
		Use:   "list [--format table|json]",
		Short: "List cached templates: source, size, last use and the containers using each",
		Example: `  nexcage templates list
  nexcage templates list --format json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb, inv.Sub = "templates", "list"
			if format != "table" && format != "json" {
				return usage("templates list: unknown format %q (use table or json)", format)
			}
			inv.Format = format
			return noMore("templates list", args)
		},
	}
	list.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	var olderThan string
	prune := &cobra.Command{
		Use:   "prune [--older-than D] [--dry-run]",
		Short: "Remove cached templates no container uses",
		Long: `Remove the templates nexcage placed in the cache that no container uses
and that were last used longer than --older-than ago (default: any unused
one), and temporary files of interrupted downloads older than a day.
D is a Go duration (90m, 12h) or a number of days (7d).`,
		Example: `  nexcage templates prune --dry-run
  nexcage templates prune --older-than 30d`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb, inv.Sub = "templates", "prune"
			if olderThan != "" {
				d, err := ParseAge(olderThan)
				if err != nil {
					return err
				}
				inv.OlderThan = d
			}
			return noMore("templates prune", args)
		},
	}
	prune.Flags().StringVar(&olderThan, "older-than", "", "only templates unused for at least this long (e.g. 7d, 12h)")
	prune.Flags().BoolVar(&inv.DryRun, "dry-run", false, "show what would be removed, remove nothing")
	c.AddCommand(list, prune)
	return c
}

// ParseAge reads --older-than: a Go duration ("90m", "12h") or whole
// days ("7d"); never negative.
func ParseAge(s string) (time.Duration, error) {
	bad := func() error {
		return errs.New(errs.KindUsage, "--older-than %q is not a duration", s).WithHint("write it like 7d, 12h or 90m")
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, bad()
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad()
		}
		d = v
	}
	if d < 0 {
		return 0, bad()
	}
	return d, nil
}

// progressLog is where the start and end lines of long work go when
// stderr is not a terminal: the log file when there is one, else stderr
// at info level (the normal stderr level is warning, which would hide
// them).
func (a *App) progressLog() *slog.Logger {
	if a.log.ToFile {
		return a.log.Logger
	}
	l, err := logging.New(logging.Options{Format: a.inv.Globals.LogFormat, Level: "info", Debug: a.inv.Globals.Debug, Stderr: a.Stderr})
	if err != nil {
		return a.log.Logger
	}
	return l.Logger
}

// templates builds the resolver exactly as the Proxmox backend does.
func (a *App) templates() *template.Resolver {
	return proxmox.TemplateResolver(a.cfg, a.log.Logger, a.Stderr, a.progressLog())
}

// templatesVerb carries out `templates list|prune`.
func (a *App) templatesVerb(ctx context.Context) error {
	r := a.templates()
	switch a.inv.Sub {
	case "list":
		ents, err := r.List(ctx)
		if err != nil {
			return err
		}
		a.nameUsers(ents)
		if a.inv.Format == "json" {
			if ents == nil {
				ents = []template.Entry{}
			}
			return a.printJSON(ents, true)
		}
		return a.templatesTable(ents)
	case "prune":
		removed, err := r.Prune(ctx, a.inv.OlderThan, a.inv.DryRun)
		what := "removed"
		if a.inv.DryRun {
			what = "would remove"
		}
		for _, e := range removed {
			fmt.Fprintf(a.Stdout, "%s %s (%s)\n", what, e.VolID, humanSize(e.Size))
		}
		return err
	}
	return errs.New(errs.KindInternal, "templates %q has no implementation", a.inv.Sub)
}

// nameUsers replaces the references the backend records for containers
// of this state root (<hostname>-<random>) by their container ids.
func (a *App) nameUsers(ents []template.Entry) {
	store, err := state.NewStore(a.inv.Globals.Root)
	if err != nil {
		return
	}
	cs, err := store.List()
	if err != nil {
		return
	}
	byRef := map[string]string{}
	for _, c := range cs {
		if ref := c.Data[proxmox.DataTemplateRef]; ref != "" {
			byRef[ref] = c.ID
		}
	}
	for i := range ents {
		for j, u := range ents[i].Users {
			if id, ok := byRef[u]; ok {
				ents[i].Users[j] = id
			}
		}
	}
}

func (a *App) templatesTable(ents []template.Entry) error {
	w := tabwriter.NewWriter(a.Stdout, 8, 1, 3, ' ', 0)
	fmt.Fprint(w, "TEMPLATE\tSOURCE\tSIZE\tLAST USED\tUSED BY\n")
	for _, e := range ents {
		src := e.Source
		if src == "" {
			src = "-"
			if e.Form != "" {
				src = "(" + string(e.Form) + ")"
			}
		}
		last := "never"
		if !e.LastUsed.IsZero() {
			last = e.LastUsed.Local().Format(time.DateTime)
		}
		users := "-"
		if len(e.Users) > 0 {
			users = strings.Join(e.Users, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.VolID, src, humanSize(e.Size), last, users)
	}
	return w.Flush()
}

// humanSize prints n bytes in binary units (1.5MiB).
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
