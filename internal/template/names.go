package template

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/nexcage/nexcage/internal/lazyre"
)

// Extensions are the template archive suffixes pct accepts, longest first
// so that ".tar.gz" wins over ".tar".
var Extensions = []string{".tar.zst", ".tar.bz2", ".tar.gz", ".tar.xz", ".tar"}

// TemplateExt returns the archive extension of name ("" when it has none).
func TemplateExt(name string) string {
	for _, e := range Extensions {
		if strings.HasSuffix(name, e) && len(name) > len(e) {
			return e
		}
	}
	return ""
}

// fileNameRe limits template file names to what pct's volume ids allow and
// what cannot smuggle anything into a command line or config file.
var fileNameRe = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// ValidFileName reports whether name is a plausible template file name: a
// plain file name (no directory, no control or special characters) with a
// template archive extension, at most 255 bytes.
func ValidFileName(name string) bool {
	return len(name) <= 255 && fileNameRe.MatchString(name) && TemplateExt(name) != ""
}

// Name is a template file name split by Proxmox's naming convention
// <os>-<version>-<flavour>_<pkgversion>[-<release>]_<arch>.tar.<ext>, e.g.
// ubuntu-22.04-standard_22.04-1_amd64.tar.zst. Fields that the name lacks
// are empty.
type Name struct {
	File       string // the whole file name
	OS         string // ubuntu
	Version    string // 22.04
	Flavour    string // standard
	PkgVersion string // 22.04-1 (everything between the first and last '_')
	Arch       string // amd64
	Ext        string // .tar.zst
}

// knownArches are the arch suffixes of Proxmox template names.
var knownArches = map[string]bool{
	"amd64": true, "i386": true, "arm64": true, "armhf": true, "riscv32": true, "riscv64": true,
}

// ParseName splits a template file name by the Proxmox naming convention.
// ok is false when the name does not follow it (then only File and Ext are
// set): such templates are still usable by volume id or file name, but not
// by short name.
func ParseName(file string) (n Name, ok bool) {
	n.File = file
	n.Ext = TemplateExt(file)
	if n.Ext == "" {
		return n, false
	}
	parts := strings.Split(strings.TrimSuffix(file, n.Ext), "_")
	if len(parts) < 3 || !knownArches[parts[len(parts)-1]] {
		return n, false
	}
	n.Arch = parts[len(parts)-1]
	n.PkgVersion = strings.Join(parts[1:len(parts)-1], "_")
	words := strings.Split(parts[0], "-")
	if words[0] == "" {
		return n, false
	}
	n.OS = strings.ToLower(words[0])
	rest := words[1:]
	if len(rest) > 0 && looksLikeVersion(rest[0]) {
		n.Version, rest = rest[0], rest[1:]
	}
	n.Flavour = strings.Join(rest, "-")
	return n, true
}

// looksLikeVersion accepts "12", "22.04", "3.22" and the rolling names some
// distributions use instead of a number.
func looksLikeVersion(s string) bool {
	if s == "current" || s == "edge" || s == "rolling" {
		return true
	}
	return s != "" && s[0] >= '0' && s[0] <= '9'
}

// ArchFromFileName returns the Proxmox arch a file name states by the
// naming convention (`_amd64.tar.zst`), also accepting the kernel spellings
// x86_64 and aarch64; "" when the name says nothing.
func ArchFromFileName(file string) string {
	base := strings.TrimSuffix(file, TemplateExt(file))
	for _, sep := range []string{"_", "-", "."} {
		i := strings.LastIndex(base, sep)
		if i < 0 {
			continue
		}
		switch a := strings.ToLower(base[i+1:]); a {
		case "amd64", "i386", "arm64", "armhf", "riscv32", "riscv64":
			return a
		case "aarch64":
			return "arm64"
		}
	}
	if strings.HasSuffix(strings.ToLower(base), "x86_64") {
		return "amd64"
	}
	return ""
}

// shortNameRe: what a short name may look like (ubuntu, ubuntu-22.04,
// debian-12-standard).
var shortNameRe = lazyre.New(`^[a-z][a-z0-9]*(-[a-z0-9][a-z0-9.]*)*$`)

// IsShortName reports whether s has the shape of a short template name.
func IsShortName(s string) bool { return len(s) <= 128 && shortNameRe.MatchString(s) }

// shortQuery is a parsed short name.
type shortQuery struct {
	os, version, flavour string
}

