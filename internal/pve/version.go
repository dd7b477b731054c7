package pve

import (
	"fmt"
	"strconv"
	"strings"
)

// NodeVersion is what nexcage knows of a node's Proxmox VE version, read
// from `pveversion -v`. What a node accepts depends on its pve-container
// version (proxmox-pct.md §9); the zero value is an unknown node and
// answers every feature question with the oldest supported behaviour.
type NodeVersion struct {
	Manager   string `json:"pve_manager,omitempty"`   // pve-manager, e.g. "9.1.1"
	Container string `json:"pve_container,omitempty"` // pve-container, e.g. "6.0.18"
	LXC       string `json:"lxc_pve,omitempty"`       // lxc-pve, e.g. "6.0.5-3"
}

// ParsePveversion reads the `<package>: <version> [...]` lines of
// `pveversion -v`. pve-container's line is required: every version
// decision depends on it.
func ParsePveversion(out string) (NodeVersion, error) {
	var v NodeVersion
	for _, line := range strings.Split(out, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		switch strings.TrimSpace(name) {
		case "pve-manager":
			v.Manager = fields[0]
		case "pve-container":
			v.Container = fields[0]
		case "lxc-pve":
			v.LXC = fields[0]
		}
	}
	if v.Container == "" {
		return v, fmt.Errorf("no pve-container version in the output of pveversion -v")
	}
	if _, ok := splitVersion(v.Container); !ok {
		return v, fmt.Errorf("pve-container version %q is not a version number", v.Container)
	}
	return v, nil
}

// Known reports whether the version was read from the node.
func (v NodeVersion) Known() bool { return v.Container != "" }

// ContainerAtLeast reports whether pve-container is at least want
// ("6.0.15"); an unknown version is never at least anything.
func (v NodeVersion) ContainerAtLeast(want string) bool {
	have, ok := splitVersion(v.Container)
	if !ok {
		return false
	}
	w, _ := splitVersion(want)
	for i := range w {
		if i >= len(have) {
			return false
		}
		if have[i] != w[i] {
			return have[i] > w[i]
		}
	}
	return true
}

// HasOCI reports the PVE 9.1 features: the entrypoint and env options,
// host-managed=1 on netN, and the lxc.environment.runtime raw key
// (pve-container 6.0.15).
func (v NodeVersion) HasOCI() bool { return v.ContainerAtLeast("6.0.15") }

// HasInitCwd reports whether the raw key lxc.init.cwd is kept (6.0.1, PVE 9.0).
func (v NodeVersion) HasInitCwd() bool { return v.ContainerAtLeast("6.0.1") }

// HasInitUser reports whether lxc.init.uid/gid/groups are kept (6.1.0).
func (v NodeVersion) HasInitUser() bool { return v.ContainerAtLeast("6.1.0") }

// String is a short human form, e.g. "pve-manager 9.1.1, pve-container 6.0.18".
func (v NodeVersion) String() string {
	if !v.Known() {
		return "unknown"
	}
	s := "pve-container " + v.Container
	if v.Manager != "" {
		s = "pve-manager " + v.Manager + ", " + s
	}
	return s
}

// PVE is the Proxmox VE release as "major.minor" ("8.4", "9.1"), from
// pve-manager, or "" when unknown.
func (v NodeVersion) PVE() string {
	n, ok := splitVersion(v.Manager)
	if !ok || len(n) < 2 {
		return ""
	}
	return strconv.Itoa(n[0]) + "." + strconv.Itoa(n[1])
}

// Summary is the form shown to people, e.g. "PVE 8.4 (pve-container
// 5.3.5)", or "unknown".
func (v NodeVersion) Summary() string {
	if !v.Known() {
		return "unknown"
	}
	if p := v.PVE(); p != "" {
		return "PVE " + p + " (pve-container " + v.Container + ")"
	}
	return "pve-container " + v.Container
}

// splitVersion turns "6.0.15" or "6.0.0-1" into numbers (a Debian
// revision after '-' or '~' is ignored).
func splitVersion(s string) ([]int, bool) {
	if i := strings.IndexAny(s, "-~+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out = append(out, n)
	}
	return out, len(out) > 0
}
