package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
)

// ociVariant is one way of running an OCI container: nexcage routed to a
// runtime, or the runtime itself.
type ociVariant struct {
	name    string
	runtime string // runc or crun
	direct  bool
	bin     string // the runtime binary (direct)
	root    string // the runtime's --root (direct)
	hybrid  bool   // create through the hybrid-cgroup workaround (direct crun)
	front   string // direct: run the runtime through this exec-only front (bench/cmd/execfront)
}

// phases of one cycle.
type cycle struct {
	create, start, wait, del time.Duration
	rss                      [3]Sample // create, start, delete
}

func (c cycle) total() time.Duration { return c.create + c.start + c.wait + c.del }

func (b *Bench) ociVariants() ([]*ociVariant, error) {
	var vs []*ociVariant
	hybrid := ocirun.HybridWithV2Controllers(ocirun.CgroupRoot)
	for _, rt := range []string{"runc", "crun"} {
		bin, err := exec.LookPath(rt)
		if err != nil {
			return nil, fmt.Errorf("%s is required (apt-get install %s): %w", rt, rt, err)
		}
		vs = append(vs,
			&ociVariant{name: rt + " directly", runtime: rt, direct: true, bin: bin,
				root: filepath.Join(b.dir, "direct-"+rt), hybrid: rt == "crun" && hybrid},
			&ociVariant{name: "nexcage -> " + rt, runtime: rt})
	}
	return vs, nil
}

// floorVariant is runc run through the exec-only Go front: the floor any
// Go front adds (bench/cmd/execfront).
func (b *Bench) floorVariant(runc *ociVariant) (*ociVariant, error) {
	front, err := b.execFront()
	if err != nil {
		return nil, err
	}
	return &ociVariant{name: "exec-only Go front -> runc", runtime: "runc", direct: true, bin: runc.bin,
		root: filepath.Join(b.dir, "front-runc"), front: front}, nil
}

// execFront builds bench/cmd/execfront (static, with the flags make
// build gives nexcage) once, into the work directory.
func (b *Bench) execFront() (string, error) {
	bin := filepath.Join(b.dir, "execfront")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/nexcage/nexcage/bench/cmd/execfront")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build execfront: %v\n%s", err, out)
	}
	return bin, nil
}

// verb runs one lifecycle verb of variant v on id.
func (b *Bench) verb(v *ociVariant, verb, id string, extra ...string) (Sample, error) {
	args := append(append([]string{verb}, extra...), id)
	if !v.direct {
		return b.nexcage(nil, args...)
	}
	argv := append([]string{v.bin, "--root", v.root}, args...)
	if v.front != "" {
		argv = append([]string{v.front}, argv...)
	}
	if verb == "create" && v.hybrid {
		// The same workaround nexcage applies: a private mount namespace
		// in which /sys/fs/cgroup/unified is detached before crun runs.
		// nexcage's hidden helper verb does the detach and execs crun
		// (no nexcage code runs besides it; see README.md).
		argv = append([]string{b.o.Nexcage, ocirun.HelperVerb}, argv...)
		return b.r.mustAttr(nil, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}, argv...)
	}
	return b.r.must(nil, argv...)
}

// kill sends SIGKILL to id's init (`kill <id> KILL`).
func (b *Bench) kill(v *ociVariant, id string) (Sample, error) {
	return b.verb(v, "kill", id, "KILL")
}

// oneCycle is create+start+wait+delete of /bin/true.
func (b *Bench) oneCycle(v *ociVariant, bundle string, i int) (c cycle, err error) {
	id := v.runtime + "-pt-" + strconv.Itoa(i)
	if v.direct {
		id = "pt-" + strconv.Itoa(i)
	}
	pidFile := filepath.Join(b.dir, id+".pid")
	defer os.Remove(pidFile)
	defer func() {
		if err != nil {
			_, _ = b.verb(v, "delete", id, "--force")
		}
	}()
	s, err := b.verb(v, "create", id, "--bundle", bundle, "--pid-file", pidFile)
	if err != nil {
		return c, err
	}
	c.create, c.rss[0] = s.Wall, s
	pid, err := readPid(pidFile)
	if err != nil {
		return c, err
	}
	if s, err = b.verb(v, "start", id); err != nil {
		return c, err
	}
	c.start, c.rss[1] = s.Wall, s
	t0 := time.Now()
	if err := waitExit(pid, 30*time.Second); err != nil {
		return c, fmt.Errorf("%s: %w", v.name, err)
	}
	c.wait = time.Since(t0)
	if s, err = b.verb(v, "delete", id); err != nil {
		return c, err
	}
	c.del, c.rss[2] = s.Wall, s
	return c, nil
}

