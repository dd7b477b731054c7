package pve

import (
	"fmt"
	"strings"

	"github.com/nexcage/nexcage/internal/lazyre"
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
	reStanzaHead = lazyre.New(`^(\S+):\s*(\S+)\s*$`)
	reStanzaProp = lazyre.New(`^\s+(\S+)(\s+(.*\S))?\s*$`)
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
