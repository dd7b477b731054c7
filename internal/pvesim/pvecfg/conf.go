// Package pvecfg is pvesim's own knowledge of Proxmox VE's file formats
// (container .conf, property strings, storage.cfg, .vmlist, volume ids)
// and of pve-container's schema, per simulated PVE version. It follows
// pve-container's and pve-common's Perl code (cited per function), never
// nexcage's: pvesim must catch the product's mistakes, not share them.
package pvecfg

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// EnvKey is the raw LXC key that carries one variable of the `env` option
// in a .conf file (PVE >= 9.1).
const EnvKey = "lxc.environment.runtime"

// RawLine is one raw `lxc.*` line of a .conf file.
type RawLine struct {
	Key   string
	Value string
}

// Config is one section of a parsed /etc/pve/lxc/<vmid>.conf as
// pve-container's parse_pct_config returns it: the current config, with
// the `[pve:pending]` section and the snapshots hanging off it.
type Config struct {
	// Description as Proxmox holds it: every `#` comment line of the
	// section, %-decoded, followed by "\n", plus `description:` values.
	Description string
	// Options are the `key: value` lines, without description, env and
	// raw lxc lines; written sorted by key. A key Proxmox does not know
	// is kept (with a warning), as parse_pct_config keeps it. In the
	// pending section `delete` is an option too; in snapshots
	// `snapstate`, `parent` and `snaptime` are.
	Options map[string]string
	// Env holds the variables of `env` (one `lxc.environment.runtime`
	// line each in the file), in order. Only 9.1 nodes have them.
	Env []string
	// Raw holds the raw `lxc.*` lines Proxmox KEPT, in file order: the
	// lines the node's version refuses are not here (they were warned
	// about and are gone at the next write). This is what a generated
	// LXC config appends.
	Raw []RawLine
	// Pending is the `[pve:pending]` section, nil when the file has none
	// (only set on the current section).
	Pending *Config
	// Snapshots are the `[<snapname>]` sections (only set on the current
	// section).
	Snapshots map[string]*Config
	// Digest is the SHA-1 of the file as read (the API's `digest`).
	Digest string
}

// NewConfig returns an empty Config ready for use.
func NewConfig() *Config { return &Config{Options: map[string]string{}} }

// Get returns an option's value.
func (c *Config) Get(key string) (string, bool) {
	v, ok := c.Options[key]
	return v, ok
}

// Set sets an option, allocating the map when needed.
func (c *Config) Set(key, value string) {
	if c.Options == nil {
		c.Options = map[string]string{}
	}
	c.Options[key] = value
}

