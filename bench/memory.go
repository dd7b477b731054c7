package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/cli"
)

// memory is section 7: the peak RSS gathered by the other sections, and
// a soak of nexcage's code in this process that watches the heap.
func (b *Bench) memory(sec *Section) error {
	t := &Table{Header: []string{"verb (backend)", "peak RSS (median)", "max", "runs"}}
	for _, k := range b.rssKeys {
		xs := b.rss[k]
		var m int64
		for _, x := range xs {
			m = max(m, x)
		}
		t.add(k, kb(medianInt(xs)), kb(m), strconv.Itoa(len(xs)))
	}
	if len(t.Rows) > 0 {
		t.Caption = "Peak RSS of every command measured in the sections above (the command tree: nexcage plus the runc/crun/pct it waited for)."
		sec.Tables = append(sec.Tables, t)
	}
	return b.soak(sec)
}

// heapPoint is the process's memory after a forced collection.
type heapPoint struct {
	cycle      int
	heapAlloc  uint64
	heapInuse  uint64
	goroutines int
	fds        int
}

func measureHeap(cycle int) heapPoint {
	goruntime.GC()
	debug.FreeOSMemory()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	fds, _ := os.ReadDir("/proc/self/fd")
	return heapPoint{cycle: cycle, heapAlloc: m.HeapAlloc, heapInuse: m.HeapInuse, goroutines: goruntime.NumGoroutine(), fds: len(fds)}
}

// inProc runs nexcage's CLI in this process.
type inProc struct {
	root, config string
	null         *os.File
	// errFile is the CLI's stderr: a file, not a buffer, since a runc
	// container inherits it and would hold a pipe (and exec's copier) open.
	errFile *os.File
}

