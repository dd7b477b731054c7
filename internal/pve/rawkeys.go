package pve

import (
	"fmt"
	"sort"
	"strings"
)

// validRawKeys is pve-container's allow-list of raw `lxc.*` keys. A string
// value is the reason Proxmox gives for refusing a key it knows.
var validRawKeys = map[string]string{
	"lxc.apparmor.profile":          "",
	"lxc.apparmor.allow_incomplete": "",
	"lxc.apparmor.allow_nesting":    "",
	"lxc.apparmor.raw":              "",
	"lxc.selinux.context":           "",
	"lxc.include":                   "",
	"lxc.arch":                      "",
	"lxc.uts.name":                  "",
	"lxc.signal.halt":               "",
	"lxc.signal.reboot":             "",
	"lxc.signal.stop":               "",
	"lxc.init.cmd":                  "",
	"lxc.init.cwd":                  "",
	"lxc.init.uid":                  "",
	"lxc.init.gid":                  "",
	"lxc.init.groups":               "",
	"lxc.pty.max":                   "",
	"lxc.console.logfile":           "",
	"lxc.console.path":              "",
	"lxc.tty.max":                   "",
	"lxc.devtty.dir":                "",
	"lxc.hook.autodev":              "",
	"lxc.autodev":                   "",
	"lxc.kmsg":                      "",
	"lxc.mount.fstab":               "",
	"lxc.mount.entry":               "",
	"lxc.mount.auto":                "",
	"lxc.rootfs.path":               "lxc.rootfs.path is auto generated from rootfs",
	"lxc.rootfs.mount":              "",
	"lxc.rootfs.options":            `lxc.rootfs.options is not supported, please use mount point options in the "rootfs" key`,
	"lxc.cap.drop":                  "",
	"lxc.cap.keep":                  "",
	"lxc.seccomp.profile":           "",
	"lxc.seccomp.notify.proxy":      "",
	"lxc.seccomp.notify.cookie":     "",
	"lxc.idmap":                     "",
	"lxc.hook.pre-start":            "",
	"lxc.hook.pre-mount":            "",
	"lxc.hook.mount":                "",
	"lxc.hook.start":                "",
	"lxc.hook.stop":                 "",
	"lxc.hook.post-stop":            "",
	"lxc.hook.clone":                "",
	"lxc.hook.destroy":              "",
	"lxc.hook.version":              "",
	"lxc.log.level":                 "",
	"lxc.log.file":                  "",
	"lxc.start.auto":                "",
	"lxc.start.delay":               "",
	"lxc.start.order":               "",
	"lxc.group":                     "",
	"lxc.environment":               "",
	"lxc.environment.runtime":       "",
	"lxc.environment.hooks":         "",
	// IPC sysctls only (namespaced by CLONE_NEWIPC).
	"lxc.sysctl.fs.mqueue":              "",
	"lxc.sysctl.kernel.msgmax":          "",
	"lxc.sysctl.kernel.msgmnb":          "",
	"lxc.sysctl.kernel.msgmni":          "",
	"lxc.sysctl.kernel.sem":             "",
	"lxc.sysctl.kernel.shmall":          "",
	"lxc.sysctl.kernel.shmmax":          "",
	"lxc.sysctl.kernel.shmmni":          "",
	"lxc.sysctl.kernel.shm_rmid_forced": "",
}

// deprecatedRawKeys are pre-LXC-3.0 names Proxmox still accepts with a
// warning, mapped to their new names.
var deprecatedRawKeys = map[string]string{
	"lxc.aa_profile":           "lxc.apparmor.profile",
	"lxc.aa_allow_incomplete":  "lxc.apparmor.allow_incomplete",
	"lxc.console":              "lxc.console.path",
	"lxc.devttydir":            "lxc.tty.dir",
	"lxc.haltsignal":           "lxc.signal.halt",
	"lxc.rebootsignal":         "lxc.signal.reboot",
	"lxc.stopsignal":           "lxc.signal.stop",
	"lxc.id_map":               "lxc.idmap",
	"lxc.init_cmd":             "lxc.init.cmd",
	"lxc.loglevel":             "lxc.log.level",
	"lxc.logfile":              "lxc.log.file",
	"lxc.mount":                "lxc.mount.fstab",
	"lxc.network.type":         "lxc.net.INDEX.type",
	"lxc.network.flags":        "lxc.net.INDEX.flags",
	"lxc.network.link":         "lxc.net.INDEX.link",
	"lxc.network.mtu":          "lxc.net.INDEX.mtu",
	"lxc.network.name":         "lxc.net.INDEX.name",
	"lxc.network.hwaddr":       "lxc.net.INDEX.hwaddr",
	"lxc.network.ipv4":         "lxc.net.INDEX.ipv4.address",
	"lxc.network.ipv4.gateway": "lxc.net.INDEX.ipv4.gateway",
	"lxc.network.ipv6":         "lxc.net.INDEX.ipv6.address",
	"lxc.network.ipv6.gateway": "lxc.net.INDEX.ipv6.gateway",
	"lxc.network.script.up":    "lxc.net.INDEX.script.up",
	"lxc.network.script.down":  "lxc.net.INDEX.script.down",
	"lxc.pts":                  "lxc.pty.max",
	"lxc.se_context":           "lxc.selinux.context",
	"lxc.seccomp":              "lxc.seccomp.profile",
	"lxc.tty":                  "lxc.tty.max",
	"lxc.utsname":              "lxc.uts.name",
}

