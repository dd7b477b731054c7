// Command soak is nexcage's process-level soak: it runs `nexcage list`
// over and over with 1000 containers present (state records plus their
// Proxmox configs on a pvesim node) and checks that nothing accumulates
// on the host: no zombie or orphaned process, no temp file, lock file,
// extra state directory or LXC directory, and a flat peak RSS per run.
// It prints the figures it saw and exits 1 when a check fails.
//
//	go run ./bench/soak -nexcage bin/nexcage -pvesim bin/pvesim -duration 60s
//
// It makes itself a child subreaper, so any process a nexcage run leaves
// behind is re-parented to it and counted, not lost to init.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/state"
)

func main() {
	nexcage := flag.String("nexcage", "bin/nexcage", "nexcage binary")
	pvesim := flag.String("pvesim", "bin/pvesim", "pvesim binary")
	duration := flag.Duration("duration", 60*time.Second, "how long to run")
	containers := flag.Int("containers", 1000, "containers present during the runs")
	rssSlack := flag.Int64("rss-slack-kib", 2048, "how much the last runs' peak RSS may exceed the first runs' (KiB)")
	flag.Parse()
	if err := run(*nexcage, *pvesim, *duration, *containers, *rssSlack); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

// env is the soak's private world: a pvesim node, a nexcage root and
// config, and a TMPDIR for nexcage, all under one temp directory.
type env struct {
	dir, sim, root, config, tmp string
	nexcage                     string
	vars                        []string
}

func run(nexcage, pvesim string, duration time.Duration, n int, rssSlack int64) error {
	var err error
	if nexcage, err = filepath.Abs(nexcage); err != nil {
		return err
	}
	if pvesim, err = filepath.Abs(pvesim); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	e, err := setup(nexcage, pvesim, n)
	if err != nil {
		return err
	}
	defer os.RemoveAll(e.dir)
	// busybox time's report file is rewritten by every run: it exists
	// before the first snapshot so that it does not count as a leftover.
	if err := os.WriteFile(e.rssFile(), nil, 0o600); err != nil {
		return err
	}

	before, err := e.snapshot()
	if err != nil {
		return err
	}
	tmpBefore := globalTmp()
	fdBefore := countDir("/proc/self/fd")
	var rss []int64 // KiB per run
	var problems []string
	leftProcs := 0
	start := time.Now()
	for len(rss) < 10 || time.Since(start) < duration {
		kib, err := e.list(n)
		if err != nil {
			return fmt.Errorf("run %d: %w", len(rss)+1, err)
		}
		rss = append(rss, kib)
		if left := reapAll(); left > 0 {
			leftProcs += left
			problems = append(problems, fmt.Sprintf("run %d left %d process(es) behind (orphans or zombies)", len(rss), left))
		}
		if len(rss)%50 == 0 {
			if err := e.check(before, n); err != nil {
				problems = append(problems, fmt.Sprintf("after run %d: %v", len(rss), err))
				break
			}
		}
	}
	elapsed := time.Since(start)
	if err := e.check(before, n); err != nil {
		problems = append(problems, "at the end: "+err.Error())
	}
	tmpAfter := globalTmp()
	fdAfter := countDir("/proc/self/fd")

	k := max(len(rss)/10, 1)
	first, last := mean(rss[:k]), mean(rss[len(rss)-k:])
	sorted := slices.Clone(rss)
	slices.Sort(sorted)
	fmt.Printf("soak: %d runs of `nexcage list` over %d containers in %v (%.1f runs/s)\n",
		len(rss), n, elapsed.Round(time.Millisecond), float64(len(rss))/elapsed.Seconds())
	fmt.Printf("soak: peak RSS per run (KiB): min %d, median %d, max %d; first %d runs mean %.0f, last %d runs mean %.0f\n",
		sorted[0], sorted[len(sorted)/2], sorted[len(sorted)-1], k, first, k, last)
	fmt.Printf("soak: left behind: processes %d (checked after every run); nexcage TMPDIR files %d; lock files %d; state dirs %d (want %d); LXC dirs %d\n",
		leftProcs, countFiles(e.tmp), countFiles(filepath.Join(e.root, "@locks")), countStateDirs(e.root), n, countDir(filepath.Join(e.sim, "var/lib/lxc")))
	fmt.Printf("soak: /tmp entries %d before, %d after; soak's own open fds %d before, %d after\n", tmpBefore, tmpAfter, fdBefore, fdAfter)
	if last > first+float64(rssSlack) {
		problems = append(problems, fmt.Sprintf("peak RSS grew: first runs %.0f KiB, last runs %.0f KiB (slack %d KiB)", first, last, rssSlack))
	}
	if fdAfter > fdBefore {
		problems = append(problems, fmt.Sprintf("soak's open fds grew from %d to %d", fdBefore, fdAfter))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// setup initialises the pvesim node and writes n containers: nexcage
// state records and their <vmid>.conf and .vmlist entries.
func setup(nexcage, pvesim string, n int) (*env, error) {
	dir, err := os.MkdirTemp("", "nexcage-soak-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, sim: filepath.Join(dir, "pve"), root: filepath.Join(dir, "root"), tmp: filepath.Join(dir, "tmp"), nexcage: nexcage}
	fail := func(err error) (*env, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, e.sim, e.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
		if err := os.Symlink(pvesim, filepath.Join(bin, tool)); err != nil {
			return fail(err)
		}
	}
	e.vars = []string{"PVESIM_ROOT=" + e.sim, "TMPDIR=" + e.tmp}
	cmd := exec.Command(pvesim, "init")
	cmd.Env = append(os.Environ(), e.vars...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pvesim init: %v: %s", err, out))
	}
	cfg := map[string]any{
		"proxmox": map[string]any{
			"pct_path": filepath.Join(bin, "pct"), "pveam_path": filepath.Join(bin, "pveam"), "pvesh_path": filepath.Join(bin, "pvesh"),
			"pveversion_path": filepath.Join(bin, "pveversion"),
			"etc_pve":         filepath.Join(e.sim, "etc/pve"), "lxc_path": filepath.Join(e.sim, "var/lib/lxc"), "lock_dir": filepath.Join(e.sim, "run/lock/lxc"), "node": "pve",
		},
		"storage":          map[string]any{"image_path": filepath.Join(e.sim, "nexcage-images")},
		"container_config": map[string]any{"default_container_type": "lxc"},
	}
	data, _ := json.Marshal(cfg)
	e.config = filepath.Join(dir, "nexcage.json")
	if err := os.WriteFile(e.config, data, 0o644); err != nil {
		return fail(err)
	}
	store, err := state.NewStore(e.root)
	if err != nil {
		return fail(err)
	}
	vmlistPath := filepath.Join(e.sim, "etc/pve/.vmlist")
	vmlist, err := pve.ReadVMList(vmlistPath)
	if err != nil {
		return fail(err)
	}
	confDir := filepath.Join(e.sim, "etc/pve/nodes/pve/lxc")
	for i := 0; i < n; i++ {
		id, vmid := fmt.Sprintf("soak-%04d", i), 100000+i
		c := &state.Container{OCIVersion: "1.0.2", ID: id, Status: state.Created, Bundle: dir,
			Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Backend: config.BackendProxmox,
			Data: map[string]string{"vmid": strconv.Itoa(vmid)}}
		if err := store.Save(c); err != nil {
			return fail(err)
		}
		conf := pve.NewConfig()
		conf.Set("hostname", id)
		conf.Set("ostype", "unmanaged")
		conf.Set("rootfs", fmt.Sprintf("local:%d/vm-%d-disk-0.raw,size=4G", vmid, vmid))
		body, err := conf.Marshal()
		if err != nil {
			return fail(err)
		}
		if err := os.WriteFile(filepath.Join(confDir, strconv.Itoa(vmid)+".conf"), body, 0o640); err != nil {
			return fail(err)
		}
		vmlist.Add(vmid, pve.VMListEntry{Node: "pve", Type: "lxc", Version: 1})
	}
	if err := vmlist.Write(vmlistPath); err != nil {
		return fail(err)
	}
	return e, nil
}

// list runs `nexcage list --format json` once, checks it lists n
// containers, and returns the run's peak RSS in KiB.
// rssFile is where busybox time writes each run's peak RSS.
func (e *env) rssFile() string { return filepath.Join(e.dir, "list.rss") }

func (e *env) list(n int) (int64, error) {
	// Peak RSS comes from busybox's time applet, which forks nexcage
	// itself: Go starts children with vfork, and exec records the hiwater
	// RSS of the mm it leaves (this process's) into the child's ru_maxrss,
	// so our own wait4 would report the soak driver's size.
	rssFile := e.rssFile()
	cmd := exec.Command("/bin/busybox", "time", "-f", "%M", "-o", rssFile,
		e.nexcage, "--root", e.root, "--config", e.config, "list", "--format", "json")
	cmd.Env = append(os.Environ(), e.vars...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("nexcage list: %v: %s", err, errOut.String())
	}
	var states []json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &states); err != nil || len(states) != n {
		return 0, fmt.Errorf("nexcage list printed %d containers, want %d (%v)", len(states), n, err)
	}
	data, err := os.ReadFile(rssFile)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, errors.New("busybox time reported no peak RSS")
	}
	k, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("busybox time: %q: %w", data, err)
	}
	// busybox takes ru_maxrss (KiB) for pages and multiplies by the page size.
	return k / int64(os.Getpagesize()/1024), nil
}

// snapshot lists every file of the environment (nexcage root, node,
// TMPDIR), relative to its directory.
func (e *env) snapshot() (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.dir, p)
		out[rel] = true
		return nil
	})
	return out, err
}

