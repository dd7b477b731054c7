package bench

import (
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

// verb runs one lifecycle verb of variant v on id.
func (b *Bench) verb(v *ociVariant, verb, id string, extra ...string) (Sample, error) {
	args := append(append([]string{verb}, extra...), id)
	if !v.direct {
		return b.nexcage(nil, args...)
	}
	argv := append([]string{v.bin, "--root", v.root}, args...)
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
	if !v.direct {
		return b.nexcage(nil, "kill", id, "KILL")
	}
	return b.r.must(nil, v.bin, "--root", v.root, "kill", id, "KILL")
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
		"%d cycles per variant after %d warm-up cycles, the four variants interleaved. "+
		"The bench is a child subreaper, so the container's init is its child and the wait is a wait4 on its pid (no polling).", b.c.cycles, b.c.warmup)
	if hybrid {
		sec.Intro += " This host has the hybrid cgroup layout crun rejects, so `crun create` runs through the same workaround for both: " +
			"in a new mount namespace (CLONE_NEWNS), `nexcage " + ocirun.HelperVerb + "` detaches /sys/fs/cgroup/unified and execs crun. " +
			"For \"crun directly\" the bench starts that helper itself; for \"nexcage -> crun\" nexcage does (its `auto` setting). runc needs no workaround."
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
		if !v.direct {
			r = fmt.Sprintf("**%.2f**", ratio(ts.Median, med[vs[0]]))
			if v.runtime == "crun" {
				r = fmt.Sprintf("**%.2f**", ratio(ts.Median, med[vs[2]]))
			}
		}
		t.add(v.name, ms(summarize(cr).Median), ms(summarize(st).Median), ms(summarize(wt).Median), ms(summarize(dl).Median),
			fmt.Sprintf("%s [%s-%s]", ms(ts.Median), ms(ts.Min), ms(ts.Max)), r)
	}
	sec.Tables = append(sec.Tables, t)
	calls, err := b.countRuntimeCalls(vs, bundle)
	if err != nil {
		return fmt.Errorf("counting runtime calls: %w", err)
	}
	ct := &Table{Caption: "Runtime calls per cycle, counted in one extra untimed cycle per nexcage variant in which runc and crun are a wrapper that logs its argv and execs the runtime (\"directly\" is one call per verb by construction).",
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
			row = append(row, cell)
		}
		ct.add(append(row, strconv.Itoa(n))...)
	}
	ct.add("runc or crun directly", "`create`", "`start`", "`delete`", "3")
	sec.Tables = append(sec.Tables, ct)
	for _, pair := range [][2]int{{1, 0}, {3, 2}} {
		nx, rt := vs[pair[0]], vs[pair[1]]
		q := ratio(med[nx], med[rt])
		b.rep.Targets = append(b.rep.Targets, Target{Section: 1, What: "passthrough cycle, " + nx.name + " / " + rt.name,
			Goal: "<= 1.10", Got: fmt.Sprintf("%.2f (%s vs %s, +%s per cycle)", q, ms(med[nx]), ms(med[rt]), ms(med[nx]-med[rt])), Met: q <= 1.10})
	}
	sec.Notes = append(sec.Notes,
		"Where the rest of the difference comes from (read from the code, not measured here): each nexcage verb is one more process start-up (section 2: about a `runc --version`), "+
			"a config load and a per-id lock; create also loads and validates the bundle's config.json, writes the state file twice "+
			"(a `creating` checkpoint before the runtime runs, then the result; each an atomic write with fsync) and gives the runtime a private JSON log (to report its error) and pid file; "+
			"delete removes the state file. start and kill write nothing: runc/crun hold the live status.",
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
	sec.Notes = append(sec.Notes,
		"`nexcage state` of a runc-routed container runs one `runc state <id>` for its live status, so it costs a nexcage start-up plus a runc call; "+
			"`nexcage state` of a Proxmox container reads the state file and stats the container's .conf, no subprocess.")
	q := ratio(summarize(walls[1]).Median, base)
	b.rep.Targets = append(b.rep.Targets, Target{Section: 2, What: "`nexcage state` (runc-routed) / `runc state`",
		Goal: "report the ratio", Got: fmt.Sprintf("%.2f", q), Met: true, Info: true})
	return nil
}
