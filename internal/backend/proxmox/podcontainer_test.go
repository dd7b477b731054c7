package proxmox

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/state"
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
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "ro"}},
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
	// The spec's read-only cgroup mount makes the CT's /sys read-only in
	// the container (its cgroup file system with it); /proc stays.
	if !ms[1].ReadOnly || ms[0].ReadOnly {
		t.Errorf("read-only: /proc %v, /sys %v; want false, true", ms[0].ReadOnly, ms[1].ReadOnly)
	}
	if ms, _, _ := podMounts("c1", p, &specs.Spec{Mounts: []specs.Mount{{Destination: "/sys", Type: "sysfs", Source: "sysfs"}}}); ms[1].ReadOnly {
		t.Error("a read-write sysfs in the spec made read-only")
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

// TestPodLimitsRefused: a resource the container's cgroup cannot get is
// refused by name at create, as unsupported, before anything is made.
func TestPodLimitsRefused(t *testing.T) {
	b := &Backend{}
	p := &podInfo{namespace: "lab", pod: "web", container: "app"}
	w := uint16(300)
	spec := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &w}}}}
	_, err := b.podLimits("c1", p, 100, os.Getpid(), spec)
	if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "container app of Kubernetes pod lab/web") || !strings.Contains(err.Error(), "linux.resources.blockIO") {
		t.Fatalf("blockIO weight: %v", err)
	}
	// Nothing set: nothing to make.
	plan, err := b.podLimits("c1", p, 100, os.Getpid(), &specs.Spec{Linux: &specs.Linux{}})
	if err != nil || len(plan.Dirs) != 0 {
		t.Fatalf("no resources: %v, %v", plan, err)
	}
}

func TestPodCgroupName(t *testing.T) {
	if got := podCgroupName("abc"); got != "nexcage-abc" {
		t.Errorf("podCgroupName(abc) = %q", got)
	}
	long := strings.Repeat("a", 250)
	got := podCgroupName(long)
	if len(got) > 255 || got == podCgroupName(long[:249]+"b") || !strings.HasPrefix(got, "nexcage-") {
		t.Errorf("podCgroupName of a 250-byte id: %q", got)
	}
}

// TestRemovePodCgroupsOnlyOurs is the cleanup path's guard: delete
// removes only directories named for the container on a cgroup file
// system, whatever the state file says; a cgroup whose parent (the CT's)
// is gone is done with.
func TestRemovePodCgroupsOnlyOurs(t *testing.T) {
	dir := t.TempDir()
	record := func(c *state.Container, dirs ...string) {
		data, _ := json.Marshal(dirs)
		c.Data = map[string]string{DataPodCgroups: string(data)}
	}
	c := &state.Container{ID: "c1"}
	// Named for another container.
	other := filepath.Join(dir, "nexcage-c2")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	record(c, other)
	if err := removePodCgroups(c, time.Second); errs.KindOf(err) != errs.KindState {
		t.Errorf("another container's cgroup: %v", err)
	}
	// Named for this one, but not on a cgroup file system.
	mine := filepath.Join(dir, "nexcage-c1")
	if err := os.Mkdir(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	record(c, mine)
	if err := removePodCgroups(c, time.Second); errs.KindOf(err) != errs.KindState || !strings.Contains(err.Error(), "not on a cgroup file system") {
		t.Errorf("a directory off cgroupfs: %v", err)
	}
	record(c, dir+"/x/../nexcage-c1")
	if err := removePodCgroups(c, time.Second); errs.KindOf(err) != errs.KindState {
		t.Errorf("an unclean path: %v", err)
	}
	for _, d := range []string{other, mine} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	// The CT's cgroup is gone (the CT stopped): nothing to do.
	record(c, filepath.Join(dir, "gone", "nexcage-c1"))
	if err := removePodCgroups(c, time.Second); err != nil || c.Data[DataPodCgroups] != "" {
		t.Errorf("a cgroup whose parent is gone: %v, %v", err, c.Data)
	}
	c.Data = map[string]string{DataPodCgroups: "{"}
	if err := removePodCgroups(c, time.Second); err == nil {
		t.Error("an unreadable record accepted")
	}
}
