package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestCPUSharesToWeight(t *testing.T) {
	// The ends and the defaults map onto each other (runc >= 1.3.2, crun).
	for shares, want := range map[uint64]uint64{0: 0, 1: 1, 2: 1, 3: 2, 512: 59, 1024: 100, 2048: 174, 10000: 627, 262143: 10000, 262144: 10000, 1 << 20: 10000} {
		if got := CPUSharesToWeight(shares); got != want {
			t.Errorf("CPUSharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestSwapToV2(t *testing.T) {
	for _, c := range []struct {
		swap, mem, want int64
		err             bool
	}{
		{0, 0, 0, false}, {0, -1, -1, false}, {-1, 100, -1, false}, {0, 100, 0, false},
		{300, 100, 200, false}, {100, 100, 0, false},
		{100, 0, 0, true}, {100, -1, 0, true}, {50, 100, 0, true},
	} {
		got, err := SwapToV2(c.swap, c.mem)
		if (err != nil) != c.err || (err == nil && got != c.want) {
			t.Errorf("SwapToV2(%d, %d) = %d, %v; want %d (error %v)", c.swap, c.mem, got, err, c.want, c.err)
		}
	}
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func boolp(v bool) *bool   { return &v }

// criResources is what containerd's CRI writes for a container with
// memory and CPU limits (swap = memory: no swap).
func criResources() *specs.LinuxResources {
	return &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)},
		CPU:     &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000)},
		Pids:    &specs.LinuxPids{Limit: i64(100)},
	}
}

func TestWritesV1(t *testing.T) {
	v1 := func(string) bool { return false }
	hasAll := func(string, string) bool { return true }
	got, err := Writes(criResources(), v1, hasAll)
	if err != nil {
		t.Fatal(err)
	}
	want := []Write{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"memory", "memory.memsw.limit_in_bytes", "67108864"},
		{"cpu", "cpu.shares", "512"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"pids", "pids.max", "100"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v1 writes:\n got %v\nwant %v", got, want)
	}
	// Without swap accounting, swap = memory (no swap) is left alone;
	// more swap than memory cannot be honoured.
	noSwap := func(_, f string) bool { return !strings.Contains(f, "memsw") }
	got, err = Writes(criResources(), v1, noSwap)
	if err != nil || slices.ContainsFunc(got, func(w Write) bool { return strings.Contains(w.File, "memsw") }) {
		t.Errorf("v1 without memsw: %v, %v", got, err)
	}
	r := criResources()
	r.Memory.Swap = i64(128 << 20)
	if _, err := Writes(r, v1, noSwap); !isUnsupported(err, "linux.resources.memory.swap") {
		t.Errorf("swap without memsw: %v", err)
	}
}

func TestWritesV2(t *testing.T) {
	v2 := func(string) bool { return true }
	hasAll := func(string, string) bool { return true }
	r := criResources()
	r.Memory.Swap = i64(96 << 20)
	got, err := Writes(r, v2, hasAll)
	if err != nil {
		t.Fatal(err)
	}
	want := []Write{
		{"memory", "memory.max", "67108864"},
		{"memory", "memory.swap.max", "33554432"},
		{"cpu", "cpu.weight", "59"},
		{"cpu", "cpu.max", "50000 100000"},
		{"pids", "pids.max", "100"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v2 writes:\n got %v\nwant %v", got, want)
	}
	// Unlimited values and a quota without a period.
	r = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}, CPU: &specs.LinuxCPU{Quota: i64(-1)}, Pids: &specs.LinuxPids{Limit: i64(0)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}}, Unified: map[string]string{"memory.high": "1000000", "hugetlb.1GB.max": "0"}}
	got, err = Writes(r, v2, hasAll)
	if err != nil {
		t.Fatal(err)
	}
	want = []Write{
		{"memory", "memory.max", "max"},
		{"cpu", "cpu.max", "max"},
		{"pids", "pids.max", "max"},
		{"hugetlb", "hugetlb.2MB.max", "0"},
		{"hugetlb", "hugetlb.1GB.max", "0"},
		{"memory", "memory.high", "1000000"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v2 unlimited writes:\n got %v\nwant %v", got, want)
	}
}

