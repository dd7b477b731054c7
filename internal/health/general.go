package health

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/config"
)

// uses reports whether the config can send a container to backend: it is
// the default, or a routing rule or crun_name_patterns name it.
func uses(c *config.Config, backend string) bool {
	if b, err := config.NormalizeRuntime(c.ContainerConfig.DefaultContainerType); err == nil && b == backend {
		return true
	}
	for _, r := range c.Runtime.Routing {
		if b, err := config.NormalizeRuntime(r.Runtime); err == nil && b == backend {
			return true
		}
	}
	return backend == config.BackendCrun && len(c.ContainerConfig.CrunNamePatterns) > 0
}

// severity is FAIL for a problem with a backend the config uses, else
// WARN: a missing crun matters only if something is routed to crun.
func severity(c *config.Config, backend string) Status {
	if uses(c, backend) {
		return Fail
	}
	return Warn
}

// unused explains a downgraded problem.
func unused(c *config.Config, backend string) string {
	if uses(c, backend) {
		return ""
	}
	return fmt.Sprintf(" (no route leads to %s, so this only matters if you add one)", backend)
}

func checkConfig(_ context.Context, e *Env) Result {
	if e.ConfigErr != nil {
		return result(Fail, oneLine(e.ConfigErr.Error()),
			"fix the file (see /usr/share/doc/nexcage/CONFIG.md); the other checks used the built-in defaults")
	}
	where := "no config file found; using the built-in defaults"
	if e.Config.Path != "" {
		where = e.Config.Path + " parsed"
	}
	if len(e.ConfigWarnings) > 0 {
		return result(Warn, where+"; "+oneLine(strings.Join(e.ConfigWarnings, "; ")),
			"remove or correct the keys named (see CONFIG.md)")
	}
	return pass("%s", where)
}

// checkStateRoot checks that the state root is a writable directory, or
// can be created: an existing one gets a probe file (removed at once).
func checkStateRoot(_ context.Context, e *Env) Result {
	root := e.Root
	if root == "" {
		root = e.Config.Runtime.RootPath
	}
	if !filepath.IsAbs(root) {
		if abs, err := filepath.Abs(root); err == nil {
			root = abs
		}
	}
	fi, err := os.Stat(root)
	switch {
	case err == nil && !fi.IsDir():
		return result(Fail, root+" exists and is not a directory", "remove it or choose another --root / runtime.root_path")
	case err == nil:
		f, err := os.CreateTemp(root, ".nexcage-health-*")
		if err != nil {
			return result(Fail, fmt.Sprintf("%s is not writable: %v", root, err),
				"run nexcage as root, or choose a writable --root / runtime.root_path")
		}
		name := f.Name()
		_ = f.Close()
		_ = os.Remove(name)
		return pass("%s is a writable directory", root)
	case !errors.Is(err, fs.ErrNotExist):
		return result(Fail, fmt.Sprintf("%s: %v", root, err), "check the permissions of the state root and its parents")
	}
	// Missing: it is created on first use if its nearest existing parent
	// is writable. Only ask, do not create anything.
	parent := filepath.Dir(root)
	for {
		if _, err := os.Stat(parent); err == nil || parent == "/" {
			break
		}
		parent = filepath.Dir(parent)
	}
	if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
		return result(Fail, fmt.Sprintf("%s does not exist and %s is not writable: %v", root, parent, err),
			"create it as root, or choose a writable --root / runtime.root_path")
	}
	return pass("%s does not exist yet; it will be created (%s is writable)", root, parent)
}

func checkRouting(_ context.Context, e *Env) Result {
	if e.ConfigErr != nil {
		return result(Fail, "routing not checked: the config did not load", "fix the config first (see the config check)")
	}
	r, err := e.Config.Router()
	if err != nil {
		return result(Fail, oneLine(err.Error()), "fix runtime.routing / container_config (see CONFIG.md)")
	}
	n := len(e.Config.Runtime.Routing)
	d, err := r.Route(e.SampleID, "")
	if err != nil {
		return result(Fail, fmt.Sprintf("%d rules compile, but %s", n, oneLine(err.Error())),
			"route ids to lxc, runc or crun; Proxmox VMs are not supported")
	}
	return pass("%d rules compile; %q -> %s (%s)", n, e.SampleID, d.Backend, d.Reason)
}

// oneLine joins a multi-line message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
