// Package bench measures what nexcage costs, side by side with runc, crun
// and the original nexcage's pct usage (issue 7), and writes the figures
// as BENCHMARKS.md. cmd/nexcage-bench is its command line; `make bench`
// runs it. See README.md in this directory.
package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure one run.
type Options struct {
	// Nexcage and Pvesim are the binaries under test.
	Nexcage, Pvesim string
	// Quick runs every section with tiny counts (a smoke test).
	Quick bool
	// Sections limits the run to these section numbers (empty: all).
	Sections []int
	// TempDir is where the work directory is created ("" = os.TempDir).
	TempDir string
	// Keep leaves the work directory behind for inspection.
	Keep bool
	// Command is the command line recorded in the report, and Via what
	// ran it (e.g. "make bench"), if anything.
	Command, Via string
	// Progress gets one line per step (nil: discarded).
	Progress io.Writer
}

// counts are the repetitions of each section.
type counts struct {
	warmup, cycles int   // section 1
	startup        int   // section 2
	pctReps        int   // section 3
	modelReps      int   // section 4
	scaleNs        []int // section 5
	scaleReps      int   // section 5
	imageBytes     int64 // section 6
	imageReps      int   // section 6
	soakCycles     int   // section 7
	latencyMS      int   // section 4
	rssRuns        int   // extra runs under busybox time, for peak RSS
}

func countsFor(quick bool) counts {
	if quick {
		return counts{warmup: 1, cycles: 2, startup: 3, pctReps: 1, modelReps: 1, scaleNs: []int{10, 100},
			scaleReps: 2, imageBytes: 4 << 20, imageReps: 1, soakCycles: 3, latencyMS: 300, rssRuns: 1}
	}
	return counts{warmup: 3, cycles: 50, startup: 50, pctReps: 5, modelReps: 5, scaleNs: []int{10, 100, 1000, 5000},
		scaleReps: 15, imageBytes: 50 << 20, imageReps: 5, soakCycles: 100, latencyMS: 300, rssRuns: 3}
}

// Bench is one run in progress.
type Bench struct {
	o   Options
	c   counts
	dir string
	r   *runner
	pve *pveEnv
	rep *Report

	// rss collects peak RSS samples (KiB) by label, in first-seen order.
	rss     map[string][]int64
	rssKeys []string
	// cleanups run at the end, last first.
	cleanups []func()
}

func (b *Bench) logf(format string, a ...any) {
	if b.o.Progress != nil {
		fmt.Fprintf(b.o.Progress, "bench: "+format+"\n", a...)
	}
}

func (b *Bench) addRSS(label string, s Sample) {
	if b.rss == nil {
		b.rss = map[string][]int64{}
	}
	if _, ok := b.rss[label]; !ok {
		b.rssKeys = append(b.rssKeys, label)
	}
	b.rss[label] = append(b.rss[label], s.MaxRSSKB)
}

// nexcage runs nexcage with the bench's root and config.
func (b *Bench) nexcage(env []string, args ...string) (Sample, error) {
	argv := append([]string{b.o.Nexcage, "--root", b.pve.nroot, "--config", b.pve.config}, args...)
	return b.r.must(env, argv...)
}