func TestWritesLeavesUnsetAlone(t *testing.T) {
	for _, r := range []*specs.LinuxResources{nil, {}, {Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		{CPU: &specs.LinuxCPU{}, Memory: &specs.LinuxMemory{}, Pids: &specs.LinuxPids{}, BlockIO: &specs.LinuxBlockIO{}},
		{CPU: &specs.LinuxCPU{Shares: u64(0)}}} {
		for _, v := range []bool{false, true} {
			got, err := Writes(r, func(string) bool { return v }, func(string, string) bool { return true })
			if err != nil || len(got) != 0 {
				t.Errorf("Writes(%+v, v2=%v) = %v, %v; want nothing", r, v, got, err)
			}
		}
	}
}

func isUnsupported(err error, field string) bool {
	var u *Unsupported
	return errors.As(err, &u) && strings.HasPrefix(u.Field, field) && u.Reason != ""
}

func TestWritesRefuses(t *testing.T) {
	w := uint16(500)
	for field, r := range map[string]*specs.LinuxResources{
		"linux.resources.memory.kernel":           {Memory: &specs.LinuxMemory{Kernel: i64(1 << 20)}}, //lint:ignore SA1019 the deprecated field is refused
		"linux.resources.memory.disableOOMKiller": {Memory: &specs.LinuxMemory{DisableOOMKiller: boolp(true)}},
		"linux.resources.cpu.realtimeRuntime":     {CPU: &specs.LinuxCPU{RealtimeRuntime: i64(1000)}},
		"linux.resources.blockIO":                 {BlockIO: &specs.LinuxBlockIO{Weight: &w}},
		"linux.resources.rdma":                    {Rdma: map[string]specs.LinuxRdma{"mlx": {}}},
		"linux.resources.hugepageLimits[0]":       {HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "../x", Limit: 1}}},
		"linux.resources.unified[cgroup.procs]":   {Unified: map[string]string{"cgroup.procs": "1"}},
		"linux.resources.unified[../memory.max]":  {Unified: map[string]string{"../memory.max": "1"}},
		"linux.resources.memory.swap":             {Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(50)}},
	} {
		if _, err := Writes(r, func(string) bool { return true }, func(string, string) bool { return true }); !isUnsupported(err, field) {
			t.Errorf("%s: got %v, want it refused by name", field, err)
		}
	}
	// unified is cgroup v2's only; swappiness cgroup v1's only.
	if _, err := Writes(&specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}, func(string) bool { return false }, nil); !isUnsupported(err, "linux.resources.unified") {
		t.Errorf("unified on v1: %v", err)
	}
	if _, err := Writes(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: u64(10)}}, func(string) bool { return true }, nil); !isUnsupported(err, "linux.resources.memory.swappiness") {
		t.Errorf("swappiness on v2: %v", err)
	}
}

func mount(id int, fstype, root, point, opts string) *mountinfo.Info {
	return &mountinfo.Info{ID: id, FSType: fstype, Root: root, Mountpoint: point, VFSOptions: opts}
}

