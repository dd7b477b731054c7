package pvecfg

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"regexp"
)

// Prop is one key=value pair of a property string.
type Prop struct {
	Key   string
	Value string
}

// Props is a parsed Proxmox property string (`name=eth0,bridge=vmbr0`),
// in the order given.
type Props []Prop

// ParseProps splits a property string the way PVE::JSONSchema's
// parse_property_string does (syntax only; see PropFormat.Check for the
// schema checks). A part without `=` is the value of defaultKey. Errors
// carry Proxmox's words.
func ParseProps(s, defaultKey string) (Props, error) {
	var res Props
	seen := map[string]bool{}
	defaultSeen := false
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		if i := strings.IndexByte(part, '='); i > 0 && i < len(part)-1 {
			k, v := part[:i], part[i+1:]
			if seen[k] {
				return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", k)
			}
			seen[k] = true
			res = append(res, Prop{Key: k, Value: v})
			continue
		} else if i < 0 {
			if defaultSeen {
				return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", defaultKey)
			}
			if defaultKey == "" {
				return nil, fmt.Errorf("value without key, but schema does not define a default key")
			}
			defaultSeen = true
			if seen[defaultKey] {
				return nil, fmt.Errorf("duplicate key in comma-separated list property: %s", defaultKey)
			}
			seen[defaultKey] = true
			res = append(res, Prop{Key: defaultKey, Value: part})
			continue
		}
		return nil, fmt.Errorf("missing key in comma-separated list property")
	}
	return res, nil
}

// Get returns the value of key.
func (p Props) Get(key string) (string, bool) {
	for _, kv := range p {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Set replaces key's value or appends it.
func (p *Props) Set(key, value string) {
	for i := range *p {
		if (*p)[i].Key == key {
			(*p)[i].Value = value
			return
		}
	}
	*p = append(*p, Prop{Key: key, Value: value})
}

// Canonical formats the properties as print_property_string does: the
// default key's bare value first, then the required keys sorted, then the
// rest sorted. It does not validate values (see ValidatePropValue).
func (p Props) Canonical(defaultKey string, required ...string) string {
	req := map[string]bool{}
	for _, r := range required {
		req[r] = true
	}
	var parts []string
	done := map[string]bool{}
	if v, ok := p.Get(defaultKey); ok && defaultKey != "" {
		parts = append(parts, v)
		done[defaultKey] = true
	}
	keys := make([]string, 0, len(p))
	for _, kv := range p {
		keys = append(keys, kv.Key)
	}
	sort.Strings(keys)
	for _, pass := range []bool{true, false} {
		for _, k := range keys {
			if done[k] || (pass && !req[k]) {
				continue
			}
			done[k] = true
			v, _ := p.Get(k)
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

var reSize = regexp.MustCompile(`^(\d+(\.\d+)?)([KMGT])?$`)

// ParseSize parses a disk size like `8G` or `512M` (PVE::JSONSchema
// parse_size; no unit means bytes) into bytes.
func ParseSize(s string) (int64, bool) {
	m := reSize.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	switch m[3] {
	case "K":
		f *= 1 << 10
	case "M":
		f *= 1 << 20
	case "G":
		f *= 1 << 30
	case "T":
		f *= 1 << 40
	}
	return int64(f), true
}

// FormatSize prints bytes as Proxmox does (format_size): the largest unit
// that divides the size exactly, e.g. `4G`, `512M`, `1536K`.
func FormatSize(n int64) string {
	kb := n / 1024
	if kb*1024 != n {
		return strconv.FormatInt(n, 10)
	}
	mb := kb / 1024
	if mb*1024 != kb {
		return strconv.FormatInt(kb, 10) + "K"
	}
	gb := mb / 1024
	if gb*1024 != mb {
		return strconv.FormatInt(mb, 10) + "M"
	}
	tb := gb / 1024
	if tb*1024 != gb {
		return strconv.FormatInt(gb, 10) + "G"
	}
	return strconv.FormatInt(tb, 10) + "T"
}
