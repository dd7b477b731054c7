package proxmox

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
)

// How an OCI mount reaches a Proxmox container (docs/MAPPING.md, "Mounts";
// proxmox-pct.md §9.5):
//
//   - A bind of a host directory whose path, and whose destination inside
//     the rootfs, has no symlink becomes a Proxmox mount point mpN: a real
//     node opens every component of both with O_NOFOLLOW|O_DIRECTORY and
//     refuses a file source (`directory '<path>' does not exist`) or a
//     symlink (`symlink encountered at: <path>`).
//   - Everything else becomes a raw `lxc.mount.entry`, which LXC applies
//     after its /dev tmpfs (autodev): file, socket and device binds,
//     anything under /dev (an mpN there is hidden by autodev), /dev/shm,
//     /dev/mqueue, tmpfs, destinations whose path in the image crosses a
//     symlink, and binds nested in (or holding) an earlier lxc.mount.entry
//     (Proxmox mounts every mpN before LXC's entries, so the spec's order
//     only holds if both are entries).
//
// Destinations are resolved inside the bundle's rootfs without leaving it
// (filepath-securejoin, as runc does): /var/run/x in an image where
// /var/run -> /run is mounted at /run/x. Under /dev nothing is resolved:
// at run time /dev is LXC's fresh tmpfs, not the image's directory.

// standardMounts are provided by LXC itself in every container: the
// spec's copies are not mounted again.
var standardMounts = map[string][]string{
	"/proc":          {"proc"},
	"/sys":           {"sysfs"},
	"/dev":           {"tmpfs", "devtmpfs"},
	"/dev/pts":       {"devpts"},
	"/sys/fs/cgroup": {"cgroup", "cgroup2"},
}

// Mount options Proxmox accepts in an mpN's mountoptions=.
var pveMountOptions = map[string]bool{"discard": true, "lazytime": true, "noatime": true, "nodev": true, "noexec": true, "nosuid": true}

// Bind options an lxc.mount.entry carries (LXC remounts the bind with them).
var entryBindOptions = map[string]bool{"ro": true, "nosuid": true, "nodev": true, "noexec": true, "noatime": true, "nodiratime": true, "relatime": true, "strictatime": true}

// Bind mount options that only restate defaults or set propagation, which
// Proxmox and LXC handle themselves: accepted silently.
var ignoredBindOptions = map[string]bool{
	"bind": true, "rbind": true, "rw": true, "private": true, "rprivate": true, "slave": true, "rslave": true,
	"shared": true, "rshared": true, "unbindable": true, "runbindable": true,
	"suid": true, "dev": true, "exec": true, "async": true,
}

// Options that change atime or similar behaviour mildly: warned, ignored
// where they cannot be carried.
var warnedBindOptions = map[string]bool{"relatime": true, "strictatime": true, "nodiratime": true, "diratime": true, "atime": true, "norelatime": true, "nostrictatime": true, "nosymfollow": true}

// tmpfs options the kernel understands and LXC passes on as mount data.
var reTmpfsOpt = lazyre.New(`^((size|mode|uid|gid|nr_inodes|nr_blocks)=[A-Za-z0-9%]+|huge=(never|always|within_size|advise|deny|force)|inode64|inode32|noswap)$`)

// Defaults for /dev/shm and /dev/mqueue when the spec gives no options:
// runc's and containerd's.
var (
	defaultShmOptions    = []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}
	defaultMqueueOptions = []string{"nosuid", "noexec", "nodev"}
)