func (p *inProc) run(args ...string) (string, error) {
	var out bytes.Buffer
	if err := p.errFile.Truncate(0); err != nil {
		return "", err
	}
	if _, err := p.errFile.Seek(0, 0); err != nil {
		return "", err
	}
	a := &cli.App{Stdin: p.null, Stdout: p.null, Stderr: p.errFile}
	verb := args[0]
	if verb == "state" || verb == "list" {
		a.Stdout = &out
	}
	argv := append([]string{"--root", p.root, "--config", p.config}, args...)
	if code := a.Main(context.Background(), argv); code != 0 {
		msg, _ := os.ReadFile(p.errFile.Name())
		return "", fmt.Errorf("nexcage %s (in process): exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(string(msg)))
	}
	return out.String(), nil
}

func (p *inProc) waitStopped(id string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := p.run("state", id)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("state %s: %v: %q", id, err, out)
		}
		if st.Status == "stopped" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not stop within 30s", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// soakCycle is one Proxmox lifecycle plus one runc lifecycle, in process.
func (b *Bench) soakCycle(p *inProc, i int, sleepBundle, trueBundle string) error {
	id := "soak-" + strconv.Itoa(i)
	// create runs the binary: it copies the running nexcage into the
	// container as its init helper, which must be the static nexcage, not
	// this process.
	if _, err := b.r.must(b.pve.env(0), b.o.Nexcage, "--root", p.root, "--config", p.config, "create", "--bundle", sleepBundle, id); err != nil {
		return err
	}
	steps := [][]string{{"start", id}, {"state", id}, {"list"}, {"kill", id, "KILL"}}
	for _, s := range steps {
		if _, err := p.run(s...); err != nil {
			_, _ = p.run("delete", "--force", id)
			return err
		}
	}
	if err := p.waitStopped(id); err != nil {
		_, _ = p.run("delete", "--force", id)
		return err
	}
	if _, err := p.run("delete", id); err != nil {
		return err
	}
	rid := "runc-soak-" + strconv.Itoa(i)
	pidFile := filepath.Join(b.dir, rid+".pid")
	defer os.Remove(pidFile)
	if _, err := p.run("create", "--bundle", trueBundle, "--pid-file", pidFile, rid); err != nil {
		return err
	}
	pid, err := readPid(pidFile)
	if err == nil {
		_, err = p.run("start", rid)
	}
	if err == nil {
		err = waitExit(pid, 30*time.Second)
	}
	if err != nil {
		_, _ = p.run("delete", "--force", rid)
		return err
	}
	_, err = p.run("delete", rid)
	return err
}

func (b *Bench) soak(sec *Section) error {
	sleepBundle, err := b.sleepBundle()
	if err != nil {
		return err
	}
	trueBundle := filepath.Join(b.dir, "bundle-true")
	if !exists(filepath.Join(trueBundle, "config.json")) {
		if err := busyboxBundle(trueBundle, []string{"/bin/true"}); err != nil {
			return err
		}
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	// nexcage's pct calls inherit this process's environment.
	for _, kv := range b.pve.env(0) {
		k, v, _ := strings.Cut(kv, "=")
		old, had := os.LookupEnv(k)
		_ = os.Setenv(k, v)
		defer func() {
			if had {
				_ = os.Setenv(k, old)
			} else {
				_ = os.Unsetenv(k)
			}
		}()
	}
	errFile, err := os.Create(filepath.Join(b.dir, "soak-stderr"))
	if err != nil {
		return err
	}
	defer errFile.Close()
	p := &inProc{root: filepath.Join(b.dir, "soak-root"), config: b.pve.config, null: null, errFile: errFile}
	warm := max(1, b.c.soakCycles/10)
	var pts []heapPoint
	t0 := time.Now()
	for i := 0; i < warm+b.c.soakCycles; i++ {
		if i == warm || (i > warm && (i-warm)%max(1, b.c.soakCycles/4) == 0) {
			pts = append(pts, measureHeap(i-warm))
		}
		if err := b.soakCycle(p, i, sleepBundle, trueBundle); err != nil {
			return fmt.Errorf("soak cycle %d: %w", i, err)
		}
		reapZombies()
	}
	pts = append(pts, measureHeap(b.c.soakCycles))
	elapsed := time.Since(t0)
	t := &Table{Caption: "Heap of the soaking process after a forced GC, by cycle (cycle 0 is after the warm-up).",
		Header: []string{"cycle", "HeapAlloc", "HeapInuse", "goroutines", "open fds"}}
	for _, h := range pts {
		t.add(strconv.Itoa(h.cycle), bytesStr(int64(h.heapAlloc)), bytesStr(int64(h.heapInuse)), strconv.Itoa(h.goroutines), strconv.Itoa(h.fds))
	}
	sec.Tables = append(sec.Tables, t)
	first, last := pts[0], pts[len(pts)-1]
	growth := int64(last.heapAlloc) - int64(first.heapAlloc)
	perCycle := float64(growth) / float64(b.c.soakCycles)
	sec.Intro = fmt.Sprintf("Heap over a soak: nexcage's CLI (`cli.App.Main`, the code the binary runs) is called in the bench's own process, "+
		"the way `test/reliability` TestSoak does it (that soak and `bench/soak`, docs/RELIABILITY.md, are the pass/fail checks; this loop reports figures over the lifecycle verbs), "+
		"%d cycles after %d warm-up cycles (%s). One cycle: a Proxmox container on pvesim (create from a busybox bundle through the binary, "+
		"since create copies the running executable into the container as its init helper; then in process: start, state, list, kill KILL, "+
		"state until stopped, delete) and a runc container in process (create, start, wait, delete).",
		b.c.soakCycles, warm, elapsed.Round(100*time.Millisecond))
	sec.Notes = append(sec.Notes, fmt.Sprintf("Heap growth over the soak: %s in all, %s per cycle; goroutines %d -> %d; open fds %d -> %d.",
		signedBytes(growth), signedBytes(int64(perCycle)), first.goroutines, last.goroutines, first.fds, last.fds))
	ok := growth < 256<<10 && last.goroutines <= first.goroutines && last.fds <= first.fds
	b.rep.Targets = append(b.rep.Targets, Target{Section: 7, What: "heap growth over the soak", Goal: "no steady growth (report)",
		Got: fmt.Sprintf("%s over %d cycles; goroutines %d -> %d; fds %d -> %d", signedBytes(growth), b.c.soakCycles, first.goroutines, last.goroutines, first.fds, last.fds),
		Met: ok, Info: true})
	return nil
}

func signedBytes(n int64) string {
	if n < 0 {
		return "-" + bytesStr(-n)
	}
	return "+" + bytesStr(n)
}
