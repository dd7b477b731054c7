package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// mountinfoEntry is one line of /proc/<pid>/mountinfo.
type mountinfoEntry struct{ point, fstype, source, opts, optional string }

func parseMountinfo(s string) []mountinfoEntry {
	var out []mountinfoEntry
	for _, l := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			continue
		}
		out = append(out, mountinfoEntry{point: f[4], fstype: g[0], source: g[1], opts: f[5], optional: strings.Join(f[6:], " ")})
	}
	return out
}

// TestProxmoxSpecMountsInOrder: a Proxmox-routed container presents the
// spec's mounts as runc does (runtime-spec config.md "Mounts"): each
// one in /proc/self/mountinfo in the spec's order with the spec's type
// and source (/dev a tmpfs with source "tmpfs", not LXC's "none"),
// /dev/ptmx -> pts/ptmx with the devices LXC gave still there, the
// masked paths unreadable and the read-only paths read-only; pct exec
// still works.
func TestProxmoxSpecMountsInOrder(t *testing.T) {
	t.Run("unprivileged", func(t *testing.T) { testSpecMountsInOrder(t, "9.1", nil) })
	// And a read-only /dev (made read-only once the helper filled it).
	t.Run("unprivileged-pve8.4", func(t *testing.T) { testSpecMountsInOrder(t, "8.4", nil, "ro") })
	t.Run("privileged", func(t *testing.T) {
		testSpecMountsInOrder(t, "9.1", map[string]string{"org.nexcage.proxmox.unprivileged": "0"})
	})
}

