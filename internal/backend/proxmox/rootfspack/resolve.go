package rootfspack

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

// CacheFor returns the template cache of storage id in storages; it must
// be a storage with a path (dir-like) and content vztmpl.
func CacheFor(storages []pve.Storage, id string) (*Cache, error) {
	s, ok := pve.FindStorage(storages, id)
	if !ok {
		return nil, errs.New(errs.KindInvalidConfig, "template storage '%s' is not defined in storage.cfg", id).
			WithHint("set proxmox.template_storage to a storage with content vztmpl (e.g. local)")
	}
	if s.Path == "" {
		return nil, errs.New(errs.KindInvalidConfig, "template storage '%s' (%s) has no directory path; nexcage can only place templates on dir-like storages", id, s.Type).
			WithHint("set proxmox.template_storage to a dir storage with content vztmpl (e.g. local)")
	}
	if !s.HasContent("vztmpl") {
		return nil, errs.New(errs.KindInvalidConfig, "storage '%s' cannot hold container templates (content: %s)", id, strings.Join(s.Content, ",")).
			WithHint("add vztmpl to its content, or set proxmox.template_storage to a storage that has it")
	}
	return &Cache{Storage: id, Dir: filepath.Join(s.Path, "template", "cache")}, nil
}

// CheckVolID validates a `storage:vztmpl/<file>` template volume id and,
// for dir-like storages, that the file exists. The error names what is
// wrong and lists the templates that do exist there.
func CheckVolID(storages []pve.Storage, volid string) error {
	storage, volname, err := pve.ParseVolumeID(volid)
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "template %q", volid).
			WithHint("name a template as storage:vztmpl/<file>, e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
	}
	file, err := pve.TemplateVolume(volname)
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "template %q is not a container template volume", volid).
			WithHint("container templates are storage:vztmpl/<file>.tar.{gz,xz,zst,bz2}")
	}
	s, ok := pve.FindStorage(storages, storage)
	if !ok {
		return errs.New(errs.KindTemplate, "template %s: storage '%s' does not exist in storage.cfg", volid, storage)
	}
	if !s.HasContent("vztmpl") {
		return errs.New(errs.KindTemplate, "template %s: storage '%s' does not hold templates (content: %s)", volid, storage, strings.Join(s.Content, ","))
	}
	if s.Path == "" {
		return nil // not a dir storage: pct checks it
	}
	dir := filepath.Join(s.Path, "template", "cache")
	if _, err := os.Stat(filepath.Join(dir, file)); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return errs.Wrap(errs.KindTemplate, err, "template %s", volid)
	}
	avail := List(dir)
	e := errs.New(errs.KindTemplate, "template %s not found in %s", volid, dir)
	if len(avail) == 0 {
		return e.WithHint("storage '%s' has no templates; download one with `pveam download %s <template>` (see `pveam available`)", storage, storage)
	}
	sortByCloseness(avail, file)
	if len(avail) > 8 {
		avail = avail[:8]
	}
	for i := range avail {
		avail[i] = storage + ":vztmpl/" + avail[i]
	}
	return e.WithHint("available: %s", strings.Join(avail, ", "))
}

// List returns the template files in a cache directory.
func List(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && pve.HasTemplateExtension(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// sortByCloseness orders names by the length of the prefix they share
// with want (longest first), then by name.
func sortByCloseness(names []string, want string) {
	common := func(a string) int {
		n := 0
		for n < len(a) && n < len(want) && a[n] == want[n] {
			n++
		}
		return n
	}
	sort.SliceStable(names, func(i, j int) bool {
		ci, cj := common(names[i]), common(names[j])
		if ci != cj {
			return ci > cj
		}
		return names[i] < names[j]
	})
}

// osTypes maps os-release IDs to Proxmox ostypes.
var osTypes = map[string]string{
	"debian": "debian", "devuan": "devuan", "ubuntu": "ubuntu", "centos": "centos", "rhel": "centos",
	"rocky": "centos", "almalinux": "centos", "fedora": "fedora", "opensuse": "opensuse",
	"opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse", "sles": "opensuse",
	"arch": "archlinux", "archlinux": "archlinux", "alpine": "alpine", "gentoo": "gentoo", "nixos": "nixos",
}

// DetectOSType reads the rootfs's os-release and returns the Proxmox
// ostype for it, or "unmanaged" when the file is missing or the
// distribution is one Proxmox does not know (so pct never fails with
// "unable to detect OS distribution"). Symlinks are resolved inside
// rootfs, never on the host.
func DetectOSType(rootfs string) string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, ok := readInRoot(rootfs, p)
		if !ok {
			continue
		}
		vals := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(data))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if ok {
				vals[k] = strings.Trim(v, `"'`)
			}
		}
		if t, ok := osTypes[strings.ToLower(vals["ID"])]; ok {
			return t
		}
		for _, like := range strings.Fields(strings.ToLower(vals["ID_LIKE"])) {
			if t, ok := osTypes[like]; ok {
				return t
			}
		}
		return "unmanaged"
	}
	return "unmanaged"
}

// readInRoot reads p inside root, following at most 8 symlinks, each
// resolved relative to root.
func readInRoot(root, p string) (string, bool) {
	for i := 0; i < 8; i++ {
		full := filepath.Join(root, filepath.Clean("/"+p))
		fi, err := os.Lstat(full)
		if err != nil {
			return "", false
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.Mode().IsRegular() || fi.Size() > 1<<16 {
				return "", false
			}
			data, err := os.ReadFile(full)
			return string(data), err == nil
		}
		target, err := os.Readlink(full)
		if err != nil {
			return "", false
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(filepath.Clean("/"+p)), target)
		}
		p = target
	}
	return "", false
}