// Keys returns the option keys sorted the way Proxmox writes them.
func (c *Config) Keys() []string {
	keys := make([]string, 0, len(c.Options))
	for k := range c.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// empty reports whether a section would write nothing (Perl's
// `scalar(keys %{$conf->{pending}})` is false).
func (c *Config) empty() bool {
	return c == nil || (c.Description == "" && len(c.Options) == 0 && len(c.Env) == 0 && len(c.Raw) == 0)
}

// HasPending reports whether the config has a non-empty [pve:pending]
// section (vm_start and update_vm apply it).
func (c *Config) HasPending() bool { return !c.Pending.empty() }

// Perl's \s: blank, \t, \n, \v, \f, \r.
const ws = `[\t\n\v\f\r ]`

// The line patterns of parse_pct_config, in the order it tries them.
var (
	rePending    = regexp.MustCompile(`(?i)^\[pve:pending\]` + ws + `*$`)
	reSnapshot   = regexp.MustCompile(`(?i)^\[([a-z][a-z0-9_\-]+)\]` + ws + `*$`)
	reComment    = regexp.MustCompile(`^#(.*)$`)
	reRawLine    = regexp.MustCompile(`^(lxc\.[a-z0-9_\-.]+)(:|` + ws + `*=)` + ws + `*(.*?)` + ws + `*$`)
	reDescLine   = regexp.MustCompile(`^(description):` + ws + `*(.*[^\t\n\v\f\r ])` + ws + `*$`)
	reSnapState  = regexp.MustCompile(`snapstate:` + ws + `*(prepare|delete)` + ws + `*$`)
	reDeleteLine = regexp.MustCompile(`^delete:` + ws + `*(.*[^\t\n\v\f\r ])` + ws + `*$`)
	reOptionLine = regexp.MustCompile(`^([a-z][a-z_]*\d*):` + ws + `*(.+?)` + ws + `*$`)
	reBlank      = regexp.MustCompile(`^` + ws + `*$`)
)

// ParseConfig parses the .conf of container vmid as a node of version v
// reads it (pve-container's parse_pct_config, non-strict, as
// load_config uses it): problems are never fatal, each one is a warning
// with Proxmox's full text, e.g. `vm 100 - unable to parse config:
// lxc.init.uid: 1000` or `vm 100 - unable to parse value of 'foo' -
// unknown setting 'foo'`, returned in file order. Raw lines the version
// refuses are dropped; unknown options are kept, as Proxmox keeps them.
func ParseConfig(data []byte, vmid int, v Version) (*Config, []string) {
	res := NewConfig()
	sum := sha1.Sum(data)
	res.Digest = hex.EncodeToString(sum[:])
	var warns []string
	warn := func(format string, a ...any) {
		warns = append(warns, fmt.Sprintf("vm %d - ", vmid)+fmt.Sprintf(format, a...))
	}
	conf := res
	section := ""
	// Perl's split(/\n/, $raw) drops trailing empty fields; empty lines
	// are skipped anyway.
	for _, line := range strings.Split(string(data), "\n") {
		if reBlank.MatchString(line) {
			continue
		}
		if rePending.MatchString(line) {
			section = "pending"
			conf = NewConfig()
			res.Pending = conf
			continue
		}
		if m := reSnapshot.FindStringSubmatch(line); m != nil {
			section = m[1]
			conf = NewConfig()
			if res.Snapshots == nil {
				res.Snapshots = map[string]*Config{}
			}
			res.Snapshots[section] = conf
			continue
		}
		if m := reComment.FindStringSubmatch(line); m != nil {
			conf.Description += DecodeText(m[1]) + "\n"
			continue
		}
		if m := reRawLine.FindStringSubmatch(line); m != nil {
			key, value := m[1], m[3]
			reason, kept := rawKeyValidity(key, v, func(w string) { warn("%s", w) })
			switch {
			case key == EnvKey && v.HasOCI():
				// 9.1 gathers these into `env` before looking at validity.
				conf.Env = append(conf.Env, value)
			case kept:
				conf.Raw = append(conf.Raw, RawLine{Key: key, Value: value})
			case reason != "":
				warn("%s: %s", key, reason)
			default:
				warn("unable to parse config: %s", line)
			}
			continue
		}
		if m := reDescLine.FindStringSubmatch(line); m != nil {
			conf.Description += DecodeText(m[2])
			continue
		}
		if m := reSnapState.FindStringSubmatch(line); m != nil {
			conf.Set("snapstate", m[1])
			continue
		}
		if m := reDeleteLine.FindStringSubmatch(line); m != nil {
			if section == "pending" {
				conf.Set("delete", m[1])
			} else {
				warn("property 'delete' is only allowed in [pve:pending]")
			}
			continue
		}
		if m := reOptionLine.FindStringSubmatch(line); m != nil {
			key, value := m[1], m[2]
			norm, err := CheckOptionValue(key, value, v)
			if err != nil {
				// check_type's die text ends in "\n"; so does ours after the dash.
				warn("unable to parse value of '%s' - %s", key, strings.TrimSuffix(err.Error(), "\n"))
			} else {
				value = norm
			}
			conf.Set(key, value)
			continue
		}
		warn("unable to parse config: %s", line)
	}
	delete(res.Options, "snapstate") // "just to be sure", as Proxmox says
	return res, warns
}

// Marshal writes the config as pve-container's write_pct_config does:
// per section the description as `#` lines, the options sorted by key,
// one `lxc.environment.runtime` line per Env entry, the raw lines in
// order; then `[pve:pending]` when it holds anything, then the snapshots
// sorted by name, each after an empty line. Like Proxmox it refuses a
// newline inside a value (which would inject lines into the file).
func (c *Config) Marshal() ([]byte, error) {
	var b strings.Builder
	if err := c.writeSection(&b); err != nil {
		return nil, err
	}
	if !c.Pending.empty() {
		b.WriteString("\n[pve:pending]\n")
		if err := c.Pending.writeSection(&b); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(c.Snapshots))
	for name := range c.Snapshots {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !reSnapshot.MatchString("[" + name + "]") {
			return nil, fmt.Errorf("invalid snapshot name '%s'", name)
		}
		b.WriteString("\n[" + name + "]\n")
		if err := c.Snapshots[name].writeSection(&b); err != nil {
			return nil, err
		}
	}
	return []byte(b.String()), nil
}

func (c *Config) writeSection(b *strings.Builder) error {
	for _, l := range splitPerl(c.Description) {
		b.WriteString("#" + EncodeText(l) + "\n")
	}
	for _, k := range c.Keys() {
		switch k {
		case "digest", "description", "pending", "snapshots", "snapname", "env", "lxc":
			continue // write_pct_config skips these keys
		}
		v := c.Options[k]
		if strings.Contains(v, "\n") {
			return fmt.Errorf("detected invalid newline inside property '%s'", k)
		}
		if !reOptionLine.MatchString(k + ": x") {
			// Not Proxmox's check (its keys come from its schema); a key
			// that would not read back as one must never be written.
			return fmt.Errorf("invalid property name '%s'", k)
		}
		b.WriteString(k + ": " + v + "\n")
	}
	for _, e := range c.Env {
		// write_pct_config splits env on NUL runs, so empty entries vanish.
		if e == "" {
			continue
		}
		if strings.Contains(e, "\n") {
			return fmt.Errorf("detected invalid newline inside property 'env'")
		}
		b.WriteString(EnvKey + ": " + e + "\n")
	}
	for _, r := range c.Raw {
		if r.Key == EnvKey && len(c.Env) > 0 {
			continue // handled above, as in write_pct_config
		}
		if !reRawLine.MatchString(r.Key+": x") || strings.Contains(r.Value, "\n") {
			return fmt.Errorf("detected invalid raw lxc line '%s'", r.Key)
		}
		b.WriteString(r.Key + ": " + r.Value + "\n")
	}
	return nil
}

// splitPerl splits on "\n" like Perl's split: trailing empty fields go.
func splitPerl(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, "\n")
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

// EncodeText %-encodes like PVE::Tools::encode_text (pve-common,
// PVE 8 and 9 alike): every byte outside 0x20-0x7e, and ':' and '%',
// become %XX (upper case).
func EncodeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == ':' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// DecodeText reverses EncodeText (uri_unescape: every valid %XX is
// decoded, anything else stays).
func DecodeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// CurrentConfig is what `pct config` (without --current) shows:
// load_current_config applies the pending section (values, then its
// `delete` list) to a copy of the current section; snapshots and
// pending are left out.
func (c *Config) CurrentConfig() *Config {
	out := &Config{Description: c.Description, Options: map[string]string{}, Env: c.Env, Raw: c.Raw, Digest: c.Digest}
	for k, v := range c.Options {
		out.Options[k] = v
	}
	if p := c.Pending; p != nil {
		for k, v := range p.Options {
			if k != "delete" {
				out.Options[k] = v
			}
		}
		if p.Description != "" {
			out.Description = p.Description
		}
		if len(p.Env) > 0 {
			out.Env = p.Env
		}
		for _, k := range PendingDeletes(p.Options["delete"]) {
			switch k {
			case "description":
				out.Description = ""
			case "env":
				out.Env = nil
			default:
				delete(out.Options, k)
			}
		}
	}
	return out
}

// PendingDeletes reads a pending `delete:` value (parse_pending_delete:
// separators , ; and blanks, a leading `!` marks a forced delete).
func PendingDeletes(s string) []string {
	var keys []string
	for _, e := range strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
	}) {
		keys = append(keys, strings.TrimPrefix(e, "!"))
	}
	return keys
}
