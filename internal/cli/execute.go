package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// execute carries out a.inv and returns the exit status.
func (a *App) execute(ctx context.Context) (int, error) {
	inv := a.inv
	switch inv.Verb {
	case "spec":
		return 0, a.spec()
	case "features":
		return 0, a.features(ctx)
	case "version":
		return 0, a.version(ctx)
	case "health":
		return a.health(ctx)
	case "templates":
		return 0, a.templatesVerb(ctx)
	}
	m, err := a.manager()
	if err != nil {
		return 0, err
	}
	switch inv.Verb {
	case "create":
		a.stdio(&inv.Create.Options)
		// SIGINT/SIGTERM cancel the create: every undo step runs, then
		// nexcage exits 128+n (docs/CLI.md).
		ictx, stop := runtime.WithInterrupt(ctx)
		_, err := m.Create(ictx, inv.Create)
		if sig := stop(); err != nil {
			return 0, runtime.Interrupt(sig, err)
		}
		return 0, nil
	case "run":
		a.stdio(&inv.Create.Options)
		if !inv.Detach {
			// The foreground run handles signals itself: they cancel the
			// create, then go to the container.
			return m.Run(ctx, inv.Create, false)
		}
		ictx, stop := runtime.WithInterrupt(ctx)
		code, err := m.Run(ictx, inv.Create, true)
		if sig := stop(); err != nil {
			return code, runtime.Interrupt(sig, err)
		}
		return code, nil
	case "start":
		return 0, m.Start(ctx, inv.ID)
	case "state":
		c, err := m.State(ctx, inv.ID)
		if err != nil {
			return 0, err
		}
		return 0, a.printJSON(toOCIState(c), true)
	case "kill":
		return 0, m.Kill(ctx, inv.ID, inv.Signal, inv.All)
	case "delete":
		// Interrupted, pct gets SIGTERM (not left running on its own);
		// the record stays for another delete.
		ictx, stop := runtime.WithInterrupt(ctx)
		err := m.Delete(ictx, inv.ID, inv.Force)
		if sig := stop(); err != nil {
			return 0, runtime.Interrupt(sig, err)
		}
		return 0, nil
	case "stop":
		return 0, m.Stop(ctx, inv.ID, inv.Timeout)
	case "list":
		return 0, a.list(ctx, m)
	case "route":
		return 0, a.route(m)
	}
	if _, ok := passthroughVerbs[inv.Verb]; ok {
		return m.Passthrough(ctx, inv.ID, inv.Verb, inv.PassArgs, runtime.Stdio{Stdin: a.Stdin, Stdout: a.Stdout, Stderr: a.Stderr})
	}
	return 0, errs.New(errs.KindInternal, "verb %q has no implementation", inv.Verb)
}

// stdio hands the caller's streams to create/run.
func (a *App) stdio(o *runtime.CreateOptions) {
	o.Stdin, o.Stdout, o.Stderr = a.Stdin, a.Stdout, a.Stderr
}

func (a *App) printJSON(v any, indent bool) error {
	var data []byte
	var err error
	if indent {
		data, err = json.MarshalIndent(v, "", "  ")
	} else {
		data, err = json.Marshal(v)
	}
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "cannot encode output")
	}
	_, err = a.Stdout.Write(append(data, '\n'))
	return err
}

func toOCIState(c *state.Container) state.OCIState {
	return c.OCIState(bundle.SpecVersion)
}

func (a *App) list(ctx context.Context, m *runtime.Manager) error {
	cs, err := m.List(ctx)
	if err != nil {
		return err
	}
	if f := a.inv.Globals.Runtime; f != "" {
		name, err := config.NormalizeRuntime(f)
		if err != nil {
			return err
		}
		kept := cs[:0]
		for _, c := range cs {
			if c.Backend == name {
				kept = append(kept, c)
			}
		}
		cs = kept
	}
	if a.inv.Quiet {
		for _, c := range cs {
			fmt.Fprintln(a.Stdout, c.ID)
		}
		return nil
	}
	if a.inv.Format == "json" {
		out := make([]state.OCIState, 0, len(cs))
		for _, c := range cs {
			out = append(out, toOCIState(c))
		}
		return a.printJSON(out, false)
	}
	owner := ownerName()
	w := tabwriter.NewWriter(a.Stdout, 12, 1, 3, ' ', 0)
	fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\tBACKEND\n")
	for _, c := range cs {
		s := toOCIState(c)
		where := s.Bundle
		if where == "" {
			where = s.Image
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, where,
			s.Created.Format(time.RFC3339Nano), owner, s.Backend)
	}
	return w.Flush()
}

// ownerName is the user owning the containers, as runc's list shows it.
func ownerName() string {
	uid := strconv.Itoa(os.Geteuid())
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return "#" + uid
}

func (a *App) route(m *runtime.Manager) error {
	d, err := m.Decide(a.inv.ID, a.inv.Globals.Runtime, a.inv.Bundle)
	if err != nil {
		return err
	}
	if a.inv.Format == "json" {
		return a.printJSON(map[string]string{"id": a.inv.ID, "backend": d.Backend, "reason": d.Reason}, true)
	}
	_, err = fmt.Fprintf(a.Stdout, "%s -> %s (%s)\n", a.inv.ID, d.Backend, d.Reason)
	return err
}

// spec writes bundle.DefaultSpec() as <bundle>/config.json, refusing to
// overwrite one, like runc.
func (a *App) spec() error {
	dir := a.inv.Bundle
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return errs.New(errs.KindNotFound, "spec: bundle directory %s does not exist", dir)
	}
	path := filepath.Join(dir, "config.json")
	data, err := json.MarshalIndent(bundle.DefaultSpec(), "", "\t")
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "cannot encode the default spec")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return errs.New(errs.KindAlreadyExists, "File %s exists. Remove it first", path)
	}
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "cannot write %s", path)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		_ = f.Close()
		return errs.Wrap(errs.KindInternal, err, "cannot write %s", path)
	}
	return f.Close()
}