// RawKeyError says why Proxmox refuses a raw `lxc.*` key. Reason is
// Proxmox's own explanation for keys it knows but refuses (lxc.rootfs.path,
// lxc.rootfs.options) and empty for keys outside its allow-list, which
// Proxmox reports as `unable to parse config: <line>`.
type RawKeyError struct {
	Key    string
	Reason string
}

func (e *RawKeyError) Error() string {
	if e.Reason != "" {
		return e.Key + ": " + e.Reason
	}
	return fmt.Sprintf("lxc key '%s' is not in Proxmox's allow-list (Proxmox drops the line with 'unable to parse config')", e.Key)
}

// CheckRawKey reports whether Proxmox accepts the raw LXC key in a .conf
// file. Deprecated names are accepted (Proxmox warns; see RawKeyWarning).
// The error is a *RawKeyError.
func CheckRawKey(key string) error {
	_, err := checkRawKey(key)
	return err
}

// checkRawKey mirrors is_valid_lxc_conf_key of pve-container.
func checkRawKey(key string) (warning string, err error) {
	if !reRawKey.MatchString(key) {
		return "", &RawKeyError{Key: key}
	}
	if strings.HasPrefix(key, "lxc.limit.") {
		return key + ": lxc.limit.* was renamed to lxc.prlimit.*", nil
	}
	if nn, ok := deprecatedRawKeys[key]; ok {
		return key + " is deprecated and was renamed to " + nn, nil
	}
	if reason, ok := validRawKeys[key]; ok {
		if reason != "" {
			return "", &RawKeyError{Key: key, Reason: reason}
		}
		return "", nil
	}
	switch {
	case strings.HasPrefix(key, "lxc.cgroup."):
		// Guess (not verified against PVE 9 sources): cgroup v1 keys are
		// still accepted, with a deprecation warning.
		return key + ": lxc.cgroup.* is deprecated, use lxc.cgroup2.* instead", nil
	case strings.HasPrefix(key, "lxc.cgroup2."),
		strings.HasPrefix(key, "lxc.prlimit."),
		strings.HasPrefix(key, "lxc.net."):
		return "", nil
	}
	return "", &RawKeyError{Key: key}
}

// versionedRawKeys are the raw keys that only newer pve-container
// versions keep (proxmox-pct.md §9.3): an older node warns `unable to
// parse config` and drops the line, so the setting silently does
// nothing. This is the product's own list; pvesim keeps its own.
var versionedRawKeys = map[string]struct{ container, pve string }{
	"lxc.init.cwd":            {"6.0.1", "9.0"},
	"lxc.environment.runtime": {"6.0.15", "9.1"},
	"lxc.environment.hooks":   {"6.0.15", "9.1"},
	"lxc.init.uid":            {"6.1.0", "9.1"},
	"lxc.init.gid":            {"6.1.0", "9.1"},
	"lxc.init.groups":         {"6.1.0", "9.1"},
}

// NodeRawKeyError says that a raw key exists in Proxmox but the node's
// version drops it.
type NodeRawKeyError struct {
	Key string
	// Node is the node's version (the zero value when it is unknown,
	// which counts as the oldest supported node).
	Node NodeVersion
	// MinContainer and MinPVE are the first pve-container and PVE
	// releases that keep the key.
	MinContainer, MinPVE string
}

func (e *NodeRawKeyError) Error() string {
	have := "a node of unknown version (treated as the oldest supported, PVE 8)"
	if e.Node.Known() {
		have = "this node (" + e.Node.Summary() + ")"
	}
	return fmt.Sprintf("lxc key '%s' is kept only from pve-container %s (PVE %s); %s drops it with 'unable to parse config'",
		e.Key, e.MinContainer, e.MinPVE, have)
}

// CheckRawKeyOn reports whether a node of version v keeps the raw LXC
// key: CheckRawKey, plus the keys only newer versions accept. An unknown
// version is treated as the oldest supported node. The error is a
// *RawKeyError or a *NodeRawKeyError.
func CheckRawKeyOn(v NodeVersion, key string) error {
	if err := CheckRawKey(key); err != nil {
		return err
	}
	if min, ok := versionedRawKeys[key]; ok && !v.ContainerAtLeast(min.container) {
		return &NodeRawKeyError{Key: key, Node: v, MinContainer: min.container, MinPVE: min.pve}
	}
	return nil
}

// DroppedRawKeys lists, sorted, the raw keys that exist in Proxmox but
// that a node of version v drops (all of them for an unknown version).
func DroppedRawKeys(v NodeVersion) []string {
	var out []string
	for k, min := range versionedRawKeys {
		if !v.ContainerAtLeast(min.container) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