// mounts maps spec.mounts (see the comment at the top of this file).
func (t *translator) mounts() error {
	var entries []string // destinations mounted by lxc.mount.entry so far
	for i, m := range t.in.Spec.Mounts {
		field := fmt.Sprintf("mounts[%d] (%s)", i, m.Destination)
		if m.Destination == "" {
			return invalid(fmt.Sprintf("mounts[%d]", i), "no destination")
		}
		dest := path.Clean("/" + m.Destination)
		if types, ok := standardMounts[dest]; ok && (contains(types, m.Type) || (m.Type == "" && contains(types, m.Source))) {
			continue
		}
		isBind := m.Type == "bind" || contains(m.Options, "bind") || contains(m.Options, "rbind")
		var entry string
		var err error
		switch {
		case isBind:
			entry, err = t.bindMount(field, m, dest, entries)
		case m.Type == "tmpfs" || (m.Type == "shm" && dest == "/dev/shm"):
			entry, err = t.tmpfsMount(field, m, dest)
		case m.Type == "mqueue" && dest == "/dev/mqueue":
			entry, err = t.mqueueMount(field, m)
		default:
			return unsupported(field, "mount type %q from %q cannot be expressed on Proxmox (only bind mounts, Proxmox volumes, tmpfs, and mqueue at /dev/mqueue)", m.Type, m.Source)
		}
		if err != nil {
			return err
		}
		if entry != "" {
			entries = append(entries, entry)
		}
	}
	return nil
}

// underDev reports whether p is /dev or below it.
func underDev(p string) bool { return p == "/dev" || strings.HasPrefix(p, "/dev/") }

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// target is a mount destination resolved inside the rootfs.
type target struct {
	path string      // absolute path inside the container, no symlink
	fi   fs.FileInfo // what the image has there; nil when absent or unknown
	// crossed is true when the destination's path in the image crosses
	// a symlink (so path differs from the spec's destination).
	crossed bool
	// known is false when nexcage cannot see the rootfs (a template):
	// the destination is then left to LXC, which resolves it in the
	// container's rootfs at start.
	known bool
}

// resolveDest resolves dest inside the bundle's rootfs without leaving it.
func (t *translator) resolveDest(field, dest string) (target, error) {
	if underDev(dest) {
		// /dev is LXC's own tmpfs at run time (autodev), not the image's.
		return target{path: dest, known: true}, nil
	}
	if t.in.Rootfs == "" {
		return target{path: dest}, nil
	}
	full, err := securejoin.SecureJoin(t.in.Rootfs, dest)
	if err != nil {
		return target{}, errs.Wrap(errs.KindInvalidBundle, err, "%s: cannot resolve the destination inside the rootfs %s", field, t.in.Rootfs)
	}
	rel, err := filepath.Rel(t.in.Rootfs, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return target{}, invalid(field, "destination resolves outside the rootfs")
	}
	p := path.Clean("/" + filepath.ToSlash(rel))
	if p == "/" {
		return target{}, invalid(field, "destination resolves to / inside the image (a symlink to /)")
	}
	tg := target{path: p, crossed: p != dest, known: true}
	if fi, err := os.Lstat(full); err == nil {
		tg.fi = fi
	}
	return tg, nil
}

