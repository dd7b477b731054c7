package pvecfg

import (
	"fmt"
	"strings"
)

// Version is the Proxmox VE release a simulated node behaves as. What a
// node accepts depends on its pve-container package (proxmox-pct.md §9);
// each Version stands for one pve-container state:
//
//	8.4  pve-container 5.3.5  (branch stable-bookworm)
//	9.0  pve-container 6.0.14 (the last 6.0.x before the OCI features)
//	9.1  pve-container 6.1.10 (master: an up-to-date 9.1 node)
//
// Versions are ordered: V9_1 > V9_0 > V8_4. The zero value is "not set";
// Or turns it into DefaultVersion.
type Version uint8

// The supported versions.
const (
	VersionUnset Version = iota
	V8_4
	V9_0
	V9_1
)

// DefaultVersion is the version of a node nobody chose one for.
const DefaultVersion = V9_1

// Versions lists the supported versions, oldest first.
var Versions = []Version{V8_4, V9_0, V9_1}

// ParseVersion reads "8.4", "9.0" or "9.1".
func ParseVersion(s string) (Version, error) {
	for _, v := range Versions {
		if s == v.String() {
			return v, nil
		}
	}
	names := make([]string, len(Versions))
	for i, v := range Versions {
		names[i] = v.String()
	}
	return VersionUnset, fmt.Errorf("unknown Proxmox VE version '%s' (supported: %s)", s, strings.Join(names, ", "))
}

// String is the release number, e.g. "9.1" ("" for VersionUnset).
func (v Version) String() string {
	switch v {
	case V8_4:
		return "8.4"
	case V9_0:
		return "9.0"
	case V9_1:
		return "9.1"
	}
	return ""
}

// Or returns v, or def when v is VersionUnset.
func (v Version) Or(def Version) Version {
	if v == VersionUnset {
		return def
	}
	return v
}

// HasOCI reports the PVE 9.1 features (pve-container >= 6.0.15): the
// `entrypoint` and `env` options, `host-managed` in net<N>, OCI image
// templates, and the raw keys lxc.environment.runtime/hooks.
func (v Version) HasOCI() bool { return v.Or(DefaultVersion) >= V9_1 }

// HasInitCwd reports whether the raw key lxc.init.cwd is allowed
// (pve-container >= 6.0.1, PVE 9.0).
func (v Version) HasInitCwd() bool { return v.Or(DefaultVersion) >= V9_0 }

// HasInitUser reports whether lxc.init.uid/gid/groups are allowed
// (pve-container >= 6.1.0: a 9.1 node as pvesim simulates it).
func (v Version) HasInitUser() bool { return v.Or(DefaultVersion) >= V9_1 }

// WarnsCgroupV1 reports whether raw lxc.cgroup.* keys warn as deprecated
// on every load (pve-container >= 6.1.6, commit 6026000; earlier
// versions accept them silently).
func (v Version) WarnsCgroupV1() bool { return v.Or(DefaultVersion) >= V9_1 }
