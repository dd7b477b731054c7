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
	"github.com/nexcage/nexcage/internal/inithelper"
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

// mounts maps spec.mounts, then linux.maskedPaths and readonlyPaths.
//
// With an init helper (a spec with a process), the helper re-presents
// every mount in the spec's order before the process runs (Request.Rootfs,
// inithelper.RootfsSetup): a fresh tmpfs /dev populated from LXC's, fresh
// devpts, shm and mqueue under it, and every other mount (what LXC, an
// mpN or an lxc.mount.entry mounted) bound onto itself again, so that
// /proc/self/mountinfo lists them in spec order with the spec's types
// and sources, as with runc.
func (t *translator) mounts() error {
	var entries []string // destinations mounted by lxc.mount.entry so far
	helper := t.req.Process != nil
	if helper {
		t.rootfs = &inithelper.RootfsSetup{}
	}
	freshDev := false
	for i, m := range t.in.Spec.Mounts {
		field := fmt.Sprintf("mounts[%d] (%s)", i, m.Destination)
		if m.Destination == "" {
			return invalid(fmt.Sprintf("mounts[%d]", i), "no destination")
		}
		dest := path.Clean("/" + m.Destination)
		if types, ok := standardMounts[dest]; ok && (contains(types, m.Type) || (m.Type == "" && contains(types, m.Source))) {
			if helper {
				fresh, err := t.standardMount(field, m, dest, freshDev)
				if err != nil {
					return err
				}
				freshDev = freshDev || fresh == inithelper.KindDev
			}
			continue
		}
		isBind := m.Type == "bind" || contains(m.Options, "bind") || contains(m.Options, "rbind")
		shm := m.Type == "tmpfs" || (m.Type == "shm" && dest == "/dev/shm")
		if helper && freshDev && !isBind && path.Dir(dest) == "/dev" && (shm || (m.Type == "mqueue" && dest == "/dev/mqueue")) {
			// Under the helper's fresh /dev: the helper mounts it.
			if err := t.freshDevMount(field, m, dest); err != nil {
				return err
			}
			continue
		}
		var entry string
		var err error
		switch {
		case isBind:
			entry, err = t.bindMount(field, m, dest, entries)
		case shm:
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
	if err := t.paths(); err != nil {
		return err
	}
	if helper && (len(t.rootfs.Mounts) > 0 || len(t.rootfs.MaskedPaths) > 0 || len(t.rootfs.ReadonlyPaths) > 0) {
		if err := t.rootfs.Validate(); err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "the mounts for the init helper")
		}
		t.req.Rootfs = t.rootfs
	}
	return nil
}

// present asks the init helper to bind what is mounted at p onto itself
// again, at this point of the spec's order (with an init helper only).
func (t *translator) present(p string, flags []string) {
	if t.rootfs != nil {
		t.rootfs.Mounts = append(t.rootfs.Mounts, inithelper.Mount{Kind: inithelper.KindRebind, Destination: p, Flags: flags})
	}
}

// splitOptions sorts a fresh or standard mount's options into flags the
// helper applies and data options of kind (none for a rebind); options
// that restate defaults or set propagation are dropped, anything else is
// refused naming the mount.
func splitOptions(field, kind, fstype string, options []string) (flags, data []string, err error) {
	for _, o := range options {
		switch {
		case inithelper.MountFlags[o] != 0:
			if !contains(flags, o) {
				flags = append(flags, o)
			}
		case ignoredBindOptions[o] && o != "bind" && o != "rbind":
		case kind != inithelper.KindRebind && inithelper.DataAllowed(kind, o):
			if !contains(data, o) {
				data = append(data, o)
			}
		default:
			return nil, nil, unsupported(field, "%s option %q is not supported on Proxmox (allowed: %s)", fstype, o, allowedOptions(kind))
		}
	}
	return flags, data, nil
}

func allowedOptions(kind string) string {
	s := "ro, rw, nosuid, nodev, noexec, noatime, nodiratime, relatime, strictatime, sync, dirsync, propagation options"
	switch kind {
	case inithelper.KindDev, inithelper.KindTmpfs:
		s += ", size=, nr_blocks=, nr_inodes=, mode=, uid=, gid=, huge=, inode64, inode32, noswap"
	case inithelper.KindDevpts:
		s += ", newinstance, ptmxmode=, mode=, uid=, gid=, max="
	}
	return s
}

