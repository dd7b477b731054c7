package proxmox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/errs"
)

// linux.devices on the Proxmox backend.
//
// The OCI runtime creates each device in the container with the type,
// major:minor, mode, uid and gid of the spec; the device need not exist on
// the host (runtime-tools' linux_devices names /dev/test1 ...). Two ways:
//
//   - a device the host has at the same path with the same type and
//     major:minor is passed through by Proxmox (`pct` option devN, with
//     mode, uid and gid): Proxmox creates the node and allows it in the
//     device cgroup itself;
//   - any other one (and every FIFO) is created by nexcage: mknod in the
//     container's device directory, <helper dir>.dev/<n> (never the
//     host's /dev), 0700 and owned by the container's root, recorded in
//     the state through the helper directory before it is made and
//     removed with it (cleanupHelper, so delete --force after a crash
//     finds it); the node is owned by the spec's uid and gid as the
//     container sees them (through the bundle's linux.uidMappings and
//     gidMappings, else 100000 + id for an unprivileged container). It is
//     bind-mounted at its path by `lxc.mount.entry` (create=file; LXC
//     applies mount entries after it mounted the container's /dev), and a
//     character or block device is allowed with `lxc.cgroup2.devices.allow
//     = <type> <major>:<minor> rwm`, as Proxmox does for its own devN
//     (raw lxc.cgroup2.* keys are accepted on PVE 8 and 9: proxmox-pct.md
//     §9.3). As runc does, a device of linux.devices is allowed rwm.

// DeviceNode is a device node nexcage makes on the host for the container
// (see above).
type DeviceNode struct {
	HostPath string      // <helper dir>.dev/<n>
	Path     string      // in the container
	Type     string      // "c", "b" or "p" ("u" is "c")
	Major    int64       // for c and b
	Minor    int64       // for c and b
	Mode     os.FileMode // permission bits
	UID, GID int         // host ids (already mapped)
}

// deviceDirSuffix names a container's device directory next to its
// helper directory.
const deviceDirSuffix = ".dev"

// maxDevices bounds linux.devices (pct has dev0..dev255).
const maxDevices = 256

// devices maps linux.devices (see above).
func (t *translator) devices() error {
	if t.in.Spec.Linux == nil {
		return nil
	}
	devs := t.in.Spec.Linux.Devices
	if len(devs) > maxDevices {
		return unsupported("linux.devices", "%d devices; at most %d", len(devs), maxDevices)
	}
	seen := map[string]bool{}
	for i, d := range devs {
		field := fmt.Sprintf("linux.devices[%d] (%s)", i, d.Path)
		p := path.Clean(d.Path)
		if !strings.HasPrefix(p, "/dev/") {
			return invalid(field, "device path must be under /dev")
		}
		if err := checkPath(field, p); err != nil {
			return err
		}
		if seen[p] {
			return invalid(field, "%s is given twice", p)
		}
		seen[p] = true
		typ := d.Type
		if typ == "u" {
			typ = "c"
		}
		switch typ {
		case "c", "b":
			// Linux's dev_t: 12-bit major, 20-bit minor.
			if d.Major < 0 || d.Major >= 1<<12 || d.Minor < 0 || d.Minor >= 1<<20 {
				return invalid(field, "major:minor %d:%d is not a Linux device number", d.Major, d.Minor)
			}
		case "p":
		default:
			return invalid(field, "type %q is not one of c, b, u, p", d.Type)
		}
		mode := os.FileMode(0o666)
		if d.FileMode != nil {
			if *d.FileMode&^os.ModePerm != 0 {
				return invalid(field, "fileMode %#o has bits besides the permissions", uint32(*d.FileMode))
			}
			mode = d.FileMode.Perm()
		}
		var uid, gid uint32
		if d.UID != nil {
			uid = *d.UID
		}
		if d.GID != nil {
			gid = *d.GID
		}
		if typ != "p" && hostHasDevice(t.in.Stat, p, typ, d.Major, d.Minor) {
			v := fmt.Sprintf("%s,mode=0%o", p, mode)
			if d.UID != nil {
				v += ",uid=" + strconv.FormatUint(uint64(uid), 10)
			}
			if d.GID != nil {
				v += ",gid=" + strconv.FormatUint(uint64(gid), 10)
			}
			t.devs = append(t.devs, v)
			continue
		}
		if t.in.InitHelperDir == "" {
			return unsupported(field, "a device the host does not have is created by nexcage next to its init helper, which only runs a container that has a process")
		}
		hu, err := t.hostID(field+" uid", uid, t.in.Spec.Linux.UIDMappings)
		if err != nil {
			return err
		}
		hg, err := t.hostID(field+" gid", gid, t.in.Spec.Linux.GIDMappings)
		if err != nil {
			return err
		}
		n := DeviceNode{HostPath: filepath.Join(t.in.InitHelperDir+deviceDirSuffix, strconv.Itoa(len(t.req.Devices))),
			Path: p, Type: typ, Major: d.Major, Minor: d.Minor, Mode: mode, UID: hu, GID: hg}
		if err := checkPath(field, n.HostPath); err != nil {
			return err
		}
		t.req.Devices = append(t.req.Devices, n)
		t.raw("lxc.mount.entry", n.HostPath+" "+strings.TrimPrefix(p, "/")+" none bind,create=file 0 0")
		if typ != "p" {
			t.raw("lxc.cgroup2.devices.allow", fmt.Sprintf("%s %d:%d rwm", typ, d.Major, d.Minor))
		}
	}
	return nil
}

