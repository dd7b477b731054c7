package pvesim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// osPlugins are the ostypes pve-container's PVE::LXC::Setup knows; an
// os-release ID equal to one of them is taken as is.
var osPlugins = map[string]bool{
	"alpine": true, "archlinux": true, "centos": true, "debian": true,
	"devuan": true, "fedora": true, "gentoo": true, "openeuler": true,
	"opensuse": true, "ubuntu": true, "nixos": true, "unmanaged": true,
}

// osAliases map related os-release IDs onto a plugin, as Setup.pm does.
var osAliases = map[string]string{
	"opensuse-leap":       "opensuse",
	"opensuse-tumbleweed": "opensuse",
	"opensuse-slowroll":   "opensuse",
	"openEuler":           "openeuler",
	"arch":                "archlinux",
	"sles":                "opensuse",
}

// osFallbacks are Setup.pm's compatibility checks when os-release gives no
// usable ID, in its order.
var osFallbacks = []struct {
	files  []string
	isDir  bool
	ostype string
}{
	{files: []string{"etc/debian_version"}, ostype: "debian"},
	{files: []string{"etc/devuan_version"}, ostype: "devuan"},
	{files: []string{"etc/SuSE-brand", "etc/SuSE-release"}, ostype: "opensuse"},
	{files: []string{"etc/fedora-release"}, ostype: "fedora"},
	{files: []string{"etc/centos-release", "etc/redhat-release"}, ostype: "centos"},
	{files: []string{"etc/arch-release"}, ostype: "archlinux"},
	{files: []string{"etc/alpine-release"}, ostype: "alpine"},
	{files: []string{"etc/gentoo-release"}, ostype: "gentoo"},
	{files: []string{"nix/store"}, isDir: true, ostype: "nixos"},
	{files: []string{"etc/openEuler-release"}, ostype: "openeuler"},
}

var reLsbUbuntu = regexp.MustCompile(`(?im)^DISTRIB_ID=Ubuntu$`)

// detectOSType finds a container's ostype from its root filesystem with the
// logic of pve-container's PVE::LXC::Setup autodetection: the os-release ID
// (or an alias of it), else lsb-release and the distribution marker files,
// else `unmanaged` when there is no os-release at all. An os-release naming
// an unknown distribution fails with `unable to detect OS distribution`.
// Warnings Proxmox prints on the way go to n.Stderr.
//
// Files are looked up as from inside the container (Proxmox chroots), so
// absolute symlinks resolve within rootfs and never reach the host.
func (n *Node) detectOSType(rootfs string) (string, error) {
	// Like Perl's -f, anything unreadable (missing, a loop, not a plain
	// file) counts as absent.
	rel, err := readInRoot(rootfs, "etc/os-release")
	if err != nil {
		rel, _ = readInRoot(rootfs, "usr/lib/os-release")
	}
	vars := parseOSRelease(string(rel))
	if id := vars["ID"]; id != "" {
		if osPlugins[id] {
			return id, nil
		}
		if alias, ok := osAliases[id]; ok {
			return alias, nil
		}
		n.warnf("unknown ID '%s' in /etc/os-release file, trying fallback detection\n", id)
	}

	if lsb, err := readInRoot(rootfs, "etc/lsb-release"); err == nil && reLsbUbuntu.Match(lsb) {
		return "ubuntu", nil
	}
	for _, fb := range osFallbacks {
		for _, f := range fb.files {
			st, err := statInRoot(rootfs, f)
			if err != nil {
				continue
			}
			if (fb.isDir && st.IsDir()) || (!fb.isDir && st.Mode().IsRegular()) {
				return fb.ostype, nil
			}
		}
	}
	if st, err := statInRoot(rootfs, "etc/os-release"); err == nil && st.Mode().IsRegular() {
		return "", errors.New("unable to detect OS distribution")
	}
	n.warnf("/etc/os-release file not found and autodetection failed, falling back to 'unmanaged'\n")
	return "unmanaged", nil
}

// warnf writes a warning to the node's stderr when it has one.
func (n *Node) warnf(format string, args ...any) {
	if n.Stderr != nil {
		fmt.Fprintf(n.Stderr, format, args...)
	}
}

// parseOSRelease reads os-release(5) assignments like Setup.pm: single
// quotes literal, double quotes with backslash escapes, else a bare
// alphanumeric word.
func parseOSRelease(data string) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimLeft(line, " \t")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 || !reOSVar.MatchString(line[:eq]) {
			continue
		}
		name, content := line[:eq], line[eq+1:]
		switch {
		case strings.HasPrefix(content, "'"):
			if end := strings.IndexByte(content[1:], '\''); end >= 0 {
				vars[name] = content[1 : 1+end]
			}
		case strings.HasPrefix(content, `"`):
			var b strings.Builder
			closed := false
			for i := 1; i < len(content); i++ {
				c := content[i]
				if c == '\\' && i+1 < len(content) {
					i++
					switch content[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(content[i])
					}
					continue
				}
				if c == '"' {
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if closed {
				vars[name] = b.String()
			}
		default:
			end := 0
			for end < len(content) && isAlnum(content[end]) {
				end++
			}
			vars[name] = content[:end]
		}
	}
	return vars
}

var reOSVar = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// resolveInRoot resolves rel inside root as a chroot would: every symlink,
// absolute or relative, is interpreted relative to root and can never
// leave it. It returns the host path of the final component (not
// followed if it is a dangling link).
func resolveInRoot(root, rel string) (string, error) {
	const maxLinks = 40
	links := 0
	todo := strings.Split(path.Clean("/"+rel), "/")
	cur := "/" // position inside the root
	for len(todo) > 0 {
		part := todo[0]
		todo = todo[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		links++
		if links > maxLinks {
			return "", &fs.PathError{Op: "resolve", Path: rel, Err: errors.New("too many levels of symbolic links")}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return filepath.Join(root, cur), nil
}

func readInRoot(root, rel string) ([]byte, error) {
	p, err := resolveInRoot(root, rel)
	if err != nil {
		return nil, err
	}
	st, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: rel, Err: fs.ErrNotExist}
	}
	return os.ReadFile(p)
}

func statInRoot(root, rel string) (fs.FileInfo, error) {
	p, err := resolveInRoot(root, rel)
	if err != nil {
		return nil, err
	}
	return os.Lstat(p)
}