// check compares the environment with the snapshot taken before the
// runs: `list` must not add or remove a single file or directory.
func (e *env) check(before map[string]bool, n int) error {
	now, err := e.snapshot()
	if err != nil {
		return err
	}
	var added, removed []string
	for p := range now {
		if !before[p] {
			added = append(added, p)
		}
	}
	for p := range before {
		if !now[p] {
			removed = append(removed, p)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	if len(added) > 0 || len(removed) > 0 {
		return fmt.Errorf("files added %q, removed %q", head(added), head(removed))
	}
	if got := countStateDirs(e.root); got != n {
		return fmt.Errorf("%d state dirs, want %d", got, n)
	}
	return nil
}

func head(s []string) []string {
	if len(s) > 10 {
		return append(s[:10:10], fmt.Sprintf("... %d more", len(s)-10))
	}
	return s
}

// reapAll collects every exited child (orphans re-parented to us
// included) and counts them, plus any child still running.
func reapAll() int {
	n := 0
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
		n++
	}
	return n + liveChildren()
}

// liveChildren counts processes whose parent is this process.
func liveChildren() int {
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	n := 0
	for _, en := range ents {
		if _, err := strconv.Atoi(en.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", en.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == self {
			n++
		}
	}
	return n
}

func countDir(p string) int {
	ents, _ := os.ReadDir(p)
	return len(ents)
}

func countFiles(p string) int {
	n := 0
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func countStateDirs(root string) int {
	ents, _ := os.ReadDir(root)
	n := 0
	for _, en := range ents {
		if en.IsDir() && !strings.HasPrefix(en.Name(), "@") {
			n++
		}
	}
	return n
}

// globalTmp counts /tmp entries whose name mentions nexcage or pvesim
// (informational: other programs share /tmp).
func globalTmp() int {
	ents, _ := os.ReadDir(os.TempDir())
	n := 0
	for _, en := range ents {
		if strings.Contains(en.Name(), "nexcage") || strings.Contains(en.Name(), "pvesim") {
			n++
		}
	}
	return n
}

func mean(v []int64) float64 {
	var s int64
	for _, x := range v {
		s += x
	}
	return float64(s) / float64(len(v))
}
