package conformance

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
)

// ReadExpected reads expected.txt: "<variant> <test>" per line, for each
// test that passed (and counted) in the run that wrote it; # comments.
func ReadExpected(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the expected results (run make conformance to write them): %w", err)
	}
	defer f.Close()
	want := map[string][]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"<variant> <test>\", got %q", path, n, line)
		}
		if _, ok := VariantByName(fs[0]); !ok {
			return nil, fmt.Errorf("%s:%d: unknown variant %q", path, n, fs[0])
		}
		want[fs[0]] = append(want[fs[0]], fs[1])
	}
	return want, sc.Err()
}

// expectedText is expected.txt for rep: every counted pass.
func expectedText(rep *Report) string {
	var b strings.Builder
	b.WriteString("# Tests of the runtime-tools suite that passed in the run CONFORMANCE.md\n")
	b.WriteString("# reports, per variant (written by `make conformance`; read by the guard\n")
	b.WriteString("# `make conformance-check`, which fails when one of them stops passing).\n")
	fmt.Fprintf(&b, "# suite %s@%s\n", SuiteModule, rep.suiteVersion())
	for _, vr := range rep.Variants {
		var ts []string
		for _, r := range vr.Results {
			if r.Status == Pass {
				ts = append(ts, r.Test)
			}
		}
		sort.Strings(ts)
		for _, t := range ts {
			fmt.Fprintf(&b, "%s %s\n", vr.Variant.Name, t)
		}
	}
	return b.String()
}

// Regressions are the tests want records as passing that did not pass.
func Regressions(rep *Report, want map[string][]string) []string {
	var bad []string
	for _, vr := range rep.Variants {
		if vr.Err != "" {
			bad = append(bad, fmt.Sprintf("%s: cannot set up: %s", vr.Variant.Name, vr.Err))
			continue
		}
		got := map[string]Result{}
		for _, r := range vr.Results {
			got[r.Test] = r
		}
		for _, t := range want[vr.Variant.Name] {
			r, ok := got[t]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s %s: not run", vr.Variant.Name, t))
			case r.Status != Pass:
				bad = append(bad, fmt.Sprintf("%s %s: %s: %s", vr.Variant.Name, t, r.Status, r.Reason))
			}
		}
	}
	return bad
}