func (b *Bench) passthrough(sec *Section) error {
	vs, err := b.ociVariants()
	if err != nil {
		return err
	}
	floor, err := b.floorVariant(vs[0])
	if err != nil {
		return err
	}
	vs = append(vs, floor)
	bundle := filepath.Join(b.dir, "bundle-true")
	if err := busyboxBundle(bundle, []string{"/bin/true"}); err != nil {
		return err
	}
	results := map[*ociVariant][]cycle{}
	rssRuns := map[*ociVariant][]cycle{}
	// Interleaved, so that drift on the host hits every variant alike.
	// The last rounds run under busybox time for the peak RSS only.
	defer func() { b.r.rss = false }()
	for i := 0; i < b.c.warmup+b.c.cycles+b.c.rssRuns; i++ {
		b.r.rss = i >= b.c.warmup+b.c.cycles
		for _, v := range vs {
			c, err := b.oneCycle(v, bundle, i)
			if err != nil {
				return err
			}
			switch {
			case b.r.rss:
				rssRuns[v] = append(rssRuns[v], c)
			case i >= b.c.warmup:
				results[v] = append(results[v], c)
			}
		}
	}
	b.r.rss = false
	hybrid := vs[2].hybrid
	sec.Intro = fmt.Sprintf("Each cycle is `create --pid-file` + `start` + wait for the init to exit + `delete` of a busybox bundle running `/bin/true`; "+
		"%d cycles per variant after %d warm-up cycles, the five variants interleaved. "+
		"The bench is a child subreaper, so the container's init is its child and the wait is a wait4 on its pid (no polling).", b.c.cycles, b.c.warmup)
	if hybrid {
		sec.Intro += " This host has the hybrid cgroup layout crun rejects, so `crun create` runs in a mount namespace without /sys/fs/cgroup/unified for both: " +
			"for \"crun directly\" the bench starts `nexcage " + ocirun.HelperVerb + "` in a new mount namespace (CLONE_NEWNS), which detaches the mount and execs crun; " +
			"\"nexcage -> crun\" (its `auto` setting) does the same in process, on the thread that then starts crun. runc needs no workaround."
	}
	t := &Table{Header: []string{"variant", "create", "start", "wait", "delete", "cycle (median [min-max])", "ratio to the runtime"}}
	med := map[*ociVariant]time.Duration{}
	for _, v := range vs {
		cs := results[v]
		var cr, st, wt, dl, tot []time.Duration
		for _, c := range cs {
			cr, st, wt, dl, tot = append(cr, c.create), append(st, c.start), append(wt, c.wait), append(dl, c.del), append(tot, c.total())
		}
		for _, c := range rssRuns[v] {
			for j, verb := range []string{"create", "start", "delete"} {
				label := verb + " (runc passthrough)"
				if v.runtime == "crun" {
					label = verb + " (crun passthrough)"
				}
				if v.direct {
					label = v.runtime + " " + verb + " (directly)"
				}
				b.addRSS(label, c.rss[j])
			}
		}
		ts := summarize(tot)
		med[v] = ts.Median
		r := ""
		switch {
		case v == floor:
			r = fmt.Sprintf("%.2f", ratio(ts.Median, med[vs[0]]))
		case v.direct:
		case v.runtime == "crun":
			r = fmt.Sprintf("**%.2f**", ratio(ts.Median, med[vs[2]]))
		default:
			r = fmt.Sprintf("**%.2f**", ratio(ts.Median, med[vs[0]]))
		}
		t.add(v.name, ms(summarize(cr).Median), ms(summarize(st).Median), ms(summarize(wt).Median), ms(summarize(dl).Median),
			fmt.Sprintf("%s [%s-%s]", ms(ts.Median), ms(ts.Min), ms(ts.Max)), r)
	}
	sec.Tables = append(sec.Tables, t)
	calls, err := b.countRuntimeCalls(vs[:4], bundle)
	if err != nil {
		return fmt.Errorf("counting runtime calls: %w", err)
	}
	ct := &Table{Caption: "Runtime calls per cycle, counted in one extra untimed cycle per nexcage variant in which runc and crun are a wrapper that logs its argv, pid, parent and its parent's children and execs the runtime (\"directly\" is one call per verb by construction). " +
		"Each verb must start exactly one runtime process and no other child (the bench fails otherwise): \"exec\" is nexcage becoming the runtime (same pid, the bench its parent), \"child\" the runtime as nexcage's only child.",
		Header: []string{"variant", "create", "start", "delete", "runtime calls per cycle"}}
	for _, cc := range calls {
		n := 0
		row := []string{cc.variant}
		for _, verb := range []string{"create", "start", "delete"} {
			got := cc.byVerb[verb]
			n += len(got)
			cell := "-"
			if len(got) > 0 {
				cell = "`" + strings.Join(got, "`, `") + "`"
			}
			if p := cc.procs[verb]; p != "" {
				cell += " (" + p + ")"
			}
			row = append(row, cell)
		}
		ct.add(append(row, strconv.Itoa(n))...)
	}
	ct.add("runc or crun directly", "`create`", "`start`", "`delete`", "3")
	sec.Tables = append(sec.Tables, ct)
	// Issue 16's targets: runc 1.10, crun 1.15 (crun's cycle is shorter,
	// so the same nexcage cost weighs more).
	for _, pair := range [][3]any{{1, 0, 1.10}, {3, 2, 1.15}} {
		nx, rt, goal := vs[pair[0].(int)], vs[pair[1].(int)], pair[2].(float64)
		q := ratio(med[nx], med[rt])
		b.rep.Targets = append(b.rep.Targets, Target{Section: 1, What: "passthrough cycle, " + nx.name + " / " + rt.name,
			Goal: fmt.Sprintf("<= %.2f", goal), Got: fmt.Sprintf("%.2f (%s vs %s, +%s per cycle)", q, ms(med[nx]), ms(med[rt]), ms(med[nx]-med[rt])), Met: q <= goal})
	}
	fq := ratio(med[floor], med[vs[0]])
	b.rep.Targets = append(b.rep.Targets, Target{Section: 1, What: "the floor: " + floor.name + " / runc directly",
		Goal: "what any Go front costs (no number set)", Info: true, Got: fmt.Sprintf("%.2f (%s vs %s, +%s per cycle)", fq, ms(med[floor]), ms(med[vs[0]]), ms(med[floor]-med[vs[0]]))})
	sec.Notes = append(sec.Notes,
		"How nexcage runs each verb here (issue 16, docs/ARCHITECTURE.md): `nexcage` is a small front binary; for a runc/crun-routed id it reads the config and "+
			"the runtime's state directory, and then start and delete become the runtime (execve), while create runs the bundle checks it runs for every backend (on the fields they read, bundle.Verify) "+
			"and runs the runtime as its only child under the id's lock, waiting to undo and report a failure or an interrupt; nexcage writes no record of such a container. "+
			"For crun on this host create first moves its thread into a private mount namespace without the cgroup2 mount, in process (no helper). "+
			"The rest of the difference is nexcage's own start-up per verb (section 2 measures it) and, for create, the lock and the wait.",
		fmt.Sprintf("The floor: \"%s\" runs runc through bench/cmd/execfront, a static Go program that does nothing but execve its arguments: "+
			"the start of a Go process plus one more exec per verb, which any front written in Go adds (%.2f here, in the same run). "+
			"nexcage's cycle minus the floor's is what nexcage's own work costs: %s per cycle.", floor.name, fq, ms(med[vs[1]]-med[floor])),
		"Peak RSS (section 7): \"crun create (directly)\" includes the workaround helper, a nexcage process, so it is about nexcage's size, not crun's.")
	return nil
}