// Run performs the benchmark and returns the report. A failing section
// is recorded in the report and in the returned error; the others still
// run.
func Run(o Options) (*Report, error) {
	if o.Nexcage == "" || o.Pvesim == "" {
		return nil, errors.New("bench: the nexcage and pvesim binaries are required")
	}
	for _, p := range []*string{&o.Nexcage, &o.Pvesim} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	dir, err := os.MkdirTemp(o.TempDir, "nexcage-bench-")
	if err != nil {
		return nil, err
	}
	// nexcage reads its config only from an absolute path.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	// Unprivileged containers run as an unmapped host uid that must be
	// able to traverse the work directory to reach their rootfs.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	b := &Bench{o: o, c: countsFor(o.Quick), dir: dir, r: &runner{dir: dir}}
	b.rep = &Report{Command: o.Command, Via: o.Via, Started: time.Now(), Quick: o.Quick, LoadStart: loadAvg()}
	defer func() {
		for i := len(b.cleanups) - 1; i >= 0; i-- {
			b.cleanups[i]()
		}
		reapZombies()
		if !o.Keep {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := setSubreaper(true); err != nil {
		return nil, fmt.Errorf("bench: become a child subreaper: %w", err)
	}
	defer func() { _ = setSubreaper(false) }()

	b.rep.Machine, b.rep.Versions = machineInfo(o.Nexcage)
	// Both nexcage's and the runtimes' state roots live in the work
	// directory; its filesystem matters (fsync and unlink costs), and on a
	// Proxmox host /run is a tmpfs.
	b.rep.Machine = append(b.rep.Machine, [2]string{"Work directory (state roots)", dir + " on " + fsType(dir)})
	if b.pve, err = newPveEnv(dir, o.Pvesim); err != nil {
		return nil, err
	}
	b.cleanups = append(b.cleanups, func() { b.pve.cleanup(b.r) })

	sections := []struct {
		num   int
		title string
		fn    func(*Section) error
	}{
		{1, "Passthrough overhead: nexcage routed to runc/crun vs the runtime directly", b.passthrough},
		{2, "CLI start-up", b.startup},
		{3, "pct calls per verb (Proxmox backend, from PVESIM_LOG)", b.pctCalls},
		{4, "Modelled lifecycle time on Proxmox (PVESIM_LATENCY_MS)", b.modelled},
		{5, "Scale: list and state with many containers known", b.scale},
		{6, "Create cost by image form", b.images},
		{7, "Memory: peak RSS per verb and heap growth over a soak", b.memory},
	}
	var failed []string
	for _, s := range sections {
		if len(o.Sections) > 0 && !slices.Contains(o.Sections, s.num) {
			continue
		}
		sec := &Section{Num: s.num, Title: s.title}
		b.logf("section %d: %s", s.num, s.title)
		t0 := time.Now()
		if err := s.fn(sec); err != nil {
			sec.Err = err
			failed = append(failed, fmt.Sprintf("section %d: %v", s.num, err))
			b.logf("section %d FAILED: %v", s.num, err)
		}
		reapZombies()
		b.logf("section %d took %s", s.num, time.Since(t0).Round(time.Millisecond))
		sec.Notes = append(sec.Notes, fmt.Sprintf("Section run time: %s.", time.Since(t0).Round(100*time.Millisecond)))
		b.rep.Sections = append(b.rep.Sections, sec)
	}
	b.rep.Duration = time.Since(b.rep.Started)
	b.rep.LoadEnd = loadAvg()
	if len(failed) > 0 {
		return b.rep, errors.New(strings.Join(failed, "; "))
	}
	return b.rep, nil
}

// machineInfo describes the host and the versions of what is measured.
func machineInfo(nexcage string) (machine, versions [][2]string) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	machine = append(machine,
		[2]string{"CPU", cpuModel()},
		[2]string{"nproc", fmt.Sprint(goruntime.NumCPU())},
		[2]string{"Memory", memTotal()},
		[2]string{"Kernel", unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Machine[:])},
		[2]string{"OS", osRelease()},
		[2]string{"Cgroups", cgroupLayout()},
	)
	first := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return "unavailable: " + err.Error()
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	versions = append(versions,
		[2]string{"nexcage", first(nexcage, "--version")},
		[2]string{"runc", first("runc", "--version")},
		[2]string{"crun", first("crun", "--version")},
		[2]string{"lxc", first("lxc-start", "--version")},
		[2]string{"go", goruntime.Version()},
		[2]string{"git", gitDescribe()},
	)
	return machine, versions
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var k int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "MemTotal:"), "kB")), &k)
			return fmt.Sprintf("%.1f GiB", float64(k)/(1<<20))
		}
	}
	return "unknown"
}

func osRelease() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "unknown"
}

func cgroupLayout() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return "cgroup v2 (unified)"
	case unix.TMPFS_MAGIC:
		if unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return "hybrid (cgroup v1 controllers + cgroup2 at /sys/fs/cgroup/unified)"
		}
		return "cgroup v1"
	}
	return "unknown"
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// fsType names the filesystem holding dir.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown filesystem"
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	}
	return fmt.Sprintf("filesystem 0x%x", st.Type)
}