func TestLayoutHybrid(t *testing.T) {
	// This project's test host: v1 controllers (cpu and cpuacct apart),
	// a controller-less cgroup2 at unified; LXC's payload cgroup.
	mounts := []*mountinfo.Info{
		mount(32, "cgroup", "/", "/sys/fs/cgroup/cpu", "rw,cpu"),
		mount(35, "cgroup", "/", "/sys/fs/cgroup/memory", "rw,memory"),
		mount(39, "cgroup", "/", "/sys/fs/cgroup/pids", "rw,pids"),
		mount(40, "cgroup", "/", "/sys/fs/cgroup/systemd", "rw,name=systemd"),
		mount(41, "cgroup2", "/", "/sys/fs/cgroup/unified", "rw"),
	}
	proc := "9:name=systemd:/lxc.payload.100\n8:pids:/\n4:memory:/lxc.payload.100\n2:cpuacct:/lxc.payload.100\n1:cpu:/lxc.payload.100\n0::/lxc.payload.100\n"
	l, err := layoutOf(proc, mounts, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cpu": "/sys/fs/cgroup/cpu/lxc.payload.100", "memory": "/sys/fs/cgroup/memory/lxc.payload.100", "pids": "/sys/fs/cgroup/pids"}
	if !reflect.DeepEqual(l.Dirs, want) || len(l.V2) != 0 || !l.AtRoot["pids"] || l.AtRoot["memory"] || l.AtRoot["cpu"] {
		t.Errorf("layout %+v, want dirs %v, no v2, pids at the root", l, want)
	}
}

func TestLayoutUnified(t *testing.T) {
	// PVE 8/9: pure cgroup v2, the CT's payload in lxc/<vmid>/ns.
	mounts := []*mountinfo.Info{mount(30, "cgroup2", "/", "/sys/fs/cgroup", "rw,nsdelegate")}
	l, err := layoutOf("0::/lxc/100/ns\n", mounts, func(dir string) string {
		if dir != "/sys/fs/cgroup/lxc/100/ns" {
			t.Errorf("controllers of %s read", dir)
		}
		return "cpuset cpu io memory hugetlb pids rdma misc\n"
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"cpu", "memory", "pids", "hugetlb", "cpuset"} {
		if l.Dirs[c] != "/sys/fs/cgroup/lxc/100/ns" || !l.V2[c] {
			t.Errorf("%s: %q v2=%v", c, l.Dirs[c], l.V2[c])
		}
	}
	// A mount whose root is not the hierarchy's (a cgroup namespace's
	// view) and a path outside it.
	mounts = []*mountinfo.Info{mount(30, "cgroup2", "/lxc", "/sys/fs/cgroup", "rw")}
	l, _ = layoutOf("0::/lxc/100/ns\n", mounts, func(string) string { return "memory" })
	if l.Dirs["memory"] != "/sys/fs/cgroup/100/ns" {
		t.Errorf("mount root /lxc: %v", l.Dirs)
	}
	l, _ = layoutOf("0::/other\n", mounts, func(string) string { return "memory" })
	if len(l.Dirs) != 0 {
		t.Errorf("a path outside the mount: %v", l.Dirs)
	}
}

// fakeFS replaces the package's file operations for a test; the cgroup
// "file system" is a temp directory.
func fakeFS(t *testing.T) {
	t.Helper()
	w, r, m, rm, k := writeFile, readFile, mkdir, rmdir, kill
	t.Cleanup(func() { writeFile, readFile, mkdir, rmdir, kill = w, r, m, rm, k })
}

func TestPlanApplyV1(t *testing.T) {
	fakeFS(t)
	root := t.TempDir()
	l := &Layout{Dirs: map[string]string{}, V2: map[string]bool{}}
	for _, c := range []string{"cpu", "memory", "pids"} {
		d := filepath.Join(root, c, "lxc.payload.100")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		l.Dirs[c] = d
	}
	if err := os.WriteFile(filepath.Join(l.Dirs["memory"], "memory.memsw.limit_in_bytes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(l, "nexcage-c1", criResources())
	if err != nil {
		t.Fatal(err)
	}
	wantDirs := []string{filepath.Join(root, "memory/lxc.payload.100/nexcage-c1"), filepath.Join(root, "cpu/lxc.payload.100/nexcage-c1"), filepath.Join(root, "pids/lxc.payload.100/nexcage-c1")}
	if !reflect.DeepEqual(p.Dirs, wantDirs) {
		t.Fatalf("dirs %v, want %v", p.Dirs, wantDirs)
	}
	if err := p.Apply(4242); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"memory/lxc.payload.100/nexcage-c1/memory.limit_in_bytes":       "67108864",
		"memory/lxc.payload.100/nexcage-c1/memory.memsw.limit_in_bytes": "67108864",
		"memory/lxc.payload.100/nexcage-c1/cgroup.procs":                "4242",
		"cpu/lxc.payload.100/nexcage-c1/cpu.shares":                     "512",
		"cpu/lxc.payload.100/nexcage-c1/cpu.cfs_quota_us":               "50000",
		"cpu/lxc.payload.100/nexcage-c1/cpu.cfs_period_us":              "100000",
		"cpu/lxc.payload.100/nexcage-c1/cgroup.procs":                   "4242",
		"pids/lxc.payload.100/nexcage-c1/pids.max":                      "100",
	} {
		got, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", f, got, err, want)
		}
	}
	// A controller the parent does not have is refused by name; but
	// hugepage limits are skipped, as containerd does by default.
	hp := &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB"}}, Pids: &specs.LinuxPids{Limit: i64(10)}}
	if p, err := NewPlan(l, "x", hp); err != nil || len(p.Skipped) != 1 || p.Skipped[0].File != "hugetlb.2MB.limit_in_bytes" || len(p.Dirs) != 1 {
		t.Errorf("no hugetlb: %+v, %v", p, err)
	}
	if _, err := NewPlan(l, "x", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}}); !isUnsupported(err, "cpuset.cpus") {
		t.Errorf("no cpuset: %v", err)
	}
	// A cgroup at a hierarchy's root is no parent's own.
	if _, err := NewPlan(&Layout{Dirs: map[string]string{"memory": "/sys/fs/cgroup/memory"}, AtRoot: map[string]bool{"memory": true}}, "x",
		&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20)}}); !isUnsupported(err, "memory.limit_in_bytes") {
		t.Errorf("a root cgroup as parent: %v", err)
	}
	if _, err := NewPlan(l, "../x", criResources()); err == nil {
		t.Error("a name with a slash accepted")
	}
	// Nothing set: no cgroup at all.
	if p, err := NewPlan(l, "y", &specs.LinuxResources{}); err != nil || len(p.Dirs) != 0 {
		t.Errorf("empty resources: %v, %v", p.Dirs, err)
	}
}

