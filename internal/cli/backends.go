package cli

import (
	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/backend/proxmox"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// backends registers every backend nexcage knows. Each is built lazily, on
// the first command that needs it.
func (a *App) backends(store *state.Store) *runtime.Registry {
	r := runtime.NewRegistry()
	for name, rc := range map[string]config.OCIRuntime{
		config.BackendRunc: a.cfg.Runtimes.Runc,
		config.BackendCrun: a.cfg.Runtimes.Crun,
	} {
		r.Register(name, func() (runtime.Backend, error) {
			return ocirun.New(a.ociOptions(name, rc, store.BackendRoot(name)))
		})
	}
	r.Register(config.BackendProxmox, func() (runtime.Backend, error) {
		b, err := proxmox.New(a.cfg, a.log.Logger)
		if err != nil {
			return nil, err
		}
		// Its private directory in the state root: the node version cache.
		b.StateDir = store.BackendRoot(config.BackendProxmox)
		// Progress of packing, downloads and pulls: a bar on a terminal
		// stderr, else start/end lines that the stderr log level keeps.
		b.SetTemplates(a.templates())
		return b, nil
	})
	return r
}

func (a *App) ociOptions(name string, rc config.OCIRuntime, root string) ocirun.Options {
	g := a.inv.Globals
	o := ocirun.Options{
		Name: name, Path: rc.Path, Root: root,
		Debug: g.Debug, SystemdCgroup: g.SystemdCgroup, Rootless: g.Rootless,
		CgroupWorkaround: rc.CgroupWorkaround,
		Logger:           a.log.Logger,
	}
	// Only a log file the caller named explicitly is shared with the
	// runtime (containerd reads runc's errors from it).
	if g.Log != "" {
		o.Log, o.LogFormat = g.Log, g.LogFormat
	}
	return o
}