// startup is section 2: the cost of one CLI call.
func (b *Bench) startup(sec *Section) error {
	vs, err := b.ociVariants()
	if err != nil {
		return err
	}
	runcDirect, runcNx := vs[0], vs[1]
	bundle, err := b.sleepBundle()
	if err != nil {
		return err
	}
	// A running container under each, and a created Proxmox container
	// (whose state needs no pct and no runtime call).
	type live struct {
		v   *ociVariant
		id  string
		pid int
	}
	var lives []live
	defer func() {
		for _, l := range lives {
			_, _ = b.kill(l.v, l.id)
			if l.pid > 0 {
				_ = waitExit(l.pid, 10*time.Second)
			}
			_, _ = b.verb(l.v, "delete", l.id, "--force")
		}
	}()
	for _, l := range []live{{v: runcNx, id: "runc-startup"}, {v: runcDirect, id: "startup"}} {
		pidFile := filepath.Join(b.dir, l.id+".pid")
		if _, err := b.verb(l.v, "create", l.id, "--bundle", bundle, "--pid-file", pidFile); err != nil {
			return err
		}
		lives = append(lives, l)
		pid, err := readPid(pidFile)
		if err != nil {
			return err
		}
		lives[len(lives)-1].pid = pid
		if _, err := b.verb(l.v, "start", l.id); err != nil {
			return err
		}
	}
	b.logf("startup: containers up")
	pveID := "pve-startup"
	if _, err := b.nexcage(b.pve.env(0), "create", "--bundle", bundle, pveID); err != nil {
		return err
	}
	defer func() { _, _ = b.nexcage(b.pve.env(0), "delete", "--force", pveID) }()

	nx := func(args ...string) []string {
		return append([]string{b.o.Nexcage, "--root", b.pve.nroot, "--config", b.pve.config}, args...)
	}
	// nexcage's own part of a passthrough verb: the same config with runc
	// replaced by true(1), so that `nexcage pause` routes, checks and
	// execs, and the exec'd program does nothing.
	truePath, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	trueCfg, err := b.configWithRuntime("runc", truePath)
	if err != nil {
		return err
	}
	nxTrue := []string{b.o.Nexcage, "--root", b.pve.nroot, "--config", trueCfg, "pause", "runc-startup"}
	front, err := b.execFront()
	if err != nil {
		return err
	}
	cmds := []struct {
		label string
		argv  []string
		env   []string
	}{
		{"`runc state <id>`", []string{runcDirect.bin, "--root", runcDirect.root, "state", "startup"}, nil},
		{"`nexcage state <id>` (routed to runc)", nx("state", "runc-startup"), nil},
		{"`nexcage state <id>` (proxmox-lxc)", nx("state", pveID), b.pve.env(0)},
		{"`runc --version`", []string{runcDirect.bin, "--version"}, nil},
		{"`nexcage --version`", []string{b.o.Nexcage, "--version"}, nil},
		{"`nexcage pause <id>` (routed to runc) with runc replaced by `true`", nxTrue, nil},
		{"`true`", []string{truePath}, nil},
		{"`true` through the exec-only Go front (bench/cmd/execfront)", []string{front, truePath}, nil},
	}
	walls := make([][]time.Duration, len(cmds))
	rss := make([][]int64, len(cmds))
	defer func() { b.r.rss = false }()
	for i := 0; i < b.c.startup+2+b.c.rssRuns; i++ {
		b.r.rss = i >= b.c.startup+2
		for j, c := range cmds {
			s, err := b.r.must(c.env, c.argv...)
			if err != nil {
				return err
			}
			switch {
			case b.r.rss:
				rss[j] = append(rss[j], s.MaxRSSKB)
			case i >= 2:
				walls[j] = append(walls[j], s.Wall)
			}
		}
	}
	b.r.rss = false
	b.logf("startup: measured")
	base := summarize(walls[0]).Median
	t := &Table{Header: []string{"command", "wall (median [min-max])", "peak RSS", "ratio to `runc state`"}}
	for j, c := range cmds {
		st := summarize(walls[j])
		t.add(c.label, fmt.Sprintf("%s [%s-%s]", ms(st.Median), ms(st.Min), ms(st.Max)), kb(medianInt(rss[j])), fmt.Sprintf("%.2f", ratio(st.Median, base)))
	}
	sec.Tables = append(sec.Tables, t)
	sec.Intro = fmt.Sprintf("%d runs of each command (after 2 warm-up rounds), interleaved, against a running busybox container "+
		"(runc directly, and nexcage routed to runc) and a created Proxmox container on pvesim.", b.c.startup)
	own := summarize(walls[5]).Median - summarize(walls[6]).Median
	floorOwn := summarize(walls[7]).Median - summarize(walls[6]).Median
	inits, initClock, err := b.initTrace(nxTrue)
	if err != nil {
		return err
	}
	sec.Notes = append(sec.Notes,
		"`nexcage state` of a runc-routed container reads runc's state directory (state.json, the init's /proc/<pid>/stat, the freezer state, exec.fifo) and its record: no subprocess (issue 16); "+
			"`nexcage state` of a Proxmox container goes to the full command line, nexcage-core (one more exec), which reads the state file and stats the container's .conf, no subprocess. "+
			"`nexcage --version` also goes to nexcage-core.",
		fmt.Sprintf("What remains of a passthrough verb (measured): nexcage's own part, `nexcage pause` ending in an exec of `true` minus `true` alone, is %s: "+
			"the start-up of a %s static Go binary (%d package inits, %s of init clock from GODEBUG=inittrace=1, the rest is the runtime's start and the kernel's exec and page faults) "+
			"plus reading the config (with its owner and mode checks), the record, and the runtime's path checks. "+
			"The exec-only Go front's part (its row minus `true`) is %s: nexcage's own work above what any Go front costs is %s per verb.",
			ms(own), fileSize(b.o.Nexcage), inits, ms(initClock), ms(floorOwn), ms(own-floorOwn)),
		"Where it goes (`perf record` of 300 runs each, runtime replaced by `true`, 2026-12-03; docs/ARCHITECTURE.md has the details): "+
			"in every Go process here, the floor's and runc's too, about a third of the runtime's own start-up is internal/cpu's cpuid (which traps to the hypervisor) "+
			"and Go's cgroup CPU limit lookup (it parses /proc/self/mountinfo in every process); of nexcage's own part, config.Load is about 0.15 ms, "+
			"the runtime-state read (runc's state.json, the init's /proc stat) about 0.2 ms, the path checks and argv the rest, plus about 90 page faults more than the floor. "+
			"create adds bundle.Verify (about 0.05 ms; decoding a whole specs.Spec instead cost 0.75 ms, encoding/json building its tables for the spec's whole type tree) "+
			"and the fork and wait of the runtime (syscall.ForkExec; os/exec's first start in a process forks a throw-away child to check pidfd support).")
	q := ratio(summarize(walls[1]).Median, base)
	b.rep.Targets = append(b.rep.Targets, Target{Section: 2, What: "`nexcage state` (runc-routed) / `runc state`",
		Goal: "<= 1.25", Got: fmt.Sprintf("%.2f", q), Met: q <= 1.25})
	return nil
}