// TestPlanApplyV2MakesRoom: the parent (the CT's payload cgroup) holds
// the CT's init, so enabling controllers for its children fails with
// EBUSY until its processes are in the leaf.
func TestPlanApplyV2MakesRoom(t *testing.T) {
	fakeFS(t)
	parent := filepath.Join(t.TempDir(), "lxc/100/ns")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	procs := []string{"10", "11"}
	var moved []string
	realWrite := writeFile
	writeFile = func(p, v string) error {
		switch {
		case p == filepath.Join(parent, "cgroup.subtree_control"):
			if len(procs) > 0 {
				return unix.EBUSY
			}
			if v != "+memory +cpu +pids" {
				t.Errorf("subtree_control %q", v)
			}
		case p == filepath.Join(parent, LeafName, "cgroup.procs"):
			moved = append(moved, v)
			procs = slices.DeleteFunc(procs, func(s string) bool { return s == v })
			if v == "10" && len(moved) == 1 {
				procs = append(procs, "12") // a fork racing the move
			}
			return nil
		}
		return realWrite(p, v)
	}
	readFile = func(p string) ([]byte, error) {
		if p == filepath.Join(parent, "cgroup.procs") {
			return []byte(strings.Join(procs, "\n")), nil
		}
		return os.ReadFile(p)
	}
	l := &Layout{Dirs: map[string]string{"cpu": parent, "memory": parent, "pids": parent}, V2: map[string]bool{"cpu": true, "memory": true, "pids": true}}
	p, err := NewPlan(l, "nexcage-c1", criResources())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Dirs, []string{filepath.Join(parent, "nexcage-c1")}) {
		t.Fatalf("dirs %v", p.Dirs)
	}
	if err := p.Apply(4242); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(moved, []string{"10", "11", "12"}) {
		t.Errorf("moved into the leaf: %v", moved)
	}
	for f, want := range map[string]string{"memory.max": "67108864", "cpu.weight": "59", "cpu.max": "50000 100000", "pids.max": "100", "cgroup.procs": "4242"} {
		got, err := os.ReadFile(filepath.Join(parent, "nexcage-c1", f))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", f, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "nexcage-c1", "memory.swap.max")); err == nil {
		t.Error("memory.swap.max written for swap = memory without the file in the parent")
	}
}

