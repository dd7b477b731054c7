// Package cgroups gives a process tree its own child cgroup below another
// process's cgroups, with the limits of an OCI spec's linux.resources.
// The Proxmox backend uses it for the app containers of a Kubernetes pod,
// which are process trees inside the pod's CT (docs/KUBERNETES.md): each
// gets a child of the CT's cgroup, so its limits nest under the CT's.
//
// It works on cgroup v2 (unified), cgroup v1 and hybrid hosts, choosing
// per controller the hierarchy that has it. It runs on the host as root
// and reads only the host's /proc and cgroup file systems; it never
// follows a path from inside a container.
//
// runc's own package (github.com/opencontainers/cgroups) is not used:
// its managers own the whole path from their root and have no way to make
// room in a populated cgroup v2 parent (the CT's payload cgroup holds the
// CT's init), and its resource type is libcontainer's, not the spec's, so
// the spec-to-cgroup mapping would still be ours. The mapping follows
// runc's and crun's (see Writes).
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// LeafName is the leaf a cgroup v2 parent's own processes are moved to
// when controllers must be enabled for its children (cgroup v2's "no
// internal processes" rule). It is the leaf lxc-attach itself uses in a
// container's cgroup (LXC's cgroup_attach_leaf), so attaching to the CT
// keeps working and no other directory appears in it.
const LeafName = ".lxc"

// Layout is where a process's cgroups are on the host: for each
// controller, the directory of the process's cgroup in the hierarchy that
// has the controller.
type Layout struct {
	// Dirs maps a controller ("cpu", "memory", ...) to a directory;
	// cgroup v2 controllers all map to the same one.
	Dirs map[string]string
	// V2 tells which controllers are on the cgroup v2 hierarchy.
	V2 map[string]bool
	// AtRoot lists the controllers whose cgroup is its hierarchy's root
	// (as the host sees it): no cgroup of the process's own to nest in.
	AtRoot map[string]bool
}

// Find reads the cgroups of pid (/proc/<pid>/cgroup) and the host's
// cgroup mounts (/proc/self/mountinfo).
func Find(pid int) (*Layout, error) {
	procCg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	return layoutOf(string(procCg), mounts, func(dir string) string {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		return string(data)
	})
}

