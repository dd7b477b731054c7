package proxmox

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestPodMounts: an app container gets the CT's /proc, /sys and device
// nodes (containerd's proc/sysfs/dev/shm/mqueue mounts are covered by
// them), new tmpfs, and its binds as detached clones in order; what
// cannot be made is refused by name.
func TestPodMounts(t *testing.T) {
	p := &podInfo{namespace: "lab", pod: "web", container: "app"}
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts"},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue"},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs"},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"},
		{Destination: "/etc/hosts", Type: "bind", Source: "/x/hosts", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/dev/shm", Type: "bind", Source: "/x/shm", Options: []string{"rbind"}},
		{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1m", "mode=1777"}},
	}}
	ms, binds, err := podMounts("c1", p, spec)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Kind+":"+m.Destination)
	}
	want := "rbind-ct:/proc rbind-ct:/sys tmpfs:/dev rbind-ct:/dev/null rbind-ct:/dev/zero rbind-ct:/dev/full rbind-ct:/dev/random rbind-ct:/dev/urandom rbind-ct:/dev/tty rbind-ct:/dev/pts rbind-ct:/dev/ptmx rbind-ct:/dev/shm bind:/etc/hosts tmpfs:/scratch"
	if strings.Join(got, " ") != want {
		t.Errorf("mounts:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(binds) != 1 || binds[0].Source != "/x/hosts" || ms[len(ms)-1].Data != "size=1m,mode=1777" {
		t.Errorf("binds %+v, last %+v", binds, ms[len(ms)-1])
	}
	for _, bad := range []specs.Mount{
		{Destination: "/dev/fuse", Type: "bind", Source: "/dev/fuse"},
		{Destination: "/mnt", Type: "nfs", Source: "server:/x"},
	} {
		if _, _, err := podMounts("c1", p, &specs.Spec{Mounts: []specs.Mount{bad}}); err == nil || !strings.Contains(err.Error(), "container app of Kubernetes pod lab/web: mounts[0]") {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}

// TestShiftRootfs: every file is given to the CT's ids (set-id bits
// kept, symlinks themselves), once.
func TestShiftRootfs(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/su"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(root, "bin/su"), 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(filepath.Join(root, "bin/su"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	m := []idMap{{0, 100000, 65536}}
	for i := 0; i < 2; i++ {
		if err := shiftRootfs(root, m, m); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string][3]uint32{"": {100000, 100000, 0o755}, "bin/su": {100000, 100005, 0o4755}, "link": {100000, 100000, 0o777}} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != want[0] || st.Gid != want[1] || st.Mode&0o7777 != want[2] {
			t.Errorf("%s: %d:%d %o, want %d:%d %o", p, st.Uid, st.Gid, st.Mode&0o7777, want[0], want[1], want[2])
		}
	}
	if err := shiftRootfs(t.TempDir(), []idMap{{0, 100000, 10}}, m); err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	if err := os.Lchown(d, 500, 0); err != nil {
		t.Fatal(err)
	}
	if err := shiftRootfs(d, []idMap{{0, 100000, 10}}, m); err == nil || !strings.Contains(err.Error(), "which the pod's CT does not map") {
		t.Errorf("unmapped owner: %v", err)
	}
}