// TestRemoveKillsAndPolls is the cleanup path: a cgroup with processes
// left is emptied (cgroup.kill, or SIGKILL per process on v1) and
// removed; one already gone is no error.
func TestRemoveKillsAndPolls(t *testing.T) {
	fakeFS(t)
	root := t.TempDir()
	v1, v2, gone := filepath.Join(root, "v1"), filepath.Join(root, "v2"), filepath.Join(root, "gone")
	for _, d := range []string{v1, v2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pids := map[string][]int{v1: {101, 102}, v2: {201}}
	var killed []int
	kill = func(pid int, sig syscall.Signal) error {
		if sig != syscall.SIGKILL {
			t.Errorf("signal %v", sig)
		}
		killed = append(killed, pid)
		for d := range pids {
			pids[d] = slices.DeleteFunc(pids[d], func(p int) bool { return p == pid })
		}
		return nil
	}
	writeFile = func(p, v string) error {
		if p == filepath.Join(v2, "cgroup.kill") && v == "1" {
			pids[v2] = nil
			return nil
		}
		return os.ErrNotExist // v1 has no cgroup.kill
	}
	readFile = func(p string) ([]byte, error) {
		var s []string
		for _, pid := range pids[filepath.Dir(p)] {
			s = append(s, strconv.Itoa(pid))
		}
		return []byte(strings.Join(s, "\n")), nil
	}
	rmdir = func(p string) error {
		if len(pids[p]) > 0 {
			return unix.EBUSY
		}
		return os.Remove(p)
	}
	if err := Remove([]string{v1, v2, gone}, time.Minute); err != nil {
		t.Fatal(err)
	}
	slices.Sort(killed)
	if !reflect.DeepEqual(killed, []int{101, 102}) {
		t.Errorf("killed %v", killed)
	}
	for _, d := range []string{v1, v2} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", d, err)
		}
	}
	// A process that never leaves: an error naming it, not a hang.
	stuck := filepath.Join(root, "stuck")
	pids[stuck] = []int{301}
	kill = func(int, syscall.Signal) error { return nil }
	if err := Remove([]string{stuck}, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "301") {
		t.Errorf("stuck cgroup: %v", err)
	}
}

func TestIsCgroupDir(t *testing.T) {
	if IsCgroupDir(t.TempDir()) {
		t.Error("a temp dir taken for a cgroup")
	}
	// Every test host mounts some cgroup hierarchy (this project's: v1
	// and a unified cgroup2; PVE's: cgroup2 at /sys/fs/cgroup).
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil || len(ms) == 0 {
		t.Fatalf("no cgroup mount on the test host: %v", err)
	}
	for _, m := range ms {
		if !IsCgroupDir(m.Mountpoint) {
			t.Errorf("%s (%s) not taken for a cgroup", m.Mountpoint, m.FSType)
		}
	}
}