// bindMount maps one bind mount; it returns the destination when it
// became an lxc.mount.entry.
func (t *translator) bindMount(field string, m specs.Mount, dest string, entries []string) (string, error) {
	if dest == "/" {
		return "", invalid(field, "cannot bind mount over /")
	}
	if err := checkText(field+" destination", dest); err != nil {
		return "", err
	}
	if m.Source == "" {
		return "", invalid(field, "bind mount without source")
	}
	tg, err := t.resolveDest(field, dest)
	if err != nil {
		return "", err
	}
	if isVolumeID(m.Source) {
		return "", t.volumeMount(field, m, tg)
	}
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(t.in.BundleDir, src)
	}
	src = filepath.Clean(src)
	if err := checkText(field+" source", src); err != nil {
		return "", err
	}
	// A real node refuses a symlink anywhere in a bind source's path:
	// give it the path the symlinks lead to.
	resolved, err := filepath.EvalSymlinks(src)
	if err != nil {
		return "", errs.Wrap(errs.KindInvalidBundle, err, "%s source %s does not exist", field, src).
			WithHint("create it or fix the mount's source in config.json (relative sources are taken from the bundle directory)")
	}
	fi, err := t.in.Stat(resolved)
	if err != nil {
		return "", errs.Wrap(errs.KindInvalidBundle, err, "%s source %s does not exist", field, src).
			WithHint("create it or fix the mount's source in config.json (relative sources are taken from the bundle directory)")
	}
	if err := checkText(field+" source", resolved); err != nil {
		return "", err
	}
	isDir := fi.IsDir()
	if tg.fi != nil {
		switch {
		case isDir && !tg.fi.IsDir():
			return "", invalid(field, "source %s is a directory but %s in the image is not", resolved, tg.path)
		case !isDir && tg.fi.IsDir():
			return "", invalid(field, "source %s is a file but %s in the image is a directory", resolved, tg.path)
		}
	}
	ro, mopts, eopts, err := t.bindOptions(field, m.Options)
	if err != nil {
		return "", err
	}
	asMP := isDir && tg.known && !tg.crossed && !underDev(tg.path) && t.in.Rootfs != "" &&
		propSafe(resolved) && propSafe(tg.path)
	for _, e := range entries {
		if within(tg.path, e) || within(e, tg.path) {
			asMP = false // keep the spec's order with an earlier entry
		}
	}
	dropped := func(have, keep []string) {
		for _, o := range have {
			if o != "ro" && !contains(keep, o) {
				t.warn("%s: mount option %q cannot be carried by this kind of mount; ignored", field, o)
			}
		}
	}
	if asMP {
		dropped(eopts, mopts)
		v := resolved + ",mp=" + tg.path
		if ro {
			v += ",ro=1"
		}
		if len(mopts) > 0 {
			v += ",mountoptions=" + strings.Join(mopts, ";")
		}
		if err := t.addMP(field, v); err != nil {
			return "", err
		}
		t.mountTarget(tg, false)
		return "", nil
	}
	dropped(mopts, eopts)
	kind := "bind"
	if contains(m.Options, "rbind") {
		kind = "rbind"
	}
	opts := append([]string{kind}, eopts...)
	create := "create=dir"
	if !isDir {
		create = "create=file"
	}
	opts = append(opts, create)
	t.raw("lxc.mount.entry", fstabEscape(resolved)+" "+fstabEscape(strings.TrimPrefix(tg.path, "/"))+" none "+strings.Join(opts, ",")+" 0 0")
	t.mountTarget(tg, !isDir)
	return tg.path, nil
}

// volumeMount maps a bind of a Proxmox volume (storage:volume): only an
// mpN can mount it.
func (t *translator) volumeMount(field string, m specs.Mount, tg target) error {
	if err := checkProp(field+" source", m.Source); err != nil {
		return err
	}
	if underDev(tg.path) {
		return unsupported(field, "a Proxmox volume cannot be mounted under /dev (LXC's /dev tmpfs hides mount points there)")
	}
	if err := checkPath(field+" destination", tg.path); err != nil {
		return err
	}
	ro, mopts, _, err := t.bindOptions(field, m.Options)
	if err != nil {
		return err
	}
	v := m.Source + ",mp=" + tg.path
	if ro {
		v += ",ro=1"
	}
	if len(mopts) > 0 {
		v += ",mountoptions=" + strings.Join(mopts, ";")
	}
	if err := t.addMP(field, v); err != nil {
		return err
	}
	t.mountTarget(tg, false)
	return nil
}

// bindOptions sorts a bind's options into ro, an mpN's mountoptions and
// an lxc.mount.entry's options.
func (t *translator) bindOptions(field string, options []string) (ro bool, mopts, eopts []string, err error) {
	for _, o := range options {
		switch {
		case pveMountOptions[o] || entryBindOptions[o]:
			ro = ro || o == "ro"
		case ignoredBindOptions[o]:
			continue
		case warnedBindOptions[o]:
			t.warn("%s: mount option %q is not supported by Proxmox; ignored", field, o)
			continue
		default:
			return false, nil, nil, unsupported(field, "mount option %q is not supported for bind mounts on Proxmox (allowed: ro, nosuid, nodev, noexec, noatime, lazytime, discard, relatime, strictatime, nodiratime, and propagation options)", o)
		}
		if pveMountOptions[o] && !contains(mopts, o) {
			mopts = append(mopts, o)
		}
		if entryBindOptions[o] && !contains(eopts, o) {
			eopts = append(eopts, o)
		}
	}
	return ro, mopts, eopts, nil
}

