package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is the result of one bench run, written as BENCHMARKS.md.
type Report struct {
	Command string
	Via     string
	// LoadStart and LoadEnd are /proc/loadavg at the start and the end:
	// other work on the host shows in the figures.
	LoadStart, LoadEnd string
	Started            time.Time
	Duration           time.Duration
	Quick              bool
	Machine            [][2]string
	Versions           [][2]string
	Targets            []Target
	Sections           []*Section
}

// Target is one goal of issue 7 and whether this run met it.
type Target struct {
	Section int
	What    string
	Goal    string
	Got     string
	Met     bool
	// Info marks a figure the issue asks to report without a number to
	// meet; Met then only says whether it went the right way.
	Info bool
}

// Section is one numbered part of the report.
type Section struct {
	Num    int
	Title  string
	Intro  string
	Tables []*Table
	Notes  []string
	Err    error
}

// Table is a markdown table.
type Table struct {
	Caption string
	Header  []string
	Rows    [][]string
}

func (t *Table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Figures counts the non-empty data cells of the section's tables.
func (s *Section) Figures() int {
	n := 0
	for _, t := range s.Tables {
		for _, r := range t.Rows {
			for _, c := range r {
				if strings.TrimSpace(c) != "" {
					n++
				}
			}
		}
	}
	return n
}

func yesNo(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}

// WriteMarkdown writes the report.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# nexcage benchmarks\n\n")
	p("Measured side by side in one run by `bench/` (see [bench/README.md](bench/README.md) for how to run and read them).\n")
	if r.Quick {
		p("\n**Smoke mode (`-quick`): tiny counts, the figures are not meaningful.**\n")
	}
	if r.Via != "" {
		p("\n- Command: `%s`, which runs `%s`\n", r.Via, r.Command)
	} else {
		p("\n- Command: `%s`\n", r.Command)
	}
	p("- Date: %s (run took %s)\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration.Round(time.Second))
	for _, kv := range r.Machine {
		p("- %s: %s\n", kv[0], kv[1])
	}
	p("- Load average (1/5/15 min): %s at the start, %s at the end\n", r.LoadStart, r.LoadEnd)
	p("- Versions: ")
	for i, kv := range r.Versions {
		if i > 0 {
			p("; ")
		}
		p("%s `%s`", kv[0], kv[1])
	}
	p("\n\nTimes are medians of the repeated runs (min-max in brackets where useful); ratios are medians over medians. ")
	p("Peak RSS is `ru_maxrss` of the command tree (the larger of the process's own peak and that of every child it waited for, so nexcage routed to runc counts runc too), " +
		"taken in separate runs under `busybox time`: a Go program starts children with vfork, and exec records the parent's peak RSS into the child's `ru_maxrss`, " +
		"so the bench cannot read it from its own wait4. Timing runs are never wrapped.\n\n")

	p("## Targets\n\n| # | what | target | this run | |\n|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		verdict := yesNo(t.Met)
		if t.Info {
			verdict = "(reported)"
		}
		p("| %d | %s | %s | %s | %s |\n", t.Section, t.What, t.Goal, t.Got, verdict)
	}
	p("\n")
	for _, s := range r.Sections {
		p("## %d. %s\n\n", s.Num, s.Title)
		if s.Intro != "" {
			p("%s\n\n", s.Intro)
		}
		if s.Err != nil {
			p("**This section failed:** `%s`\n\n", strings.ReplaceAll(s.Err.Error(), "`", "'"))
		}
		for _, t := range s.Tables {
			if t.Caption != "" {
				p("%s\n\n", t.Caption)
			}
			p("| %s |\n|", strings.Join(t.Header, " | "))
			for range t.Header {
				p("---|")
			}
			p("\n")
			for _, row := range t.Rows {
				p("| %s |\n", strings.Join(row, " | "))
			}
			p("\n")
		}
		for _, n := range s.Notes {
			p("- %s\n", n)
		}
		if len(s.Notes) > 0 {
			p("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
