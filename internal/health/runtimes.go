package health

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/config"
)

// Cgroup layouts.
const (
	CgroupV1     = "v1"
	CgroupV2     = "v2"
	CgroupHybrid = "hybrid"
)

// CgroupLayout describes how cgroups are mounted.
type CgroupLayout struct {
	Mode string // CgroupV1, CgroupV2 or CgroupHybrid
	// UnifiedControllers are the controllers of the cgroup2 hierarchy at
	// <root>/unified in hybrid mode.
	UnifiedControllers []string
	// CrunNeedsWorkaround: crun refuses hybrid hosts whose cgroup2
	// hierarchy has controllers (see internal/backend/ocirun/hybrid.go).
	CrunNeedsWorkaround bool
}

// DetectCgroups reads the layout under root with fstype (statfs).
func DetectCgroups(root string, fstype func(string) (int64, error)) (CgroupLayout, error) {
	t, err := fstype(root)
	if err != nil {
		return CgroupLayout{}, err
	}
	switch t {
	case unix.CGROUP2_SUPER_MAGIC:
		return CgroupLayout{Mode: CgroupV2}, nil
	case unix.TMPFS_MAGIC:
	default:
		return CgroupLayout{}, fmt.Errorf("%s is neither cgroup2 nor a tmpfs of cgroup v1 hierarchies (fs type %#x)", root, t)
	}
	unified := filepath.Join(root, "unified")
	if t, err := fstype(unified); err != nil || t != unix.CGROUP2_SUPER_MAGIC {
		return CgroupLayout{Mode: CgroupV1}, nil
	}
	l := CgroupLayout{Mode: CgroupHybrid}
	data, _ := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	l.UnifiedControllers = strings.Fields(string(data))
	l.CrunNeedsWorkaround = len(l.UnifiedControllers) > 0
	return l, nil
}

func (l CgroupLayout) String() string {
	switch l.Mode {
	case CgroupV2:
		return "v2 (unified)"
	case CgroupV1:
		return "v1 (no cgroup2 hierarchy)"
	}
	if len(l.UnifiedControllers) == 0 {
		return "hybrid (v1 controllers; cgroup2 at unified/ without controllers)"
	}
	return fmt.Sprintf("hybrid (v1 controllers; cgroup2 at unified/ with %s)", strings.Join(l.UnifiedControllers, ","))
}

func checkCgroup(_ context.Context, e *Env) Result {
	l, err := DetectCgroups(e.CgroupRoot, e.FSType)
	if err != nil {
		return result(Fail, fmt.Sprintf("cannot tell the cgroup layout: %v", err),
			"mount cgroups (cgroup2 at /sys/fs/cgroup, as Proxmox VE 8 and later do)")
	}
	if l.Mode == CgroupV1 {
		return result(Warn, "cgroup "+l.String(),
			"Proxmox VE 8 and later expect cgroup v2; boot with systemd.unified_cgroup_hierarchy=1")
	}
	return pass("cgroup %s", l.String())
}

// runtimeCheck checks that runc or crun is found and prints its version;
// for crun also whether the hybrid cgroup workaround is needed here and
// whether the config lets nexcage apply it.
func runtimeCheck(name string) func(context.Context, *Env) Result {
	return func(ctx context.Context, e *Env) Result {
		rc := e.Config.Runtimes.Runc
		if name == config.BackendCrun {
			rc = e.Config.Runtimes.Crun
		}
		sev := severity(e.Config, name)
		note := unused(e.Config, name)
		key := "runtimes." + name + ".path"
		bin := rc.Path
		if bin == "" {
			bin = name
		}
		path, err := e.LookPath(bin)
		if r, ok := untrusted(sev, key, bin, note, err); ok {
			return r
		}
		if err != nil {
			return result(sev, fmt.Sprintf("%s not found (%s %q)%s", name, key, bin, note),
				fmt.Sprintf("apt-get install %s, or set %s", name, key))
		}
		cctx, cancel := context.WithTimeout(ctx, e.Timeout)
		defer cancel()
		out, stderr, err := e.Command(cctx, path, "--version")
		if err != nil {
			why := lastLine(stderr)
			if why == "" {
				why = err.Error()
			}
			return result(sev, fmt.Sprintf("%s --version failed: %s%s", path, why, note), fmt.Sprintf("reinstall %s or fix %s", name, key))
		}
		v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		detail := fmt.Sprintf("%s (%s)", strings.TrimSpace(v), path)
		if name != config.BackendCrun {
			return pass("%s", detail)
		}
		l, err := DetectCgroups(e.CgroupRoot, e.FSType)
		if err != nil || !l.CrunNeedsWorkaround {
			return pass("%s; no cgroup workaround needed here", detail)
		}
		mode := rc.CgroupWorkaround
		if mode == "" {
			mode = "auto"
		}
		if mode == "never" {
			return result(sev, detail+"; this hybrid cgroup host needs the crun workaround but runtimes.crun.cgroup_workaround is \"never\""+note,
				"set runtimes.crun.cgroup_workaround to \"auto\" (crun refuses hybrid hosts otherwise)")
		}
		return pass("%s; hybrid cgroup host: nexcage applies the crun workaround (cgroup_workaround %q)", detail, mode)
	}
}

// lxcTools are the LXC commands the Proxmox backend and pct rely on.
var lxcTools = []string{"lxc-start", "lxc-info", "lxc-attach"}

func checkLxcTools(_ context.Context, e *Env) Result {
	var found, missing []string
	for _, t := range lxcTools {
		if p, err := e.LookPath(t); err == nil {
			found = append(found, p)
		} else {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return result(severity(e.Config, config.BackendProxmox),
			fmt.Sprintf("missing: %s%s", strings.Join(missing, ", "), unused(e.Config, config.BackendProxmox)),
			"install LXC (lxc-pve on Proxmox VE, lxc on Debian)")
	}
	return pass("%s", strings.Join(found, ", "))
}
