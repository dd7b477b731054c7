package proxmox

import (
	"os"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/nexcage/nexcage/internal/hooks"
)

// HostLSM says which Linux security modules the host enforces: LXC
// applies lxc.apparmor.profile and lxc.selinux.context only where the
// module is active (elsewhere it ignores them).
type HostLSM struct {
	AppArmor bool
	SELinux  bool
}

// DetectLSM reads the host's active security modules from sysfs.
func DetectLSM() HostLSM {
	var h HostLSM
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		h.AppArmor = strings.TrimSpace(string(b)) == "Y"
	}
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		h.SELinux = true
	}
	return h
}

// Features is what the Proxmox backend does with a config.json, in the
// runtime-spec features format, derived from the translator's own
// tables so that it cannot drift from what create accepts:
//   - hooks: the ones nexcage runs (hooks.go); createContainer is
//     refused;
//   - mount options: those every bind mount carries or that restate
//     its defaults (options ignored with a warning on some kinds of
//     mount are left out);
//   - namespaces: the ones every Proxmox container has (user for
//     unprivileged containers); the host's network or an existing
//     namespace cannot be joined;
//   - capabilities: all known ones (nexcage's init helper sets the five
//     sets);
//   - cgroup v2 only, no systemd driver (Proxmox manages the cgroup);
//   - seccomp: disabled, as linux.seccomp is replaced by Proxmox's own
//     profile; AppArmor and SELinux as the host enforces them;
//   - net devices: moved in (raw lxc.net.N phys entries);
//   - Intel RDT, idmapped mounts: not available.
func Features(lsm HostLSM, ociMin, ociMax string) *features.Features {
	yes, no := true, false
	var mountOpts []string
	for _, m := range []map[string]bool{pveMountOptions, entryBindOptions, ignoredBindOptions} {
		for o := range m {
			// Warned-about options are carried on some mounts only.
			if !warnedBindOptions[o] {
				mountOpts = append(mountOpts, o)
			}
		}
	}
	mountOpts = append(mountOpts, "ro", "rw")
	slices.Sort(mountOpts)
	mountOpts = slices.Compact(mountOpts)
	var caps []string
	for _, c := range capability.ListKnown() {
		caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
	}
	return &features.Features{
		OCIVersionMin: ociMin,
		OCIVersionMax: ociMax,
		Hooks:         []string{hooks.Prestart, hooks.CreateRuntime, hooks.StartContainer, hooks.Poststart, hooks.Poststop},
		MountOptions:  mountOpts,
		Linux: &features.Linux{
			Namespaces:      []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			Capabilities:    caps,
			Cgroup:          &features.Cgroup{V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no, Rdma: &no},
			Seccomp:         &features.Seccomp{Enabled: &no},
			Apparmor:        &features.Apparmor{Enabled: &lsm.AppArmor},
			Selinux:         &features.Selinux{Enabled: &lsm.SELinux},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
			NetDevices:      &features.NetDevices{Enabled: &yes},
		},
	}
}
