package pvecfg

import "strings"

// validRawKeys is pve-container's $valid_lxc_conf_keys as of master
// (6.1.10); sinceVersion says which entries older nodes lack. A string
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

// sinceVersion are the allow-listed keys newer than PVE 8.4's
// pve-container 5.3.5, with the first version that accepts them
// (pve-container commits 1c7f64d = 6.0.1, bbd3d5e = 6.0.15,
// c464df5 = 6.1.0).
var sinceVersion = map[string]func(Version) bool{
	"lxc.init.cwd":            Version.HasInitCwd,
	"lxc.environment.runtime": Version.HasOCI,
	"lxc.environment.hooks":   Version.HasOCI,
	"lxc.init.uid":            Version.HasInitUser,
	"lxc.init.gid":            Version.HasInitUser,
	"lxc.init.groups":         Version.HasInitUser,
}

// rawKeyValidity is pve-container's is_valid_lxc_conf_key for version v:
// warn gets the warnings it prints (without the `vm <vmid> - ` prefix);
// kept is its 1; reason is the text of a known-but-refused key; neither
// means "unable to parse config".
func rawKeyValidity(key string, v Version, warn func(string)) (reason string, kept bool) {
	if strings.HasPrefix(key, "lxc.limit.") {
		warn(key + ": lxc.limit.* was renamed to lxc.prlimit.*")
		return "", true
	}
	if nn, ok := deprecatedRawKeys[key]; ok {
		warn(key + " is deprecated and was renamed to " + nn)
		return "", true
	}
	if r, ok := validRawKeys[key]; ok {
		if since, newer := sinceVersion[key]; newer && !since(v) {
			return "", false
		}
		return r, r == ""
	}
	switch {
	case strings.HasPrefix(key, "lxc.cgroup."):
		// Silent until pve-container 6.1.6 (commit 6026000).
		if v.WarnsCgroupV1() {
			warn(key + " is deprecated, this will be a hard error in the future!")
		}
		return "", true
	case strings.HasPrefix(key, "lxc.cgroup2."),
		strings.HasPrefix(key, "lxc.prlimit."),
		strings.HasPrefix(key, "lxc.net."):
		return "", true
	}
	return "", false
}