// configWithRuntime writes a copy of the bench's nexcage config with
// runtimes.<name>.path set to path, and returns its file.
func (b *Bench) configWithRuntime(name, path string) (string, error) {
	var cfg map[string]any
	data, err := os.ReadFile(b.pve.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		return "", err
	}
	cfg["runtimes"] = map[string]any{name: map[string]any{"path": path}}
	if data, err = json.Marshal(cfg); err != nil {
		return "", err
	}
	p := filepath.Join(b.dir, "nexcage-"+name+"-"+filepath.Base(path)+".json")
	return p, os.WriteFile(p, data, 0o644)
}

// initTrace runs argv once with GODEBUG=inittrace=1 and returns the
// number of package inits and their summed clock time.
func (b *Bench) initTrace(argv []string) (int, time.Duration, error) {
	s, err := b.r.must([]string{"GODEBUG=inittrace=1"}, argv...)
	if err != nil {
		return 0, 0, err
	}
	n, total := 0, time.Duration(0)
	for _, l := range strings.Split(s.Stderr, "\n") {
		// init <pkg> @<t> ms, <clock> ms clock, ...
		f := strings.Fields(l)
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		if v, err := strconv.ParseFloat(f[4], 64); err == nil {
			n++
			total += time.Duration(v * float64(time.Millisecond))
		}
	}
	return n, total, nil
}

// fileSize is the size of path, for a note.
func fileSize(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20))
}
