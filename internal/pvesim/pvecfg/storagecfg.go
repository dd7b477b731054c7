package pvecfg

import (
	"fmt"
	"sort"
	"strings"

	"regexp"
)

// Storage is one stanza of /etc/pve/storage.cfg.
type Storage struct {
	Type    string            // dir, lvmthin, zfspool, nfs, ...
	Name    string            // storage id, e.g. local
	Props   map[string]string // every property line (content and path included)
	Content []string          // parsed `content`
	Path    string            // `path` (dir-like storages)
}

// HasContent reports whether the storage may hold content type c
// (rootdir, images, vztmpl, iso, backup, snippets).
func (s *Storage) HasContent(c string) bool {
	for _, x := range s.Content {
		if x == c {
			return true
		}
	}
	return false
}

var (
	reStanzaHead = regexp.MustCompile(`^(\S+):\s*(\S+)\s*$`)
	reStanzaProp = regexp.MustCompile(`^\s+(\S+)(\s+(.*\S))?\s*$`)
)

// ParseStorageConfig parses storage.cfg (SectionConfig format: `type: id`
// then indented `key value` lines, stanzas separated by blank lines).
// A property without a value (e.g. `disable`) is "1".
func ParseStorageConfig(data []byte) ([]Storage, error) {
	var res []Storage
	var cur *Storage
	for n, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := reStanzaHead.FindStringSubmatch(line); m != nil && line[0] != ' ' && line[0] != '\t' {
			if err := VerifyStorageID(m[2]); err != nil {
				return nil, fmt.Errorf("storage.cfg line %d: %v", n+1, err)
			}
			res = append(res, Storage{Type: m[1], Name: m[2], Props: map[string]string{}})
			cur = &res[len(res)-1]
			continue
		}
		m := reStanzaProp.FindStringSubmatch(line)
		if m == nil || cur == nil {
			return nil, fmt.Errorf("storage.cfg line %d: unable to parse %q", n+1, line)
		}
		v := m[3]
		if m[2] == "" {
			v = "1"
		}
		cur.Props[m[1]] = v
		switch m[1] {
		case "content":
			cur.Content = nil
			for _, c := range strings.Split(v, ",") {
				if c = strings.TrimSpace(c); c != "" {
					cur.Content = append(cur.Content, c)
				}
			}
		case "path":
			cur.Path = v
		}
	}
	return res, nil
}

// FindStorage returns the storage named id.
func FindStorage(list []Storage, id string) (*Storage, bool) {
	for i := range list {
		if list[i].Name == id {
			return &list[i], true
		}
	}
	return nil, false
}

// MarshalStorageConfig writes storage.cfg: per stanza `path` and `content`
// first (as Proxmox's own files read), then the other keys sorted.
func MarshalStorageConfig(list []Storage) ([]byte, error) {
	var b strings.Builder
	for i, s := range list {
		if err := VerifyStorageID(s.Name); err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %s\n", s.Type, s.Name)
		props := map[string]string{}
		for k, v := range s.Props {
			props[k] = v
		}
		if s.Path != "" {
			props["path"] = s.Path
		}
		if len(s.Content) > 0 {
			props["content"] = strings.Join(s.Content, ",")
		}
		keys := make([]string, 0, len(props))
		for k := range props {
			if k != "path" && k != "content" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range append([]string{"path", "content"}, keys...) {
			v, ok := props[k]
			if !ok {
				continue
			}
			if strings.ContainsAny(k+v, "\n\r") || strings.ContainsAny(k, " \t") {
				return nil, fmt.Errorf("storage %s: invalid property %q", s.Name, k)
			}
			fmt.Fprintf(&b, "\t%s %s\n", k, v)
		}
	}
	return []byte(b.String()), nil
}