// standardMount maps a mount LXC provides itself (standardMounts) for
// the init helper: /dev as a fresh tmpfs (KindDev), /dev/pts as a fresh
// devpts after it, the others (proc, sysfs, cgroup: LXC's, with its
// protections) bound again with the spec's flags added. It returns the
// kind.
func (t *translator) standardMount(field string, m specs.Mount, dest string, freshDev bool) (string, error) {
	source := m.Source
	if source == "" {
		source = m.Type
	}
	switch {
	case dest == "/dev" && m.Type == "tmpfs":
		flags, data, err := splitOptions(field, inithelper.KindDev, "tmpfs", m.Options)
		if err != nil {
			return "", err
		}
		t.rootfs.Mounts = append(t.rootfs.Mounts, inithelper.Mount{Kind: inithelper.KindDev, Destination: dest, Source: source, Flags: flags, Data: data})
		return inithelper.KindDev, nil
	case dest == "/dev/pts" && m.Type == "devpts" && freshDev:
		flags, data, err := splitOptions(field, inithelper.KindDevpts, "devpts", m.Options)
		if err != nil {
			return "", err
		}
		if !contains(data, "newinstance") {
			// A devpts of its own, never the host's (runc does the same).
			data = append([]string{"newinstance"}, data...)
		}
		t.rootfs.Mounts = append(t.rootfs.Mounts, inithelper.Mount{Kind: inithelper.KindDevpts, Destination: dest, Source: source, Flags: flags, Data: data})
		return inithelper.KindDevpts, nil
	}
	var flags []string
	for _, o := range m.Options {
		if inithelper.MountFlags[o] != 0 {
			flags = append(flags, o)
		} else if !ignoredBindOptions[o] {
			t.warn("%s: option %q is not applied: LXC mounts %s itself, with its own options", field, o, dest)
		}
	}
	t.present(dest, flags)
	return inithelper.KindRebind, nil
}

// freshDevMount maps a tmpfs (/dev/shm...) or mqueue directly under the
// helper's fresh /dev: the helper mounts it (no lxc.mount.entry, which
// LXC would mount in its own /dev, hidden by the fresh one).
func (t *translator) freshDevMount(field string, m specs.Mount, dest string) error {
	kind, fstype := inithelper.KindTmpfs, "tmpfs"
	options := m.Options
	if m.Type == "mqueue" {
		kind, fstype = inithelper.KindMqueue, "mqueue"
		if len(options) == 0 {
			options = defaultMqueueOptions
		}
	} else if len(options) == 0 && dest == "/dev/shm" {
		options = defaultShmOptions
	}
	if err := checkText(field+" destination", dest); err != nil {
		return err
	}
	flags, data, err := splitOptions(field, kind, fstype, options)
	if err != nil {
		return err
	}
	source := m.Source
	if source == "" {
		source = fstype
	}
	if len(source) > 64 || strings.ContainsAny(source, " \t\n\\,") || checkText(field+" source", source) != nil {
		return invalid(field, "source %q must be a short name without blanks, commas or backslashes", source)
	}
	t.rootfs.Mounts = append(t.rootfs.Mounts, inithelper.Mount{Kind: kind, Destination: dest, Source: source, Flags: flags, Data: data})
	return nil
}

// paths maps linux.maskedPaths and linux.readonlyPaths to the init
// helper, which covers them inside the container after the mounts (a
// path that does not exist there is skipped, as with runc). Without an
// init helper they are ignored with a warning.
func (t *translator) paths() error {
	l := t.in.Spec.Linux
	if l == nil || (len(l.MaskedPaths) == 0 && len(l.ReadonlyPaths) == 0) {
		return nil
	}
	if t.rootfs == nil {
		// A template's own init: only LXC's proc:mixed/sys:mixed and
		// AppArmor protect these paths.
		t.warn("linux.maskedPaths/readonlyPaths are applied by nexcage's init helper, which a container keeping its template's init does not have; ignored")
		return nil
	}
	for _, list := range []struct {
		field string
		in    []string
		out   *[]string
	}{{"linux.maskedPaths", l.MaskedPaths, &t.rootfs.MaskedPaths}, {"linux.readonlyPaths", l.ReadonlyPaths, &t.rootfs.ReadonlyPaths}} {
		for i, p := range list.in {
			field := fmt.Sprintf("%s[%d]", list.field, i)
			if !strings.HasPrefix(p, "/") {
				return invalid(field, "path %q is not absolute", p)
			}
			c := path.Clean(p)
			if err := inithelper.CheckPath(c); err != nil {
				return invalid(field, "%v", err)
			}
			if !contains(*list.out, c) {
				*list.out = append(*list.out, c)
			}
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
		t.present(tg.path, nil)
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
	t.present(tg.path, nil)
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
	t.present(tg.path, nil)
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
		case reTmpfsOpt.MatchString(o):
			// File system data (mode=, size=...): the kernel ignores the
			// data of a bind mount, and so does runc.
			t.warn("%s: option %q has no effect on a bind mount; ignored", field, o)
			continue
		default:
			return false, nil, nil, unsupported(field, "mount option %q is not supported for bind mounts on Proxmox (allowed: ro, nosuid, nodev, noexec, noatime, lazytime, discard, relatime, strictatime, nodiratime, propagation options, and tmpfs options, which a bind ignores)", o)
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
	// The spec's source is what mountinfo shows (runtime-tools compares
	// it); LXC takes a relative target as relative to the container's
	// rootfs.
	source := m.Source
	if source == "" {
		source = "tmpfs"
	}
	if err := checkText(field+" source", source); err != nil {
		return "", err
	}
	t.raw("lxc.mount.entry", fstabEscape(source)+" "+fstabEscape(strings.TrimPrefix(tg.path, "/"))+" tmpfs "+strings.Join(append(opts, "create=dir"), ",")+" 0 0")
	t.mountTarget(tg, false)
	t.present(tg.path, nil)
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
	t.present("/dev/mqueue", nil)
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
