// Command nexcage-bench measures nexcage side by side with runc, crun and
// the original nexcage's pct usage, and writes BENCHMARKS.md (issue 7).
//
//	nexcage-bench -nexcage bin/nexcage -pvesim bin/pvesim -out BENCHMARKS.md
//
// -quick (or BENCH_QUICK=1) runs every section with tiny counts. It must
// run as root (it runs containers). See bench/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nexcage/nexcage/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		nexcage  = flag.String("nexcage", os.Getenv("NEXCAGE_BIN"), "nexcage binary (default $NEXCAGE_BIN, else built with go build)")
		pvesim   = flag.String("pvesim", os.Getenv("PVESIM_BIN"), "pvesim binary (default $PVESIM_BIN, else built with go build)")
		out      = flag.String("out", "BENCHMARKS.md", "report file (- for stdout)")
		quick    = flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "smoke mode: every section with tiny counts (also BENCH_QUICK=1)")
		sections = flag.String("sections", "", "comma-separated section numbers to run (default: all)")
		keep     = flag.Bool("keep", false, "keep the work directory")
		tmp      = flag.String("tmpdir", "", "where to create the work directory (default $TMPDIR or /tmp)")
	)
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nexcage-bench: must run as root (it runs containers with runc, crun and LXC)")
		return 2
	}
	o := bench.Options{Nexcage: *nexcage, Pvesim: *pvesim, Quick: *quick, Keep: *keep, TempDir: *tmp, Progress: os.Stderr}
	o.Command = strings.Join(append([]string{"nexcage-bench"}, os.Args[1:]...), " ")
	o.Via = os.Getenv("BENCH_COMMAND")
	for _, s := range strings.Split(*sections, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nexcage-bench: -sections: %q is not a number\n", s)
			return 2
		}
		o.Sections = append(o.Sections, n)
	}
	if o.Nexcage == "" || o.Pvesim == "" {
		dir, err := os.MkdirTemp(*tmp, "nexcage-bench-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "nexcage-bench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		nx, pv, err := bench.Build(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nexcage-bench:", err)
			return 1
		}
		if o.Nexcage == "" {
			o.Nexcage = nx
		}
		if o.Pvesim == "" {
			o.Pvesim = pv
		}
	}
	rep, err := bench.Run(o)
	if rep != nil {
		if werr := write(*out, rep); werr != nil {
			fmt.Fprintln(os.Stderr, "nexcage-bench:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexcage-bench:", err)
		return 1
	}
	return 0
}

func write(path string, rep *bench.Report) error {
	if path == "-" {
		return rep.WriteMarkdown(os.Stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".benchmarks-*.md")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := rep.WriteMarkdown(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
