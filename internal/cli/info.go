package cli

import (
	"context"
	"fmt"

	goruntime "runtime"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/trust"
	"github.com/nexcage/nexcage/internal/version"
)

// features prints what nexcage accepts in a config.json. It is the union
// over the backends: a runc/crun-routed container gets everything the
// runtime supports; docs/MAPPING.md says what the Proxmox backend maps.
func (a *App) features() error {
	yes := true
	f := features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: version.SpecVersion,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions: []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
			"noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
			"private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable",
			"rw", "shared", "slave", "strictatime", "sync", "unbindable"},
		Linux: &features.Linux{
			Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			Capabilities: capabilities,
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes},
			Seccomp:      &features.Seccomp{Enabled: &yes},
			Apparmor:     &features.Apparmor{Enabled: &yes},
			Selinux:      &features.Selinux{Enabled: &yes},
		},
		Annotations: map[string]string{
			"org.nexcage.version":  version.Version,
			"org.nexcage.commit":   version.Commit,
			"org.nexcage.backends": strings.Join([]string{config.BackendProxmox, config.BackendRunc, config.BackendCrun}, ","),
		},
	}
	return a.printJSON(f, true)
}

// capabilities known to Linux 6.x.
var capabilities = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}

// version prints nexcage's version and the backend tools found.
func (a *App) version(ctx context.Context) error {
	w := a.Stdout
	fmt.Fprintf(w, "nexcage version %s\ncommit: %s\nspec: %s (generated bundles: %s)\ngo: %s\n",
		version.Version, version.Commit, version.SpecVersion, bundle.SpecVersion, goruntime.Version())
	for _, rt := range []struct {
		name string
		rc   config.OCIRuntime
	}{{config.BackendRunc, a.cfg.Runtimes.Runc}, {config.BackendCrun, a.cfg.Runtimes.Crun}} {
		bin := rt.rc.Path
		if bin == "" {
			bin = rt.name
		}
		path, v, err := ocirun.BinaryVersion(ctx, rt.name, bin)
		if err != nil {
			fmt.Fprintf(w, "%s: not available (%v)\n", rt.name, err)
			continue
		}
		fmt.Fprintf(w, "%s: %s (%s)\n", rt.name, v, path)
	}
	pct := a.cfg.Proxmox.PctPath
	if pct == "" {
		pct = "pct"
	}
	if path, err := trust.LookPath(pct); err == nil {
		fmt.Fprintf(w, "%s: pct at %s\n", config.BackendProxmox, path)
	} else {
		fmt.Fprintf(w, "%s: pct not available (%v)\n", config.BackendProxmox, err)
	}
	return nil
}