func parseShort(s string) shortQuery {
	words := strings.Split(s, "-")
	q := shortQuery{os: words[0]}
	rest := words[1:]
	if len(rest) > 0 && looksLikeVersion(rest[0]) {
		q.version, rest = rest[0], rest[1:]
	}
	q.flavour = strings.Join(rest, "-")
	return q
}

// matches reports whether template name n satisfies the query: same OS,
// version equal or a dotted refinement ("12" matches "12.7"), flavour
// equal or a dash-separated prefix.
func (q shortQuery) matches(n Name) bool {
	if n.OS != q.os {
		return false
	}
	if q.version != "" && n.Version != q.version && !strings.HasPrefix(n.Version, q.version+".") {
		return false
	}
	if q.flavour != "" && n.Flavour != q.flavour && !strings.HasPrefix(n.Flavour, q.flavour+"-") {
		return false
	}
	return true
}

// defaultFlavours are the flavours Proxmox uses for its plain system
// templates; a short name without a flavour prefers them.
var defaultFlavours = map[string]bool{"standard": true, "default": true, "": true}

// pickNewest chooses the template for short name q among names (all of
// which parse). It returns the chosen name, or the candidates when the
// choice is ambiguous (several flavours and none of them the default one),
// or nothing when no name matches. Only templates for the given arches are
// considered (nil means any).
func pickNewest(q shortQuery, names []Name, arches []string) (best *Name, ambiguous []Name) {
	var m []Name
	for _, n := range names {
		if q.matches(n) && (arches == nil || slices.Contains(arches, n.Arch)) {
			m = append(m, n)
		}
	}
	if len(m) == 0 {
		return nil, nil
	}
	if q.flavour == "" {
		var def []Name
		flavours := map[string]bool{}
		for _, n := range m {
			flavours[n.Flavour] = true
			if defaultFlavours[n.Flavour] {
				def = append(def, n)
			}
		}
		switch {
		case len(def) > 0:
			m = def
		case len(flavours) > 1:
			slices.SortFunc(m, func(a, b Name) int { return -compareNames(a, b) })
			return nil, m
		}
	} else {
		// An exact flavour beats a prefix match ("turnkey" vs "turnkey-x").
		flavours := map[string]bool{}
		for _, n := range m {
			flavours[n.Flavour] = true
		}
		if len(flavours) > 1 && !flavours[q.flavour] {
			slices.SortFunc(m, func(a, b Name) int { return -compareNames(a, b) })
			return nil, m
		}
		if flavours[q.flavour] {
			m = slices.DeleteFunc(m, func(n Name) bool { return n.Flavour != q.flavour })
		}
	}
	slices.SortFunc(m, compareNames)
	return &m[len(m)-1], nil
}

// compareNames orders templates oldest first: by OS version, then package
// version, then arch preference for the host (the caller filters arches),
// then file name for a stable order.
func compareNames(a, b Name) int {
	if c := compareVersions(a.Version, b.Version); c != 0 {
		return c
	}
	if c := compareVersions(a.PkgVersion, b.PkgVersion); c != 0 {
		return c
	}
	return cmp.Compare(a.File, b.File)
}

// compareVersions compares dotted/dashed version strings numerically where
// both parts are numbers, else as strings.
func compareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '_' || r == '~' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.ParseUint(pa[i], 10, 64)
		nb, eb := strconv.ParseUint(pb[i], 10, 64)
		var c int
		if ea == nil && eb == nil {
			c = cmp.Compare(na, nb)
		} else {
			c = cmp.Compare(pa[i], pb[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(pa), len(pb))
}

// closest returns up to max of the candidates ordered by edit distance to
// want (closest first), for "did you mean" lists. Names are compared
// without their archive extension first, so the same template with
// another compression comes before a different template.
func closest(want string, candidates []string, max int) []string {
	type scored struct {
		s string
		d int
	}
	stem := func(s string) string { return strings.TrimSuffix(s, TemplateExt(s)) }
	sc := make([]scored, 0, len(candidates))
	seen := make(map[string]bool, len(candidates))
	for _, c := range candidates {
		if seen[c] { // local and available lists overlap
			continue
		}
		seen[c] = true
		sc = append(sc, scored{c, levenshtein(stem(want), stem(c))*1000 + levenshtein(want, c)})
	}
	slices.SortStableFunc(sc, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.s, b.s))
	})
	out := make([]string, 0, min(max, len(sc)))
	for i := 0; i < len(sc) && i < max; i++ {
		out = append(out, sc[i].s)
	}
	return out
}

// levenshtein is the classic edit distance over bytes.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
