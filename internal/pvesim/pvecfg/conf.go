// Package pve knows Proxmox VE's file formats and tools (container .conf,
// property strings, storage.cfg, .vmlist, volume ids, pct). It knows
// nothing about OCI.
package pvecfg

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"regexp"
)

// EnvKey is the raw LXC key that carries one variable of the `env` option
// in a .conf file (PVE >= 9.1).
const EnvKey = "lxc.environment.runtime"

// RawLine is one raw `lxc.*` line of a .conf file.
type RawLine struct {
	Key   string
	Value string
}

// Config is a parsed /etc/pve/lxc/<vmid>.conf (the current section only;
// pending and snapshot sections are kept verbatim in Sections).
type Config struct {
	// Description as Proxmox holds it: every leading `#` comment line,
	// %-decoded, followed by "\n" (so a parsed description ends in "\n").
	Description string
	// Options are the `key: value` lines, without description, env and
	// raw lxc lines. Written sorted by key.
	Options map[string]string
	// Env holds the `lxc.environment.runtime` lines (VAR=value), in order.
	Env []string
	// Raw holds the other `lxc.*` lines in file order.
	Raw []RawLine
	// Sections is the verbatim text from the first `[section]` header
	// (`[pve:pending]` or a snapshot) to the end of the file, or "".
	Sections string
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

var (
	reRawLine    = regexp.MustCompile(`^(lxc\.[a-z0-9_\-.]+)(:|\s*=)\s*(.*?)\s*$`)
	reDescLine   = regexp.MustCompile(`^(description):\s*(.*\S)\s*$`)
	reSnapState  = regexp.MustCompile(`snapstate:\s*(prepare|delete)\s*$`)
	reDeleteLine = regexp.MustCompile(`^delete:\s*(.*\S)\s*$`)
	reOptionLine = regexp.MustCompile(`^([a-z][a-z_]*\d*):\s*(.+?)\s*$`)
	reSection    = regexp.MustCompile(`(?i)^(\[pve:pending\]|\[[a-z][a-z0-9_\-]+\])\s*$`)
	reOptionKey  = regexp.MustCompile(`^[a-z][a-z_\-]*\d*$`)
	reRawKey     = regexp.MustCompile(`^lxc\.[a-z0-9_\-.]+$`)
)

// ParseConfig parses a container .conf as pve-container does for an
// existing file: problems are warnings, never fatal. Warnings carry
// Proxmox's words without the `vm <vmid> - ` prefix that Proxmox puts in
// front (the caller knows the vmid), e.g. `unable to parse config: foo`,
// `unable to parse value of 'foo' - unknown setting 'foo'` or
// `lxc.rootfs.path: lxc.rootfs.path is auto generated from rootfs`.
// Lines refused that way are dropped, as Proxmox drops them.
// The error is reserved for input that is not text at all (a NUL byte).
func ParseConfig(data []byte) (*Config, []string, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil, fmt.Errorf("unable to parse config: file contains a NUL byte")
	}
	c := NewConfig()
	var warns []string
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if reSection.MatchString(line) {
			c.Sections = strings.Join(lines[i:], "\n")
			if !strings.HasSuffix(c.Sections, "\n") {
				c.Sections += "\n"
			}
			break
		}
		if strings.HasPrefix(line, "#") {
			c.Description += DecodeText(line[1:]) + "\n"
			continue
		}
		if m := reRawLine.FindStringSubmatch(line); m != nil {
			key, value := m[1], m[3]
			warn, err := checkRawKey(key)
			if warn != "" {
				warns = append(warns, warn)
			}
			if err != nil {
				if rk, ok := err.(*RawKeyError); ok && rk.Reason != "" {
					warns = append(warns, rk.Error())
				} else {
					warns = append(warns, "unable to parse config: "+line)
				}
				continue
			}
			if key == EnvKey {
				c.Env = append(c.Env, value)
			} else {
				c.Raw = append(c.Raw, RawLine{Key: key, Value: value})
			}
			continue
		}
		if m := reDescLine.FindStringSubmatch(line); m != nil {
			c.Description += DecodeText(m[2])
			continue
		}
		if reSnapState.MatchString(line) {
			continue // only meaningful in snapshot sections; Proxmox drops it here
		}
		if reDeleteLine.MatchString(line) {
			warns = append(warns, "property 'delete' is only allowed in [pve:pending]")
			continue
		}
		if m := reOptionLine.FindStringSubmatch(line); m != nil {
			key, value := m[1], m[2]
			norm, err := CheckOptionValue(key, value)
			if err != nil {
				warns = append(warns, fmt.Sprintf("unable to parse value of '%s' - %s", key, err))
			} else {
				value = norm
			}
			c.Options[key] = value
			continue
		}
		warns = append(warns, "unable to parse config: "+line)
	}
	return c, warns, nil
}

// Marshal writes the config in Proxmox's format and order: description
// comment lines, `key: value` sorted by key, one lxc.environment.runtime
// line per Env entry, the raw lxc lines in order, then Sections. Keys and
// values that could break the line format are refused.
func (c *Config) Marshal() ([]byte, error) {
	var b strings.Builder
	for _, l := range splitPerl(c.Description) {
		b.WriteString("#" + EncodeText(l) + "\n")
	}
	for _, k := range c.Keys() {
		if !reOptionKey.MatchString(k) || k == "description" {
			return nil, fmt.Errorf("invalid property name '%s'", k)
		}
		v := c.Options[k]
		if err := checkLineValue(k, v); err != nil {
			return nil, err
		}
		b.WriteString(k + ": " + v + "\n")
	}
	for _, e := range c.Env {
		if err := checkLineValue("env", e); err != nil {
			return nil, err
		}
		b.WriteString(EnvKey + ": " + e + "\n")
	}
	for _, r := range c.Raw {
		if !reRawKey.MatchString(r.Key) {
			return nil, fmt.Errorf("invalid lxc key '%s'", r.Key)
		}
		if err := checkLineValue(r.Key, r.Value); err != nil {
			return nil, err
		}
		b.WriteString(r.Key + ": " + r.Value + "\n")
	}
	if c.Sections != "" {
		b.WriteString("\n" + c.Sections)
		if !strings.HasSuffix(c.Sections, "\n") {
			b.WriteString("\n")
		}
	}
	return []byte(b.String()), nil
}

// checkLineValue refuses a value that would not survive one `key: value`
// line: a newline (Proxmox's own check and message) or another control
// character except tab; surrounding blanks would be trimmed on read.
func checkLineValue(key, v string) error {
	if strings.ContainsAny(v, "\n\r") {
		return fmt.Errorf("detected invalid newline inside property '%s'", key)
	}
	for _, r := range v {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return fmt.Errorf("detected invalid control character inside property '%s'", key)
		}
	}
	if v != strings.TrimSpace(v) {
		return fmt.Errorf("value of property '%s' has leading or trailing blanks", key)
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

// EncodeText %-encodes like PVE::Tools::encode_text: control characters,
// bytes >= 0x7f and ':' are escaped (note: '%' itself is not, as in Proxmox).
func EncodeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == ':' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// DecodeText reverses EncodeText (every valid %XX is decoded).
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