func (t *translator) addMP(field, v string) error {
	if len(t.mps) >= 256 {
		return unsupported(field, "more than 256 mount points")
	}
	t.mps = append(t.mps, v)
	return nil
}

// mountTarget asks the packer to create the destination in the packed
// rootfs (so it can be mounted on a read-only root). Under /dev it would
// be hidden by LXC's tmpfs; LXC's create=dir|file makes it there.
func (t *translator) mountTarget(tg target, file bool) {
	if underDev(tg.path) || !tg.known {
		return
	}
	t.req.MountTargets = append(t.req.MountTargets, MountTarget{Path: tg.path, File: file})
}

// tmpfsMount maps a tmpfs (and /dev/shm) to an lxc.mount.entry.
func (t *translator) tmpfsMount(field string, m specs.Mount, dest string) (string, error) {
	if dest == "/" {
		return "", invalid(field, "cannot mount tmpfs over /")
	}
	if err := checkText(field+" destination", dest); err != nil {
		return "", err
	}
	tg, err := t.resolveDest(field, dest)
	if err != nil {
		return "", err
	}
	if tg.fi != nil && !tg.fi.IsDir() {
		return "", invalid(field, "%s in the image is not a directory", tg.path)
	}
	options := m.Options
	if len(options) == 0 && tg.path == "/dev/shm" {
		options = defaultShmOptions
	}
	opts, err := fsOptions(field, "tmpfs", options, true)
	if err != nil {
		return "", err
	}
	// LXC takes a relative target as relative to the container's rootfs.
	t.raw("lxc.mount.entry", "tmpfs "+fstabEscape(strings.TrimPrefix(tg.path, "/"))+" tmpfs "+strings.Join(append(opts, "create=dir"), ",")+" 0 0")
	t.mountTarget(tg, false)
	return tg.path, nil
}

// mqueueMount maps the POSIX message queue file system at /dev/mqueue.
func (t *translator) mqueueMount(field string, m specs.Mount) (string, error) {
	options := m.Options
	if len(options) == 0 {
		options = defaultMqueueOptions
	}
	opts, err := fsOptions(field, "mqueue", options, false)
	if err != nil {
		return "", err
	}
	t.raw("lxc.mount.entry", "mqueue dev/mqueue mqueue "+strings.Join(append(opts, "create=dir"), ",")+" 0 0")
	return "/dev/mqueue", nil
}

// fsOptions checks the options of a tmpfs or mqueue mount.
func fsOptions(field, fstype string, options []string, tmpfs bool) ([]string, error) {
	opts := []string{}
	for _, o := range options {
		switch {
		case o == "ro" || o == "rw" || pveMountOptions[o] || entryBindOptions[o] || warnedBindOptions[o]:
		case ignoredBindOptions[o] && o != "bind" && o != "rbind":
		case tmpfs && reTmpfsOpt.MatchString(o):
		default:
			return nil, unsupported(field, "%s option %q is not supported", fstype, o)
		}
		if !contains(opts, o) {
			opts = append(opts, o)
		}
	}
	return opts, nil
}

// propSafe reports whether p can be written inside a Proxmox property
// string (mpN) as is.
func propSafe(p string) bool { return checkPath("", p) == nil }

// fstabEscape escapes a path for one field of an lxc.mount.entry, which
// LXC reads with getmntent(3): blanks and backslashes as octal escapes.
// Control characters are refused before (checkText).
func fstabEscape(s string) string {
	if !strings.ContainsAny(s, " \t\\") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case ' ':
			b.WriteString(`\040`)
		case '\t':
			b.WriteString(`\011`)
		case '\\':
			b.WriteString(`\134`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
