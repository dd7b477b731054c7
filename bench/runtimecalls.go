package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// callCycle is the runtime calls one nexcage create/start/delete cycle
// made, per nexcage verb, as "verb" strings in order.
type callCycle struct {
	variant string
	byVerb  map[string][]string
}

// countRuntimeCalls runs one extra, untimed cycle of each nexcage variant
// with runc and crun replaced by a wrapper that appends its argv to a log
// before exec'ing the runtime, and returns the runtime verbs each nexcage
// verb ran: counted, not read from the code.
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
		script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '" + log + "'\nexec '" + v.bin + "' \"$@\"\n"
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
	run := func(args ...string) ([]string, error) {
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
		var verbs []string
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if line != "" {
				verbs = append(verbs, runtimeVerb(strings.Fields(line)))
			}
		}
		return verbs, nil
	}
	var out []callCycle
	for _, v := range vs {
		if v.direct {
			continue
		}
		id := v.runtime + "-count"
		pidFile := filepath.Join(dir, id+".pid")
		cc := callCycle{variant: v.name, byVerb: map[string][]string{}}
		calls, err := run("create", "--bundle", bundle, "--pid-file", pidFile, id)
		if err != nil {
			return nil, err
		}
		cc.byVerb["create"] = calls
		pid, err := readPid(pidFile)
		if err == nil {
			cc.byVerb["start"], err = run("start", id)
		}
		if err == nil {
			err = waitExit(pid, 30*time.Second)
		}
		if err == nil {
			cc.byVerb["delete"], err = run("delete", id)
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
