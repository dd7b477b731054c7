// Command nexcage-conformance runs the OCI runtime-tools validation suite
// against nexcage routed to each backend (runc, crun, Proxmox on a pvesim
// node as PVE 9.1 and 8.4) and against runc and crun themselves, and
// writes CONFORMANCE.md and conformance/expected.txt (issue 15):
//
//	nexcage-conformance -nexcage bin/nexcage -pvesim bin/pvesim
//
// With -check it is the guard `make test` runs: only the tests
// expected.txt records as passing, only on the variants named by
// -variants (default nexcage-runc, nexcage-pve9.1, nexcage-pve8.4, nexcage-pve9.1-unpriv), and it exits 1
// when one of them does not pass. It must run as root. See
// conformance/README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/conformance"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		nexcage  = flag.String("nexcage", os.Getenv("NEXCAGE_BIN"), "nexcage binary (default $NEXCAGE_BIN)")
		pvesim   = flag.String("pvesim", os.Getenv("PVESIM_BIN"), "pvesim binary (default $PVESIM_BIN)")
		out      = flag.String("out", "CONFORMANCE.md", "report file")
		expected = flag.String("expected", "conformance/expected.txt", "the passing tests: written by a full run, read by -check")
		check    = flag.Bool("check", false, "guard mode: run the tests -expected records as passing and fail when one does not pass")
		variants = flag.String("variants", "", "comma-separated variants (default: all; with -check: nexcage-runc,nexcage-pve9.1,nexcage-pve8.4,nexcage-pve9.1-unpriv)")
		tests    = flag.String("tests", "", "comma-separated tests (default: all of the suite)")
		jsonOut  = flag.String("json", "", "also write the raw results as JSON to this file")
		from     = flag.String("from", "", "render -out and -expected from a -json file instead of running")
		rejudge  = flag.Bool("rejudge", false, "with -from: judge the outputs again (the -json run must have used -keep)")
		keep     = flag.Bool("keep", false, "keep the work directory (each test's output is under <variant>/out)")
		tmp      = flag.String("tmpdir", "", "where to create the work directory (default $TMPDIR or /tmp)")
		timeout  = flag.Duration("timeout", 3*time.Minute, "per test")
	)
	flag.Parse()
	// What make ran, shown in the report.
	command := os.Getenv("CONFORMANCE_COMMAND")
	if command == "" {
		command = strings.Join(append([]string{"nexcage-conformance"}, os.Args[1:]...), " ")
	}
	if *from != "" {
		rep, err := readJSON(*from)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
			return 1
		}
		if rep.Command == "" {
			rep.Command = command
		}
		if *rejudge {
			if err := rep.Rejudge(); err != nil {
				fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
				return 1
			}
		}
		return write(rep, *out, *expected)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nexcage-conformance: must run as root (the suite runs containers)")
		return 2
	}
	// The simulated nodes delegate the suite's id ranges to root, as a
	// Proxmox admin does for a custom idmap (conformance/subid.go).
	if done, code, err := conformance.InNodeNamespace(); err != nil {
		fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
		return 1
	} else if done {
		return code
	}
	o := conformance.Options{Progress: os.Stderr, Keep: *keep, TempDir: *tmp, Timeout: *timeout}
	for _, p := range []*string{nexcage, pvesim} {
		if *p == "" {
			fmt.Fprintln(os.Stderr, "nexcage-conformance: -nexcage and -pvesim are required (make build; make conformance passes them)")
			return 2
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
			return 2
		}
		*p = abs
	}
	o.Nexcage, o.Pvesim = *nexcage, *pvesim
	names := split(*variants)
	if names == nil && *check {
		names = []string{"nexcage-runc", "nexcage-pve9.1", "nexcage-pve8.4", "nexcage-pve9.1-unpriv"}
	}
	if names == nil {
		o.Variants = conformance.Variants
	}
	for _, n := range names {
		v, ok := conformance.VariantByName(n)
		if !ok {
			fmt.Fprintf(os.Stderr, "nexcage-conformance: unknown variant %q\n", n)
			return 2
		}
		o.Variants = append(o.Variants, v)
	}
	o.Tests = split(*tests)
	var want map[string][]string
	if *check {
		var err error
		want, err = conformance.ReadExpected(*expected)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
			return 2
		}
		o.PerTest = want
	} else {
		o.Calibrate = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := conformance.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
		return 1
	}
	rep.Command = command
	if *jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
			return 1
		}
	}
	if *check {
		bad := conformance.Regressions(rep, want)
		for _, b := range bad {
			fmt.Fprintln(os.Stderr, "REGRESSION:", b)
		}
		if len(bad) > 0 {
			fmt.Fprintf(os.Stderr, "nexcage-conformance: %d test(s) recorded as passing in %s failed\n", len(bad), *expected)
			return 1
		}
		fmt.Fprintf(os.Stderr, "nexcage-conformance: every test %s records as passing passed (%s)\n", *expected, rep.Duration)
		return 0
	}
	return write(rep, *out, *expected)
}

func write(rep *conformance.Report, out, expected string) int {
	if err := conformance.WriteFiles(rep, out, expected); err != nil {
		fmt.Fprintln(os.Stderr, "nexcage-conformance:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s\n", out, expected)
	return 0
}

func readJSON(path string) (*conformance.Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep conformance.Report
	return &rep, json.Unmarshal(data, &rep)
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