func testSpecMountsInOrder(t *testing.T, pveVersion string, annotations map[string]string, devOptions ...string) {
	e := newPveEnvWith(t, false, "", "PVESIM_PVE_VERSION="+pveVersion)
	n := e.n
	dir := testutil.ContainerTempDir(t)
	bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), []string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Annotations = annotations
		s.Mounts[1].Options = append(s.Mounts[1].Options, devOptions...)
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/srv/scratch", Type: "tmpfs", Source: "scratch", Options: []string{"nosuid", "mode=700", "size=1m"}},
			specs.Mount{Destination: "/dev/extra", Type: "tmpfs", Source: "extra", Options: []string{"size=64k"}})
		s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/srv/secret", "/srv/hidden", "/srv/absent")
		s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/srv/ro")
	})
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"srv/scratch", "srv/hidden", "srv/ro"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"srv/secret": "s3cret\n", "srv/hidden/file": "hidden\n", "srv/ro/file": "ro\n"} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(data), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	id := "spec-mounts"
	n.Must("create", "--name", id, "--image", bundle)
	n.CleanupContainer(id)
	vmid := e.vmidOf(id)
	conf, err := os.ReadFile(e.confPath(vmid))
	if err != nil {
		t.Fatal(err)
	}
	// Proxmox writes unprivileged only when it is 1.
	if unpriv := strings.Contains(string(conf), "\nunprivileged: 1\n"); unpriv != (annotations == nil) {
		t.Fatalf("%d.conf: unprivileged %v, want %v:\n%s", vmid, unpriv, annotations == nil, conf)
	}
	inside := func(args ...string) (string, error) {
		return e.pctRun(append([]string{"exec", strconv.Itoa(vmid), "--"}, args...)...)
	}
	// Already in created: the init helper mounts before it reports ready.
	mi, err := inside("cat", "/proc/1/mountinfo")
	if err != nil {
		t.Fatalf("mountinfo: %v %s", err, mi)
	}
	entries := parseMountinfo(mi)
	want := []mountinfoEntry{
		{point: "/proc", fstype: "proc", source: "proc"}, {point: "/dev", fstype: "tmpfs", source: "tmpfs"},
		{point: "/dev/pts", fstype: "devpts", source: "devpts"}, {point: "/dev/shm", fstype: "tmpfs", source: "shm"},
		{point: "/dev/mqueue", fstype: "mqueue", source: "mqueue"}, {point: "/sys", fstype: "sysfs", source: "sysfs"},
		{point: "/sys/fs/cgroup"}, {point: "/srv/scratch", fstype: "tmpfs", source: "scratch"},
		{point: "/dev/extra", fstype: "tmpfs", source: "extra"},
	}
	// As runtimetest checks: each spec mount found after the previous one.
	j := 0
	for _, w := range want {
		found := false
		for k := j; k < len(entries); k++ {
			m := entries[k]
			if m.point == w.point && (w.fstype == "" || m.fstype == w.fstype) && (w.source == "" || m.source == w.source) {
				j, found = k+1, true
				break
			}
		}
		if !found {
			t.Errorf("mount %s (%s from %s) not found in spec order in /proc/1/mountinfo:\n%s", w.point, w.fstype, w.source, mi)
		}
	}
	// The fresh mounts carry the spec's flags; the read-only path is ro.
	byPoint := map[string]mountinfoEntry{}
	for _, m := range entries {
		byPoint[m.point] = m // the last (topmost) one
	}
	flags := map[string]string{"/srv/scratch": "nosuid", "/dev/shm": "noexec", "/sys": "ro", "/srv/ro": "ro", "/proc/sys": "ro", "/dev": "nosuid"}
	if len(devOptions) > 0 {
		flags["/dev"] = "ro"
	}
	for point, flag := range flags {
		if m, ok := byPoint[point]; !ok || !strings.Contains(","+m.opts+",", ","+flag+",") {
			t.Errorf("%s: mount options %q lack %s", point, m.opts, flag)
		}
	}
	// Nothing the helper mounted propagates out of the container: it
	// made every mount a slave first (as runc does).
	for _, p := range []string{"/dev", "/srv/secret", "/srv/hidden", "/srv/ro", "/proc/keys"} {
		if m, ok := byPoint[p]; !ok || strings.Contains(m.optional, "shared:") {
			t.Errorf("%s: %+v; want a mount that is not shared", p, m)
		}
	}
	n.Must("start", id)
	if s := stateOf(t, n, id); s.Status != "running" {
		t.Fatalf("after start: %+v", s)
	}
	checks := []struct {
		name string
		args []string
		want string
		fail bool
	}{
		{"ptmx symlink", []string{"readlink", "/dev/ptmx"}, "pts/ptmx\n", false},
		{"dev null", []string{"sh", "-c", "stat -c '%F %t,%T' /dev/null && echo x > /dev/null && echo written"}, "character special file 1,3\nwritten\n", false},
		{"dev tty", []string{"stat", "-c", "%F %t,%T", "/dev/tty"}, "character special file 5,0\n", false},
		{"new pty", []string{"sh", "-c", "ls /dev/pts/ptmx >/dev/null && echo pts"}, "pts\n", false},
		{"fd symlink", []string{"readlink", "/dev/fd"}, "/proc/self/fd\n", false},
		{"dev mode", []string{"stat", "-c", "%a", "/dev"}, "755\n", false},
		{"scratch mode", []string{"stat", "-c", "%a", "/srv/scratch"}, "700\n", false},
		{"masked file", []string{"cat", "/srv/secret"}, "", false},
		{"masked dir", []string{"ls", "-A", "/srv/hidden"}, "", false},
		{"masked dir read-only", []string{"touch", "/srv/hidden/x"}, "", true},
		{"masked proc file", []string{"sh", "-c", "wc -c < /proc/keys"}, "0\n", false},
		{"read-only path", []string{"sh", "-c", "echo x > /srv/ro/file"}, "", true},
		{"read-only path readable", []string{"cat", "/srv/ro/file"}, "ro\n", false},
		{"shm writable", []string{"sh", "-c", "echo ok > /dev/shm/t && cat /dev/shm/t"}, "ok\n", false},
	}
	for _, c := range checks {
		got, err := inside(c.args...)
		if c.fail {
			if err == nil {
				t.Errorf("%s: %v succeeded (%q), want a failure", c.name, c.args, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %v = %q, %v; want %q", c.name, c.args, got, err, c.want)
		}
	}
	n.Must("delete", "--force", id)
}

// TestProxmoxSpecMountRefusedAtCreate: a mount the init helper cannot
// make (a devpts gid the container's user namespace does not map) fails
// create, naming the mount, with a hint about mounts; nothing is left.
func TestProxmoxSpecMountRefusedAtCreate(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	dir := testutil.ContainerTempDir(t)
	bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), []string{"sleep", "1000"}, func(s *specs.Spec) {
		s.Mounts[2].Options = []string{"newinstance", "gid=70000"}
	})
	n.Fails(8, "mounts[2] (/dev/pts, devpts): mount devpts: invalid argument", "create", "--bundle", bundle, "refused")
	n.Fails(8, "cannot mount what", "create", "--bundle", bundle, "refused")
	e.assertNothingLeft("refused mount")
}
