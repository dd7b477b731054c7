package pvecfg

import (
	"sort"
	"strings"
)

// SplitList is PVE::Tools::split_list: a NUL-separated list when the text
// holds a NUL, else items separated by `,`, `;` and blanks.
func SplitList(s string) []string {
	if strings.Contains(s, "\x00") {
		return strings.Split(s, "\x00")
	}
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
	})
}

// NormalizeTags is PVE::GuestHelpers::get_unique_tags with datacenter.cfg's
// default tag-style (no case-sensitive, ordering not "config"), which
// pve-container applies to `tags` on create and set (PVE 8 and 9): the
// list is split as split_list does, sorted case-insensitively,
// lowercased, de-duplicated and joined with `;`. The format check
// (pve-tag: `[a-z0-9_][a-z0-9_\-+.]*`, any case) happens before, in the
// schema.
func NormalizeTags(s string) string {
	tags := SplitList(s)
	sort.SliceStable(tags, func(i, j int) bool { return strings.ToLower(tags[i]) < strings.ToLower(tags[j]) })
	seen := map[string]bool{}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		t = strings.ToLower(t)
		if seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return strings.Join(out, ";")
}
