package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"path/filepath"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
)

// Name syntaxes from Proxmox VE (pve-storage-id, pve-node, pve-bridge-id),
// checked byte by byte: every nexcage command validates the config, and
// compiling these as regular expressions cost more than the rest of the
// validation. ASCII only.

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || '0' <= c && c <= '9' }

// isStorageID is pve-storage-id, (?i)^[a-z][a-z0-9\-_.]*[a-z0-9]$.
func isStorageID(s string) bool {
	if len(s) < 2 || !isAlpha(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// isNodeName is pve-node, ^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$.
func isNodeName(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// isBridgeName is pve-bridge-id limited to a Linux interface name,
// ^[A-Za-z0-9_.\-]{1,15}$.
func isBridgeName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// Validate checks every value of c and returns the first problem, naming
// its key (e.g. "proxmox.timeout: must be > 0").
func (c *Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate returns warnings for accepted but doubtful values, or the first
// invalid value as an error naming its key.
func (c *Config) validate() ([]string, error) {
	var warnings []string
	p := &c.Proxmox

	for key, v := range map[string]string{
		"proxmox.pct_path": p.PctPath, "proxmox.pveam_path": p.PveamPath, "proxmox.pvesh_path": p.PveshPath,
		"proxmox.pveversion_path": p.PveversionPath,
		"runtimes.runc.path":      c.Runtimes.Runc.Path, "runtimes.crun.path": c.Runtimes.Crun.Path,
	} {
		if err := checkCommand(key, v); err != nil {
			return nil, err
		}
	}
	for key, v := range map[string]string{
		"proxmox.etc_pve": p.EtcPve, "proxmox.lxc_path": p.LxcPath, "proxmox.lock_dir": p.LockDir,
		"runtime.root_path": c.Runtime.RootPath, "storage.image_path": c.Storage.ImagePath,
	} {
		if err := checkAbsPath(key, v); err != nil {
			return nil, err
		}
	}
	if c.Runtime.LogPath != "" {
		if err := checkAbsPath("runtime.log_path", c.Runtime.LogPath); err != nil {
			return nil, err
		}
	}
	if p.Node != "" && (!isNodeName(p.Node) || len(p.Node) > 63) {
		return nil, fmt.Errorf("proxmox.node: %q is not a valid node name (letters, digits and '-', at most 63)", p.Node)
	}
	if p.Storage != "" && !isStorageID(p.Storage) {
		return nil, fmt.Errorf("proxmox.storage: %q is not a valid Proxmox storage id", p.Storage)
	}
	if !isStorageID(p.TemplateStorage) {
		return nil, fmt.Errorf("proxmox.template_storage: %q is not a valid Proxmox storage id", p.TemplateStorage)
	}
	lo, hi := p.VMIDRange[0], p.VMIDRange[1]
	if lo < MinVMID || hi > MaxVMID || lo > hi {
		return nil, fmt.Errorf("proxmox.vmid_range: [%d, %d] must be ordered and within [%d, %d]", lo, hi, MinVMID, MaxVMID)
	}
	if p.Timeout <= 0 {
		return nil, fmt.Errorf("proxmox.timeout: %d must be > 0 (seconds)", p.Timeout)
	}
	if p.KillGrace <= 0 || p.KillGrace > 3600 {
		return nil, fmt.Errorf("proxmox.kill_grace: %d must be between 1 and 3600 (seconds)", p.KillGrace)
	}

	if _, err := ParseLogLevel(c.Runtime.LogLevel); err != nil {
		return nil, fmt.Errorf("runtime.log_level: %w", err)
	}
	rules, err := compileRules(c.Runtime.Routing)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if r.backend == backendVM {
			what := fmt.Sprintf("ids matching %q", r.pattern)
			if len(r.fields) > 0 {
				what = "the containers " + r.String() + " matches"
			}
			warnings = append(warnings, fmt.Sprintf("runtime.routing[%d] sends %s to %q, which nexcage does not support; such containers will fail to create", r.index, what, r.runtime))
		}
	}
	for i, pat := range c.ContainerConfig.CrunNamePatterns {
		if _, err := path.Match(pat, ""); err != nil || pat == "" {
			return nil, fmt.Errorf("container_config.crun_name_patterns[%d]: %q is not a valid shell wildcard pattern", i, pat)
		}
	}
	def, err := normalize(c.ContainerConfig.DefaultContainerType, true)
	if err != nil {
		return nil, fmt.Errorf("container_config.default_container_type: %w", err)
	}
	if def == backendVM {
		warnings = append(warnings, fmt.Sprintf("container_config.default_container_type %q is not supported by nexcage; containers without a routing rule will fail to create", c.ContainerConfig.DefaultContainerType))
	}

	if sp := c.Templates.SkopeoPath; sp != nil && *sp != "" {
		if err := checkCommand("templates.skopeo_path", *sp); err != nil {
			return nil, err
		}
	}
	if err := checkText("storage.zfs_dataset", c.Storage.ZFSDataset); err != nil {
		return nil, err
	}
	if !isBridgeName(c.Network.Bridge) {
		return nil, fmt.Errorf("network.bridge: %q is not a valid bridge name (1-15 of A-Z a-z 0-9 _ . -)", c.Network.Bridge)
	}
	for i, s := range c.Network.DNSServers {
		if _, err := netip.ParseAddr(s); err != nil {
			return nil, fmt.Errorf("network.dns_servers[%d]: %q is not an IP address", i, s)
		}
	}
	if t := c.Network.DHCPTimeout; t < 1 || t > 3600 {
		return nil, fmt.Errorf("network.dhcp_timeout: %d must be 1..3600 (seconds)", t)
	}
	for key, v := range map[string]string{
		"runtimes.runc.cgroup_workaround": c.Runtimes.Runc.CgroupWorkaround,
		"runtimes.crun.cgroup_workaround": c.Runtimes.Crun.CgroupWorkaround,
	} {
		switch v {
		case "auto", "always", "never":
		default:
			return nil, fmt.Errorf("%s: %q must be one of auto, always, never", key, v)
		}
	}
	return warnings, nil
}

// checkText refuses characters that would break a command line or a
// Proxmox config line.
func checkText(key, v string) error {
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%s: %q contains control characters", key, v)
	}
	return nil
}

// checkCommand accepts a program name looked up on PATH or an absolute
// path. A relative path such as ./runc would run a different program in
// each working directory. Whether the program found may be run is
// checked where it is run (trust.LookPath), when it is needed.
func checkCommand(key, v string) error {
	if v == "" {
		return fmt.Errorf("%s: empty", key)
	}
	if strings.Contains(v, "/") && !filepath.IsAbs(v) {
		return fmt.Errorf("%s: %q must be a program name looked up on PATH or an absolute path", key, v)
	}
	return checkText(key, v)
}

func checkAbsPath(key, v string) error {
	if err := checkText(key, v); err != nil {
		return err
	}
	if !filepath.IsAbs(v) {
		return fmt.Errorf("%s: %q must be an absolute path", key, v)
	}
	return nil
}

// ParseLogLevel maps runtime.log_level (debug, info, warn/warning, error;
// any case) to a slog level.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errs.New(errs.KindInvalidConfig, "unknown log level %q (use debug, info, warn or error)", s)
}