// layoutOf builds a Layout from the text of /proc/<pid>/cgroup, the
// cgroup mounts and a reader of a cgroup v2 directory's
// cgroup.controllers.
func layoutOf(procCgroup string, mounts []*mountinfo.Info, controllers func(dir string) string) (*Layout, error) {
	l := &Layout{Dirs: map[string]string{}, V2: map[string]bool{}, AtRoot: map[string]bool{}}
	// A path is relative to the root of the hierarchy as the reader sees
	// it; a mount of the hierarchy shows its own root the same way.
	dirOf := func(m *mountinfo.Info, p string) (string, bool) {
		rel, err := filepath.Rel(m.Root, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", false
		}
		return filepath.Join(m.Mountpoint, rel), true
	}
	atRoot := func(p string) bool { return filepath.Clean("/"+p) == "/" }
	sc := bufio.NewScanner(strings.NewReader(procCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := parts[2]
		if parts[1] == "" && parts[0] == "0" {
			for _, m := range mounts {
				if m.FSType != "cgroup2" {
					continue
				}
				dir, ok := dirOf(m, p)
				if !ok {
					continue
				}
				for _, c := range strings.Fields(controllers(dir)) {
					if _, taken := l.Dirs[c]; !taken {
						l.Dirs[c], l.V2[c], l.AtRoot[c] = dir, true, atRoot(p)
					}
				}
				break
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "" || strings.HasPrefix(c, "name=") {
				continue
			}
			for _, m := range mounts {
				if m.FSType != "cgroup" || !slices.Contains(strings.Split(m.VFSOptions, ","), c) {
					continue
				}
				if dir, ok := dirOf(m, p); ok {
					// A controller bound to v1 is not on v2.
					l.Dirs[c], l.AtRoot[c] = dir, atRoot(p)
					delete(l.V2, c)
				}
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return l, nil
}

// Write is one value written to one cgroup file.
type Write struct {
	Controller string
	File       string
	Value      string
}

// Unsupported is a resource the package does not apply; Field names it
// in the spec's terms.
type Unsupported struct {
	Field  string
	Reason string
}

func (u *Unsupported) Error() string { return u.Field + ": " + u.Reason }

func unsupported(field, reason string) error { return &Unsupported{Field: field, Reason: reason} }

var (
	pageSizeRe   = regexp.MustCompile(`^[0-9]+[KMGTP]?B$`)
	unifiedKeyRe = regexp.MustCompile(`^[a-z_]+\.[A-Za-z0-9_.]+$`)
)

// CPUSharesToWeight maps cgroup v1 cpu.shares (2..262144, default 1024)
// to cgroup v2 cpu.weight (1..10000, default 100) as runc (1.3.2 on,
// opencontainers/cgroups' ConvertCPUSharesToCgroupV2Value) and crun do
// since Kubernetes issue 131216: a quadratic in log2(shares) that maps
// the minimum, the default and the maximum onto each other (the older
// linear formula gave 39 for the default 1024). 0 means unset.
func CPUSharesToWeight(shares uint64) uint64 {
	switch {
	case shares == 0:
		return 0
	case shares <= 2:
		return 1
	case shares >= 262144:
		return 10000
	}
	l := math.Log2(float64(shares))
	return uint64(math.Ceil(math.Pow(10, (l*l+125*l)/612.0-7.0/34.0)))
}

// SwapToV2 converts the spec's memory.swap (memory plus swap, cgroup v1's
// memsw) to cgroup v2's memory.swap.max (swap alone) as runc does
// (ConvertMemorySwapToCgroupV2Value): -1 is unlimited, 0 unset.
func SwapToV2(swap, memory int64) (int64, error) {
	switch {
	case memory == -1 && swap == 0:
		return -1, nil
	case swap == -1 || swap == 0:
		return swap, nil
	case memory == 0 || memory == -1:
		return 0, errors.New("a swap limit needs a memory limit")
	case memory < 0:
		return 0, fmt.Errorf("invalid memory limit %d", memory)
	case swap < memory:
		return 0, fmt.Errorf("the memory+swap limit %d is below the memory limit %d", swap, memory)
	}
	return swap - memory, nil
}

func maxOr(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// Writes maps r to the cgroup files to write, in order, for each
// controller on v2 (v2[controller]) or v1. has tells whether a file
// exists in the parent's directory of its controller (optional files:
// memsw, swap). An unset resource is left alone; what the package cannot
// apply is an *Unsupported error. Device rules (linux.resources.devices)
// are not applied: the caller's parent enforces its own.
func Writes(r *specs.LinuxResources, v2 func(controller string) bool, has func(controller, file string) bool) ([]Write, error) {
	if r == nil {
		return nil, nil
	}
	var out []Write
	add := func(c, f, v string) { out = append(out, Write{c, f, v}) }
	if m := r.Memory; m != nil {
		switch {
		//lint:ignore SA1019 the deprecated field is refused, so it must be read
		case m.Kernel != nil || m.KernelTCP != nil:
			return nil, unsupported("linux.resources.memory.kernel", "kernel memory limits are obsolete (Linux 5.4) and not applied")
		case m.DisableOOMKiller != nil && *m.DisableOOMKiller:
			return nil, unsupported("linux.resources.memory.disableOOMKiller", "the OOM killer cannot be disabled for a process tree inside a container")
		case m.UseHierarchy != nil && !*m.UseHierarchy:
			return nil, unsupported("linux.resources.memory.useHierarchy", "memory accounting is always hierarchical")
		case m.Swappiness != nil && v2("memory"):
			return nil, unsupported("linux.resources.memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
		}
		if v2("memory") {
			if m.Reservation != nil {
				add("memory", "memory.low", maxOr(*m.Reservation))
			}
			if m.Limit != nil {
				add("memory", "memory.max", maxOr(*m.Limit))
			}
			if m.Swap != nil {
				var limit int64
				if m.Limit != nil {
					limit = *m.Limit
				}
				s, err := SwapToV2(*m.Swap, limit)
				if err != nil {
					return nil, unsupported("linux.resources.memory.swap", err.Error())
				}
				switch {
				case s == 0 && *m.Swap == 0:
				case has("memory", "memory.swap.max"):
					add("memory", "memory.swap.max", maxOr(s))
				case s != 0 && s != -1:
					return nil, unsupported("linux.resources.memory.swap", "the kernel does not account swap (no memory.swap.max)")
				}
			}
		} else {
			if m.Limit != nil {
				add("memory", "memory.limit_in_bytes", strconv.FormatInt(*m.Limit, 10))
			}
			if m.Swap != nil && *m.Swap != 0 {
				switch {
				case has("memory", "memory.memsw.limit_in_bytes"):
					add("memory", "memory.memsw.limit_in_bytes", strconv.FormatInt(*m.Swap, 10))
				case *m.Swap != -1 && (m.Limit == nil || *m.Swap != *m.Limit):
					return nil, unsupported("linux.resources.memory.swap", "the kernel does not account swap (no memory.memsw.limit_in_bytes)")
				}
			}
			if m.Reservation != nil {
				add("memory", "memory.soft_limit_in_bytes", strconv.FormatInt(*m.Reservation, 10))
			}
			if m.Swappiness != nil {
				if *m.Swappiness > 100 {
					return nil, unsupported("linux.resources.memory.swappiness", fmt.Sprintf("%d is not within 0..100", *m.Swappiness))
				}
				add("memory", "memory.swappiness", strconv.FormatUint(*m.Swappiness, 10))
			}
		}
	}
	if c := r.CPU; c != nil {
		switch {
		case (c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0) || (c.RealtimePeriod != nil && *c.RealtimePeriod != 0):
			return nil, unsupported("linux.resources.cpu.realtimeRuntime", "real-time CPU time is not given to a process tree inside a container")
		case c.Idle != nil && *c.Idle != 0:
			return nil, unsupported("linux.resources.cpu.idle", "SCHED_IDLE cgroups are not applied")
		}
		if v2("cpu") {
			if w := CPUSharesToWeight(ptrU(c.Shares)); w != 0 {
				add("cpu", "cpu.weight", strconv.FormatUint(w, 10))
			}
			if c.Quota != nil || (c.Period != nil && *c.Period != 0) {
				q := "max"
				if c.Quota != nil && *c.Quota > 0 {
					q = strconv.FormatInt(*c.Quota, 10)
				}
				if c.Period != nil && *c.Period != 0 {
					q += " " + strconv.FormatUint(*c.Period, 10)
				}
				add("cpu", "cpu.max", q)
			}
			if c.Burst != nil {
				add("cpu", "cpu.max.burst", strconv.FormatUint(*c.Burst, 10))
			}
		} else {
			if s := ptrU(c.Shares); s != 0 {
				add("cpu", "cpu.shares", strconv.FormatUint(s, 10))
			}
			// The period first: a quota is checked against it.
			if c.Period != nil && *c.Period != 0 {
				add("cpu", "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10))
			}
			if c.Quota != nil {
				q := *c.Quota
				if q <= 0 {
					q = -1
				}
				add("cpu", "cpu.cfs_quota_us", strconv.FormatInt(q, 10))
			}
			if c.Burst != nil {
				add("cpu", "cpu.cfs_burst_us", strconv.FormatUint(*c.Burst, 10))
			}
		}
		if c.Cpus != "" {
			add("cpuset", "cpuset.cpus", c.Cpus)
		}
		if c.Mems != "" {
			add("cpuset", "cpuset.mems", c.Mems)
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		v := "max"
		if *r.Pids.Limit > 0 {
			v = strconv.FormatInt(*r.Pids.Limit, 10)
		}
		add("pids", "pids.max", v)
	}
	for i, h := range r.HugepageLimits {
		if !pageSizeRe.MatchString(h.Pagesize) {
			return nil, unsupported(fmt.Sprintf("linux.resources.hugepageLimits[%d]", i), fmt.Sprintf("page size %q is not like 2MB", h.Pagesize))
		}
		f := "hugetlb." + h.Pagesize + ".limit_in_bytes"
		if v2("hugetlb") {
			f = "hugetlb." + h.Pagesize + ".max"
		}
		add("hugetlb", f, strconv.FormatUint(h.Limit, 10))
	}
	if b := r.BlockIO; b != nil && (b.Weight != nil || b.LeafWeight != nil || len(b.WeightDevice) > 0 || len(b.ThrottleReadBpsDevice) > 0 ||
		len(b.ThrottleWriteBpsDevice) > 0 || len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0) {
		return nil, unsupported("linux.resources.blockIO", "block I/O limits are not applied to a process tree inside a container")
	}
	if n := r.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		return nil, unsupported("linux.resources.network", "network class ids and priorities (cgroup v1 net_cls, net_prio) are not applied")
	}
	if len(r.Rdma) > 0 {
		return nil, unsupported("linux.resources.rdma", "RDMA limits are not applied")
	}
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c, _, _ := strings.Cut(k, ".")
		switch {
		case !unifiedKeyRe.MatchString(k) || c == "cgroup":
			return nil, unsupported("linux.resources.unified["+k+"]", "not a controller's file")
		case !v2(c):
			return nil, unsupported("linux.resources.unified["+k+"]", "the "+c+" controller is not on cgroup v2 here")
		case strings.ContainsAny(r.Unified[k], "\n"):
			return nil, unsupported("linux.resources.unified["+k+"]", "a value of one line is expected")
		}
		add(c, k, r.Unified[k])
	}
	return out, nil
}

func ptrU(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// Plan is what Apply does: the child directories (Dirs, to record before
// Apply so that an interrupted Apply can be undone by Remove) and the
// writes in each.
type Plan struct {
	// Dirs are the child cgroups, one per hierarchy used.
	Dirs []string
	// Skipped are the writes left out because the parent has no hugetlb
	// controller (as containerd's tolerate_missing_hugetlb_controller,
	// on by default, skips them): the kubelet asks for every page size
	// of the node, with limit 0 unless requested.
	Skipped []Write
	steps   []step
}

type step struct {
	parent, dir string
	v2          bool
	controllers []string
	writes      []Write
}

// NewPlan plans a child cgroup called name below l's cgroups with the
// limits of r. Only the hierarchies of the controllers r sets are used;
// an r that sets nothing gives an empty plan. A controller the layout
// does not have (but hugetlb, see Plan.Skipped), or a resource the
// package does not apply, is an *Unsupported error.
func NewPlan(l *Layout, name string, r *specs.LinuxResources) (*Plan, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\n") {
		return nil, fmt.Errorf("invalid cgroup name %q", name)
	}
	ws, err := Writes(r, func(c string) bool { return l.V2[c] }, func(c, f string) bool {
		d, ok := l.Dirs[c]
		if !ok {
			return false
		}
		_, err := os.Stat(filepath.Join(d, f))
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	byDir := map[string]*step{}
	for _, w := range ws {
		parent, ok := l.Dirs[w.Controller]
		if !ok && w.Controller == "hugetlb" {
			p.Skipped = append(p.Skipped, w)
			continue
		}
		if !ok {
			return nil, unsupported(w.File, "the "+w.Controller+" controller is not available in the parent's cgroup")
		}
		if l.AtRoot[w.Controller] || parent == "" {
			return nil, unsupported(w.File, "the parent's "+w.Controller+" cgroup is its hierarchy's root ("+parent+"): it has no cgroup of its own to nest in")
		}
		s := byDir[parent]
		if s == nil {
			s = &step{parent: parent, dir: filepath.Join(parent, name), v2: l.V2[w.Controller]}
			byDir[parent] = s
			p.Dirs = append(p.Dirs, s.dir)
		}
		if !slices.Contains(s.controllers, w.Controller) {
			s.controllers = append(s.controllers, w.Controller)
		}
		s.writes = append(s.writes, w)
	}
	for _, d := range p.Dirs {
		p.steps = append(p.steps, *byDir[filepath.Dir(d)])
	}
	return p, nil
}

// Files of the cgroup file systems, replaceable by tests.
var (
	writeFile = func(p, v string) error { return os.WriteFile(p, []byte(v), 0) }
	readFile  = os.ReadFile
	mkdir     = os.Mkdir
	rmdir     = func(p string) error { return unix.Rmdir(p) }
	kill      = syscall.Kill
)

// Apply makes the plan's cgroups, writes the limits and moves pid (all
// its threads) into them. Its children, made later, stay there.
func (p *Plan) Apply(pid int) error {
	for _, s := range p.steps {
		if s.v2 {
			if err := enableV2(s.parent, s.controllers); err != nil {
				return err
			}
		}
		if err := mkdir(s.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if procs, _ := readFile(filepath.Join(s.dir, "cgroup.procs")); len(strings.TrimSpace(string(procs))) > 0 {
			return fmt.Errorf("%s already exists and has processes", s.dir)
		}
		if !s.v2 && slices.Contains(s.controllers, "cpuset") {
			// A v1 cpuset takes no task before its cpus and mems are set:
			// the parent's, unless the spec sets them (below).
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := readFile(filepath.Join(s.parent, f))
				if err != nil {
					return err
				}
				if err := writeFile(filepath.Join(s.dir, f), strings.TrimSpace(string(v))); err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(s.dir, f), err)
				}
			}
		}
		for _, w := range s.writes {
			if err := writeFile(filepath.Join(s.dir, w.File), w.Value); err != nil {
				return fmt.Errorf("cannot write %q to %s: %w", w.Value, filepath.Join(s.dir, w.File), err)
			}
		}
	}
	for _, s := range p.steps {
		if err := writeProc(filepath.Join(s.dir, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("cannot move process %d into %s: %w", pid, s.dir, err)
		}
	}
	return nil
}

// Set writes the plan's limits into its cgroups, which exist already
// (a running container's new resources, runc's update). A write the
// kernel refuses because of another limit not written yet (cgroup v1's
// memory+swap must stay at or above the memory limit; a CPU quota is
// checked against the period) succeeds on a second pass.
func (p *Plan) Set() error {
	var failed []Write
	var dirs []string
	for _, s := range p.steps {
		for _, w := range s.writes {
			if err := writeFile(filepath.Join(s.dir, w.File), w.Value); err != nil {
				failed, dirs = append(failed, w), append(dirs, s.dir)
			}
		}
	}
	for i, w := range failed {
		if err := writeFile(filepath.Join(dirs[i], w.File), w.Value); err != nil {
			return fmt.Errorf("cannot write %q to %s: %w", w.Value, filepath.Join(dirs[i], w.File), err)
		}
	}
	return nil
}

// Join moves pid (all its threads) into the existing cgroups dirs, as
// Apply does for the plan's first process.
func Join(dirs []string, pid int) error {
	for _, d := range dirs {
		if err := writeProc(filepath.Join(d, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("cannot move process %d into %s: %w", pid, d, err)
		}
	}
	return nil
}

// writeProc writes pid to a cgroup.procs file. EINVAL can mean a task
// still being created (runc retries likewise); polled a few times.
func writeProc(file string, pid int) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = writeFile(file, strconv.Itoa(pid)); !errors.Is(err, unix.EINVAL) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// enableV2 enables controllers for dir's children. cgroup v2 refuses
// that (EBUSY) while dir itself has processes: they are moved into the
// leaf LeafName first, again while new ones appear (a fork racing the
// move), as an init system does with its own cgroup.
func enableV2(dir string, controllers []string) error {
	have, _ := readFile(filepath.Join(dir, "cgroup.subtree_control"))
	var missing []string
	for _, c := range controllers {
		if !slices.Contains(strings.Fields(string(have)), c) {
			missing = append(missing, "+"+c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var err error
	for i := 0; i < 20; i++ {
		if err = writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(missing, " ")); !errors.Is(err, unix.EBUSY) {
			break
		}
		leaf := filepath.Join(dir, LeafName)
		if e := mkdir(leaf, 0o755); e != nil && !errors.Is(e, os.ErrExist) {
			return fmt.Errorf("cannot make the leaf %s for the processes of %s: %w", leaf, dir, e)
		}
		procs, e := readFile(filepath.Join(dir, "cgroup.procs"))
		if e != nil {
			return e
		}
		for _, f := range strings.Fields(string(procs)) {
			if e := writeFile(filepath.Join(leaf, "cgroup.procs"), f); e != nil && !errors.Is(e, unix.ESRCH) {
				return fmt.Errorf("cannot move process %s of %s into %s: %w", f, dir, leaf, e)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cannot enable %s in %s: %w", strings.Join(missing, " "), filepath.Join(dir, "cgroup.subtree_control"), err)
	}
	return nil
}

// Remove kills every process left in the cgroups dirs (cgroup.kill
// where the kernel has it) and removes them, polling until they are
// empty or timeout has passed. A directory already gone is no error.
func Remove(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var errs []error
	for _, d := range dirs {
		for {
			err := rmdir(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if !errors.Is(err, unix.EBUSY) {
				errs = append(errs, fmt.Errorf("cannot remove cgroup %s: %w", d, err))
				break
			}
			if time.Now().After(deadline) {
				procs, _ := readFile(filepath.Join(d, "cgroup.procs"))
				errs = append(errs, fmt.Errorf("cannot remove cgroup %s: processes %s are still in it after %s", d, strings.Join(strings.Fields(string(procs)), " "), timeout))
				break
			}
			killAll(d)
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// Procs lists the processes in the cgroups dirs (host pids: the caller
// is in the host's pid namespace).
func Procs(dirs []string) []int {
	var out []int
	for _, d := range dirs {
		data, _ := readFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !slices.Contains(out, pid) {
				out = append(out, pid)
			}
		}
	}
	return out
}

func killAll(dir string) {
	if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err == nil {
		return
	}
	for _, pid := range Procs([]string{dir}) {
		_ = kill(pid, syscall.SIGKILL)
	}
}

// IsCgroupDir tells whether p is a directory on a cgroup file system
// (v1 or v2): what Remove is given must be one, never a path of another
// file system.
func IsCgroupDir(p string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC
}