// TestApplyV2RealKernel runs the cgroup v2 path against the kernel, on
// whatever controller the host's cgroup2 hierarchy has (PVE: all; this
// project's hybrid test hosts: hugetlb): a parent that holds a process
// gets room made (its process moved into the leaf, the controller
// enabled for its children), the child gets the limit and the new
// process, and Remove kills it and removes the child. Everything lives
// in a cgroup the test makes and removes.
func TestApplyV2RealKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (cgroup directories)")
	}
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil || len(ms) == 0 {
		t.Skip("no cgroup2 mount")
	}
	root := ms[0].Mountpoint
	avail, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
	var r *specs.LinuxResources
	var file, want, ctrl string
	for _, c := range strings.Fields(string(avail)) {
		switch c {
		case "pids":
			r, file, want = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(42)}}, "pids.max", "42"
		case "memory":
			r, file, want = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20)}}, "memory.max", "268435456"
		case "hugetlb":
			if _, err := os.Stat("/sys/kernel/mm/hugepages/hugepages-2048kB"); err == nil {
				r, file, want = &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2 << 20}}}, "hugetlb.2MB.max", "2097152"
			}
		default:
			continue
		}
		if r != nil {
			ctrl = c
			break
		}
	}
	if r == nil {
		t.Skipf("the host's cgroup2 hierarchy has none of pids, memory, hugetlb enabled (%q)", avail)
	}
	parent := filepath.Join(root, "nexcage-test-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return cmd
	}
	t.Cleanup(func() {
		// The test's processes are killed (cleanups run last first); the
		// cgroups go once empty.
		if err := Remove([]string{filepath.Join(parent, LeafName), parent}, 10*time.Second); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	held := start() // the parent's own process, as the CT's init
	if err := os.WriteFile(filepath.Join(parent, "cgroup.procs"), []byte(strconv.Itoa(held.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	l := &Layout{Dirs: map[string]string{ctrl: parent}, V2: map[string]bool{ctrl: true}}
	p, err := NewPlan(l, "nexcage-t", r)
	if err != nil {
		t.Fatal(err)
	}
	ctr := start()
	if err := p.Apply(ctr.Process.Pid); err != nil {
		t.Fatal(err)
	}
	cgOf := func(pid int) string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "0::"); ok {
				return filepath.Join(root, v)
			}
		}
		return ""
	}
	if got := cgOf(held.Process.Pid); got != filepath.Join(parent, LeafName) {
		t.Errorf("the parent's process is in %s, want the leaf %s", got, filepath.Join(parent, LeafName))
	}
	if got := cgOf(ctr.Process.Pid); got != filepath.Join(parent, "nexcage-t") {
		t.Errorf("the container's process is in %s", got)
	}
	if sc, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control")); !slices.Contains(strings.Fields(string(sc)), ctrl) {
		t.Errorf("%s not enabled in %s: %q", ctrl, parent, sc)
	}
	if got, err := os.ReadFile(filepath.Join(parent, "nexcage-t", file)); err != nil || strings.TrimSpace(string(got)) != want {
		t.Errorf("%s = %q, %v; want %s", file, got, err, want)
	}
	if err := Remove(p.Dirs, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(parent, "nexcage-t")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the container's cgroup left: %v", err)
	}
	if st, err := ctr.Process.Wait(); err != nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the container's process was not killed by Remove: %v, %v", st, err)
	}
}

// TestSetOrder: update's Set writes into existing cgroups; a value the
// kernel refuses until another one is written (cgroup v1: raising the
// memory limit above memory+swap) succeeds on the second pass.
func TestSetOrder(t *testing.T) {
	fakeFS(t)
	parent := filepath.Join(t.TempDir(), "lxc.payload.100")
	dir := filepath.Join(parent, "nexcage-c1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "memory.memsw.limit_in_bytes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	memsw := int64(64 << 20)
	var order []string
	writeFile = func(p, v string) error {
		n, _ := strconv.ParseInt(v, 10, 64)
		switch filepath.Base(p) {
		case "memory.limit_in_bytes":
			if n > memsw {
				return unix.EINVAL
			}
		case "memory.memsw.limit_in_bytes":
			memsw = n
		}
		order = append(order, filepath.Base(p)+"="+v)
		return os.WriteFile(p, []byte(v), 0o644)
	}
	l := &Layout{Dirs: map[string]string{"memory": parent}, V2: map[string]bool{}}
	p, err := NewPlan(l, "nexcage-c1", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(128 << 20), Swap: i64(128 << 20)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Set(); err != nil {
		t.Fatal(err)
	}
	want := []string{"memory.memsw.limit_in_bytes=134217728", "memory.limit_in_bytes=134217728"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("writes %v, want %v", order, want)
	}
	// A value refused for good is an error naming the file.
	writeFile = func(p, v string) error { return unix.EINVAL }
	if err := p.Set(); err == nil || !strings.Contains(err.Error(), "memory.limit_in_bytes") {
		t.Errorf("a refused value: %v", err)
	}
}
