package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/version"
)

// selfStartTime is field 22 of /proc/self/stat.
func selfStartTime() (string, error) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return "", err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/self/stat: %q", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/self/stat: %q", s)
	}
	return f[19], nil
}

// populate writes state files and pvesim configs for containers
// [from, to) straight to disk: every other one "running" with the bench's
// own pid (so refresh checks a live /proc entry), the rest "created".
func populate(e *pveEnv, from, to int) error {
	start, err := selfStartTime()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(e.confDir(), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(e.nroot, 0o700); err != nil {
		return err
	}
	vmlistPath := filepath.Join(e.root, "etc/pve/.vmlist")
	vl, err := pve.ReadVMList(vmlistPath)
	if err != nil {
		return err
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := from; i < to; i++ {
		id := fmt.Sprintf("ct-%05d", i)
		vmid := 1000 + i
		c := &state.Container{
			OCIVersion: version.SpecVersion, ID: id, Status: state.Created, Bundle: "/srv/bundles/" + id,
			Created: created, Owner: "root", Backend: "proxmox-lxc",
			Data: map[string]string{"vmid": strconv.Itoa(vmid), "node": "pve", "ostemplate": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"},
		}
		if i%2 == 1 {
			c.Status, c.Pid = state.Running, os.Getpid()
			c.Data["pid_start"] = start
		}
		data, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return err
		}
		dir := filepath.Join(e.nroot, id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, state.StateFile), append(data, '\n'), 0o600); err != nil {
			return err
		}
		conf := fmt.Sprintf("arch: amd64\nhostname: %s\nmemory: 512\nnet0: name=eth0,bridge=vmbr0,ip=dhcp\nostype: unmanaged\n"+
			"rootfs: local:%d/vm-%d-disk-0.raw,size=4G\ntags: nexcage\nunprivileged: 1\n", id, vmid, vmid)
		if err := os.WriteFile(filepath.Join(e.confDir(), strconv.Itoa(vmid)+".conf"), []byte(conf), 0o640); err != nil {
			return err
		}
		vl.Add(vmid, pve.VMListEntry{Node: "pve", Type: "lxc", Version: 1})
	}
	return vl.Write(vmlistPath)
}

// scale is section 5.
func (b *Bench) scale(sec *Section) error {
	e, err := newPveEnv(filepath.Join(b.dir, "scale"), b.o.Pvesim)
	if err != nil {
		return err
	}
	// A control node with 10 containers: its `state` runs interleaved
	// with the big one's, so host drift cancels out of their ratio.
	ctl, err := newPveEnv(filepath.Join(b.dir, "scale-ctl"), b.o.Pvesim)
	if err != nil {
		return err
	}
	if err := populate(ctl, 0, 10); err != nil {
		return err
	}
	nx := func(e *pveEnv, args ...string) []string {
		return append([]string{b.o.Nexcage, "--root", e.nroot, "--config", e.config}, args...)
	}
	type point struct {
		n                 int
		list, state, ctl  stats
		listRSS, stateRSS int64
		rows              int
	}
	var pts []point
	have := 0
	defer func() { b.r.rss = false }()
	for _, n := range b.c.scaleNs {
		if err := populate(e, have, n); err != nil {
			return err
		}
		have = n
		var lw, sw, cw []time.Duration
		var lr, sr []int64
		p := point{n: n}
		// Run 0 warms the page cache; the last runs are under busybox
		// time, for the peak RSS only.
		for i := 0; i < b.c.scaleReps+1+b.c.rssRuns; i++ {
			b.r.rss = i > b.c.scaleReps
			ls, err := b.r.must(e.env(0), nx(e, "list")...)
			if err != nil {
				return err
			}
			ss, err := b.r.must(e.env(0), nx(e, "state", "ct-00001")...)
			if err != nil {
				return err
			}
			cs, err := b.r.must(ctl.env(0), nx(ctl, "state", "ct-00001")...)
			if err != nil {
				return err
			}
			switch {
			case i == 0:
				p.rows = strings.Count(ls.Stdout, "\n") - 1
			case b.r.rss:
				lr, sr = append(lr, ls.MaxRSSKB), append(sr, ss.MaxRSSKB)
			default:
				lw, sw, cw = append(lw, ls.Wall), append(sw, ss.Wall), append(cw, cs.Wall)
			}
		}
		b.r.rss = false
		if p.rows != n {
			return fmt.Errorf("list with %d containers printed %d rows", n, p.rows)
		}
		p.list, p.state, p.ctl = summarize(lw), summarize(sw), summarize(cw)
		p.listRSS, p.stateRSS = medianInt(lr), medianInt(sr)
		b.addRSS(fmt.Sprintf("list, %d containers (proxmox-lxc)", n), Sample{MaxRSSKB: p.listRSS})
		b.addRSS(fmt.Sprintf("state, %d containers known (proxmox-lxc)", n), Sample{MaxRSSKB: p.stateRSS})
		pts = append(pts, p)
		b.logf("scale %d: list %s, state %s", n, ms(p.list.Median), ms(p.state.Median))
	}
	t := &Table{Header: []string{"containers known", "`list` (median [min-max])", "`list` per container", "`list` peak RSS", "`state <id>` (median [min-max])",
		"`state` with 10 known, same runs", "ratio", "`state` peak RSS"}}
	for _, p := range pts {
		t.add(strconv.Itoa(p.n), fmt.Sprintf("%s [%s-%s]", ms(p.list.Median), ms(p.list.Min), ms(p.list.Max)),
			fmt.Sprintf("%.1f µs", float64(p.list.Median)/float64(time.Microsecond)/float64(p.n)), kb(p.listRSS),
			fmt.Sprintf("%s [%s-%s]", ms(p.state.Median), ms(p.state.Min), ms(p.state.Max)),
			ms(p.ctl.Median), fmt.Sprintf("%.2f", ratio(p.state.Median, p.ctl.Median)), kb(p.stateRSS))
	}
	sec.Tables = append(sec.Tables, t)
	sec.Intro = fmt.Sprintf("The containers are written straight to disk (nexcage state files plus pvesim .conf files and .vmlist entries); "+
		"half are `created`, half `running` with a live pid (the bench's own), so `list` checks /proc for them. "+
		"%d runs per size after one warm-up run; `state` asks for one container, and each of its runs is paired with one on a control node "+
		"that has 10 containers, so that load on the host cancels out of their ratio.", b.c.scaleReps)

	find := func(n int) (point, bool) {
		for _, p := range pts {
			if p.n == n {
				return p, true
			}
		}
		return point{}, false
	}
	if p, ok := find(1000); ok {
		b.rep.Targets = append(b.rep.Targets, Target{Section: 5, What: "`list` with 1000 containers", Goal: "< 100 ms",
			Got: ms(p.list.Median), Met: p.list.Median < 100*time.Millisecond})
	}
	if len(pts) >= 3 {
		a, m, z := pts[len(pts)-3], pts[len(pts)-2], pts[len(pts)-1]
		low := float64(m.list.Median-a.list.Median) / float64(m.n-a.n)
		high := float64(z.list.Median-m.list.Median) / float64(z.n-m.n)
		lin := high <= 1.5*low
		b.rep.Targets = append(b.rep.Targets, Target{Section: 5, What: "`list` grows linearly", Goal: fmt.Sprintf("marginal cost per container %d->%d <= 1.5x that of %d->%d", m.n, z.n, a.n, m.n),
			Got: fmt.Sprintf("%.1f µs vs %.1f µs per container", high/1e3, low/1e3), Met: lin})
		sec.Notes = append(sec.Notes, fmt.Sprintf("Marginal `list` cost: %.1f µs per container from %d to %d, %.1f µs from %d to %d.", low/1e3, a.n, m.n, high/1e3, m.n, z.n))
	}
	if len(pts) > 0 {
		l := pts[len(pts)-1]
		q := ratio(l.state.Median, l.ctl.Median)
		b.rep.Targets = append(b.rep.Targets, Target{Section: 5, What: "`state` flat in the number of containers",
			Goal: fmt.Sprintf("state with %d known / with 10 known (paired runs) <= 1.25", l.n),
			Got:  fmt.Sprintf("%.2f (%s vs %s)", q, ms(l.state.Median), ms(l.ctl.Median)), Met: q <= 1.25})
	}
	return nil
}
