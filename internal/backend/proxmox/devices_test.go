package proxmox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/errs"
)

// TestTranslateDevices: a device the host has (same path, type and
// major:minor) is passed through by Proxmox (devN); any other one, and a
// FIFO, is a node nexcage makes next to the helper directory, bound in by
// a mount entry and allowed in the device cgroup, owned by the container's
// ids as the host sees them.
func TestTranslateDevices(t *testing.T) {
	for _, unpriv := range []bool{true, false} {
		in := baseInput(t)
		in.Unprivileged = unpriv
		if !unpriv {
			in.Spec.Linux.Namespaces = slices.DeleteFunc(in.Spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace })
		}
		in.Spec.Linux.Devices = []specs.LinuxDevice{
			{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: ptr(os.FileMode(0o666))},
			{Path: "/dev/test1", Type: "c", Major: 10, Minor: 666, FileMode: ptr(os.FileMode(0o660)), UID: ptr(uint32(5)), GID: ptr(uint32(6))},
			{Path: "/dev/null2", Type: "u", Major: 1, Minor: 3},
			{Path: "/dev/zero", Type: "c", Major: 1, Minor: 99}, // the host's /dev/zero is 1:5
			{Path: "/dev/test2", Type: "b", Major: 8, Minor: 666},
			{Path: "/dev/test3", Type: "p"},
		}
		r, err := Translate(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := optMap(r)["dev0"]; got != "/dev/null,mode=0666" {
			t.Errorf("unprivileged=%v: dev0 = %q, want the host's /dev/null passed through", unpriv, got)
		}
		if _, ok := optMap(r)["dev1"]; ok {
			t.Errorf("unprivileged=%v: a second devN for a device the host does not have", unpriv)
		}
		base := 0
		if unpriv {
			base = unprivBase
		}
		dir := testHelperDir + deviceDirSuffix
		want := []DeviceNode{
			{HostPath: dir + "/0", Path: "/dev/test1", Type: "c", Major: 10, Minor: 666, Mode: 0o660, UID: base + 5, GID: base + 6},
			{HostPath: dir + "/1", Path: "/dev/null2", Type: "c", Major: 1, Minor: 3, Mode: 0o666, UID: base, GID: base},
			{HostPath: dir + "/2", Path: "/dev/zero", Type: "c", Major: 1, Minor: 99, Mode: 0o666, UID: base, GID: base},
			{HostPath: dir + "/3", Path: "/dev/test2", Type: "b", Major: 8, Minor: 666, Mode: 0o666, UID: base, GID: base},
			{HostPath: dir + "/4", Path: "/dev/test3", Type: "p", Mode: 0o666, UID: base, GID: base},
		}
		if !slices.Equal(r.Devices, want) {
			t.Errorf("unprivileged=%v: devices\n%+v, want\n%+v", unpriv, r.Devices, want)
		}
		lines := strings.Join(rawLines(r), "\n")
		for _, l := range []string{
			"lxc.mount.entry: " + dir + "/0 dev/test1 none bind,create=file 0 0",
			"lxc.cgroup2.devices.allow: c 10:666 rwm",
			"lxc.mount.entry: " + dir + "/3 dev/test2 none bind,create=file 0 0",
			"lxc.cgroup2.devices.allow: b 8:666 rwm",
			"lxc.mount.entry: " + dir + "/4 dev/test3 none bind,create=file 0 0",
		} {
			if !strings.Contains(lines, l) {
				t.Errorf("unprivileged=%v: no %q in\n%s", unpriv, l, lines)
			}
		}
		if strings.Contains(lines, "devices.allow: p") {
			t.Errorf("a FIFO in the device cgroup:\n%s", lines)
		}
	}
}

// TestTranslateDevicesThroughOwnMapping: with the bundle's own id
// mapping, a node's owner is mapped through it.
func TestTranslateDevicesThroughOwnMapping(t *testing.T) {
	in := baseInput(t)
	in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 110000, Size: 1000}}
	in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 120000, Size: 1000}}
	in.Spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/test1", Type: "c", Major: 10, Minor: 666, UID: ptr(uint32(5)), GID: ptr(uint32(6))}}
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Devices) != 1 || r.Devices[0].UID != 110005 || r.Devices[0].GID != 120006 {
		t.Fatalf("devices %+v, want owner 110005:120006", r.Devices)
	}
	in.Spec.Linux.Devices[0].UID = ptr(uint32(1000))
	if _, err := Translate(in); errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "not mapped") {
		t.Fatalf("an unmapped uid: %v", err)
	}
}

func TestTranslateDevicesRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		dev  specs.LinuxDevice
		kind errs.Kind
		want string
	}{
		{"bad type", specs.LinuxDevice{Path: "/dev/x", Type: "s"}, errs.KindInvalidBundle, "type"},
		{"bad major", specs.LinuxDevice{Path: "/dev/x", Type: "c", Major: 4096}, errs.KindInvalidBundle, "major:minor"},
		{"negative minor", specs.LinuxDevice{Path: "/dev/x", Type: "c", Minor: -1}, errs.KindInvalidBundle, "major:minor"},
		{"setuid mode", specs.LinuxDevice{Path: "/dev/x", Type: "c", FileMode: ptr(os.ModeSetuid | 0o666)}, errs.KindInvalidBundle, "fileMode"},
		{"unmapped uid", specs.LinuxDevice{Path: "/dev/x", Type: "c", UID: ptr(uint32(70000))}, errs.KindUnsupported, "not mapped"},
		{"outside /dev", specs.LinuxDevice{Path: "/etc/x", Type: "c"}, errs.KindInvalidBundle, "under /dev"},
	} {
		in := baseInput(t)
		in.Spec.Linux.Devices = []specs.LinuxDevice{c.dev}
		_, err := Translate(in)
		if errs.KindOf(err) != c.kind || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "linux.devices[0]") {
			t.Errorf("%s: %v, want a %v error naming linux.devices[0] and %q", c.name, err, c.kind, c.want)
		}
	}
	in := baseInput(t)
	in.Spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "c"}, {Path: "/dev/x/", Type: "c"}}
	if _, err := Translate(in); errs.KindOf(err) != errs.KindInvalidBundle || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a device given twice: %v", err)
	}
}

// TestMakeDevices: the nodes are made with their type, number, mode and
// owner in a 0700 directory of the container's root, and go with it.
func TestMakeDevices(t *testing.T) {
	helper := filepath.Join(t.TempDir(), "ct-abc")
	dir := helper + deviceDirSuffix
	nodes := []DeviceNode{
		{HostPath: dir + "/0", Path: "/dev/test1", Type: "c", Major: 10, Minor: 666, Mode: 0o660, UID: unprivBase + 5, GID: unprivBase + 6},
		{HostPath: dir + "/1", Path: "/dev/test2", Type: "b", Major: 8, Minor: 666, Mode: 0o640, UID: unprivBase, GID: unprivBase},
		{HostPath: dir + "/2", Path: "/dev/test3", Type: "p", Mode: 0o600, UID: unprivBase, GID: unprivBase},
	}
	if err := makeDevices("ct", helper, nodes, unprivBase, unprivBase); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(dir); err != nil || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != unprivBase || fi.Sys().(*syscall.Stat_t).Gid != unprivBase {
		t.Errorf("device directory: %v %v, want 0700 and the container root's", fi, err)
	}
	for _, n := range nodes {
		var st unix.Stat_t
		if err := unix.Lstat(n.HostPath, &st); err != nil {
			t.Fatal(err)
		}
		typ := map[uint32]string{syscall.S_IFCHR: "c", syscall.S_IFBLK: "b", syscall.S_IFIFO: "p"}[st.Mode&syscall.S_IFMT]
		if typ != n.Type || os.FileMode(st.Mode&0o777) != n.Mode || int(st.Uid) != n.UID || int(st.Gid) != n.GID {
			t.Errorf("%s: type %s mode %#o owner %d:%d, want %+v", n.Path, typ, st.Mode&0o777, st.Uid, st.Gid, n)
		}
		if n.Type != "p" && (int64(unix.Major(st.Rdev)) != n.Major || int64(unix.Minor(st.Rdev)) != n.Minor) {
			t.Errorf("%s: %d:%d, want %d:%d", n.Path, unix.Major(st.Rdev), unix.Minor(st.Rdev), n.Major, n.Minor)
		}
	}
	if err := removeDevices(helper); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("the device directory stays: %v", err)
	}
	// A node outside the directory is never made.
	bad := []DeviceNode{{HostPath: filepath.Join(t.TempDir(), "x"), Path: "/dev/x", Type: "c"}}
	if err := makeDevices("ct", helper, bad, unprivBase, unprivBase); err == nil {
		t.Error("a node outside the device directory was made")
	}
}