// hostID is the host id of container id id: through the bundle's own
// mapping when it has one (userns, which runs before, checked it), else
// 100000+id in an unprivileged container (Proxmox's idmap) and id itself
// in a privileged one.
func (t *translator) hostID(field string, id uint32, ms []specs.LinuxIDMapping) (int, error) {
	if len(ms) > 0 {
		for _, m := range ms {
			if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
				return int(m.HostID + (id - m.ContainerID)), nil
			}
		}
		return 0, unsupported(field, "%d is not mapped by the container's linux mappings", id)
	}
	if !t.req.Unprivileged {
		return int(id), nil
	}
	if uint64(id) >= unprivSize {
		return 0, unsupported(field, "%d is not mapped in an unprivileged container (ids 0-%d are)", id, unprivSize-1)
	}
	return unprivBase + int(id), nil
}

// hostHasDevice tells whether the host has the device typ major:minor at
// p (symbolic links followed).
func hostHasDevice(stat func(string) (fs.FileInfo, error), p, typ string, major, minor int64) bool {
	fi, err := stat(p)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	want := uint32(unix.S_IFCHR)
	if typ == "b" {
		want = unix.S_IFBLK
	}
	return st.Mode&unix.S_IFMT == want && int64(unix.Major(st.Rdev)) == major && int64(unix.Minor(st.Rdev)) == minor
}

// makeDevices makes the device nodes of req in the container's device
// directory (<helper dir>.dev, which the record names through the helper
// directory: cleanupHelper removes it). The directory is 0700 and the
// container root's, so only root and the container's setup reach it.
func makeDevices(id, helperDir string, nodes []DeviceNode, rootUID, rootGID int) error {
	if len(nodes) == 0 {
		return nil
	}
	dir := helperDir + deviceDirSuffix
	if err := os.Mkdir(dir, 0o700); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot create its device directory", id)
	}
	for _, n := range nodes {
		if filepath.Dir(n.HostPath) != dir {
			return errs.New(errs.KindInternal, "container %s: device node %s is outside %s", id, n.HostPath, dir)
		}
		var err error
		switch n.Type {
		case "p":
			err = unix.Mkfifo(n.HostPath, 0o600)
		case "b":
			err = unix.Mknod(n.HostPath, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(n.Major), uint32(n.Minor))))
		default:
			err = unix.Mknod(n.HostPath, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(n.Major), uint32(n.Minor))))
		}
		if err == nil {
			// Owner before mode: nobody but root may open it in between.
			if err = os.Lchown(n.HostPath, n.UID, n.GID); err == nil {
				err = os.Chmod(n.HostPath, n.Mode)
			}
		}
		if err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot create device %s", id, n.Path)
		}
	}
	if err := os.Lchown(dir, rootUID, rootGID); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot give its device directory to the container's root", id)
	}
	return nil
}

// removeDevices removes a container's device directory (cleanupHelper).
func removeDevices(helperDir string) error {
	err := os.RemoveAll(helperDir + deviceDirSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
