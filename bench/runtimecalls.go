package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// callCycle is the runtime calls one nexcage create/start/delete cycle
// made, per nexcage verb, as "verb" strings in order, and how each verb
// ran its runtime (procs).
type callCycle struct {
	variant string
	byVerb  map[string][]string
	procs   map[string]string
}

// runtimeProc is one runtime process as the wrapper saw it: its pid, its
// parent, its grandparent and the parent's live children then.
type runtimeProc struct {
	pid, ppid, pppid int
	kids             []int
	verb             string
}

// procOf tells how a nexcage verb ran its runtime calls, from the bench's
// own pid (the caller of nexcage): "exec" when nexcage became the runtime
// (the runtime's pid is nexcage's, its parent the bench), "child" when
// the runtime was nexcage's only child. Anything else (another runtime
// call, a helper between nexcage and the runtime, another child of
// nexcage alongside) is an error: issue 16 wants each runc/crun-routed
// verb to start exactly one runtime process and no other child.
func procOf(verb string, calls []runtimeProc, self int) (string, error) {
	if len(calls) != 1 {
		return "", fmt.Errorf("nexcage %s started %d runtime processes, want exactly 1", verb, len(calls))
	}
	c := calls[0]
	switch {
	case c.ppid == self:
		return "exec", nil
	case c.pppid == self && len(c.kids) == 1 && c.kids[0] == c.pid:
		return "child", nil
	}
	return "", fmt.Errorf("nexcage %s: the runtime (pid %d, parent %d, grandparent %d; the parent's children %v) is neither nexcage itself nor its only child (bench pid %d)",
		verb, c.pid, c.ppid, c.pppid, c.kids, self)
}

// countRuntimeCalls runs one extra, untimed cycle of each nexcage variant
// with runc and crun replaced by a wrapper that appends its argv to a log
// before exec'ing the runtime, and returns the runtime verbs each nexcage
// verb ran: counted, not read from the code. The wrapper also logs its
// pid, parent, grandparent and its parent's children, from which procOf
// checks that each verb started exactly one runtime process and no other
// child.
func (b *Bench) countRuntimeCalls(vs []*ociVariant, bundle string) ([]callCycle, error) {
	dir := filepath.Join(b.dir, "count-calls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	log := filepath.Join(dir, "calls.log")
	runtimes := map[string]any{}
	for _, v := range vs {
		if !v.direct {
			continue
		}
		wrapper := filepath.Join(dir, v.runtime)
		if strings.ContainsAny(wrapper+log+v.bin, "'\n") {
			return nil, fmt.Errorf("count calls: unexpected characters in %s", dir)
		}
		script := "#!/bin/sh\n" +
			"pppid=$(read -r st < /proc/$PPID/stat; set -- ${st##*) }; echo $2)\n" +
			"kids=$(cat /proc/$PPID/task/*/children 2>/dev/null)\n" +
			"printf '%s %s %s %s | %s\\n' $$ $PPID \"$pppid\" \"$(echo $kids | tr ' ' ,)\" \"$*\" >> '" + log + "'\n" +
			"exec '" + v.bin + "' \"$@\"\n"
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			return nil, err
		}
		runtimes[v.runtime] = map[string]any{"path": wrapper}
	}
	var cfg map[string]any
	data, err := os.ReadFile(b.pve.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		return nil, err
	}
	cfg["runtimes"] = runtimes
	if data, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "nexcage.json")
	if err := os.WriteFile(config, data, 0o644); err != nil {
		return nil, err
	}
	run := func(args ...string) ([]runtimeProc, error) {
		if err := os.WriteFile(log, nil, 0o644); err != nil {
			return nil, err
		}
		if _, err := b.r.must(nil, append([]string{b.o.Nexcage, "--root", b.pve.nroot, "--config", config}, args...)...); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(log)
		if err != nil {
			return nil, err
		}
		var procs []runtimeProc
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if line == "" {
				continue
			}
			ids, argv, ok := strings.Cut(line, " | ")
			f := strings.Fields(ids)
			if !ok || len(f) < 3 {
				return nil, fmt.Errorf("count calls: bad wrapper line %q", line)
			}
			p := runtimeProc{verb: runtimeVerb(strings.Fields(argv))}
			p.pid, _ = strconv.Atoi(f[0])
			p.ppid, _ = strconv.Atoi(f[1])
			p.pppid, _ = strconv.Atoi(f[2])
			if len(f) > 3 {
				for _, k := range strings.Split(f[3], ",") {
					if n, err := strconv.Atoi(k); err == nil {
						p.kids = append(p.kids, n)
					}
				}
			}
			procs = append(procs, p)
		}
		return procs, nil
	}
	self := os.Getpid()
	verbsOf := func(ps []runtimeProc) []string {
		var vs []string
		for _, p := range ps {
			vs = append(vs, p.verb)
		}
		return vs
	}
	var out []callCycle
	for _, v := range vs {
		if v.direct {
			continue
		}
		id := v.runtime + "-count"
		pidFile := filepath.Join(dir, id+".pid")
		cc := callCycle{variant: v.name, byVerb: map[string][]string{}, procs: map[string]string{}}
		record := func(verb string, args ...string) error {
			ps, err := run(append([]string{verb}, args...)...)
			if err != nil {
				return err
			}
			cc.byVerb[verb] = verbsOf(ps)
			if cc.procs[verb], err = procOf(verb, ps, self); err != nil {
				return err
			}
			// create waits for its runtime (to undo and report a failure
			// or an interrupt); every other verb becomes the runtime.
			want := "exec"
			if verb == "create" {
				want = "child"
			}
			if cc.procs[verb] != want {
				return fmt.Errorf("nexcage %s: the runtime ran as %q, want %q", verb, cc.procs[verb], want)
			}
			return nil
		}
		err := record("create", "--bundle", bundle, "--pid-file", pidFile, id)
		var pid int
		if err == nil {
			pid, err = readPid(pidFile)
		}
		if err == nil {
			err = record("start", id)
		}
		if err == nil {
			err = waitExit(pid, 30*time.Second)
		}
		if err == nil {
			err = record("delete", id)
		}
		if err != nil {
			_, _ = b.nexcage(nil, "delete", "--force", id)
			return nil, err
		}
		out = append(out, cc)
	}
	return out, nil
}

// runtimeVerb is the verb of a runc/crun argv (without the program):
// the first word that is neither a global flag nor a flag's value.
func runtimeVerb(argv []string) string {
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--root" || a == "--log" || a == "--log-format" || a == "--criu":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return "?"
}
