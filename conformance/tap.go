package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Status is the verdict on one test.
type Status string

// Verdicts. Only Pass counts as passed.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	// Skip: the suite skipped the test itself (every assertion `# SKIP`).
	Skip Status = "skip"
	// NotCounted: the test passes, but it also passes for a runtime that
	// fails every command (see the calibration in Run), so its pass
	// proves nothing.
	NotCounted Status = "not counted"
)

// TAP is what Parse read from a test's standard output. Some tests print
// several TAP documents (linux_cgroups_cpus: one per sub-test, each with
// its own "TAP version 13" and plan); the counts are their sums.
type TAP struct {
	Planned  int  // the sum of the plans' N (1..N); -1 when a document has no plan
	Complete bool // every document has as many test lines as its plan says
	Ok       int  // `ok` lines without a SKIP directive
	NotOk    int
	Skipped  int      // `ok ... # SKIP` lines
	FirstBad string   // description of the first `not ok`
	BadDiag  string   // the error text of the first `not ok`'s diagnostic
	Errors   []string // "error" values of diagnostics (any test line)
}

var (
	planRe = regexp.MustCompile(`^1\.\.(\d+)`)
	testRe = regexp.MustCompile(`^(not ok|ok)\b\s*(\d*)\s*(?:-\s*)?(.*)$`)
	skipRe = regexp.MustCompile(`(?i)#\s*skip`)
)

// Parse reads the top-level TAP of a test's standard output. Indented
// lines (YAML diagnostics, and the TAP of runtimetest nested in them) are
// only looked at for their "error" and "stderr" values.
func Parse(out []byte) TAP {
	t := TAP{Planned: -1}
	type doc struct{ plan, lines int }
	docs := []doc{{plan: -1}}
	var (
		inDiag   bool
		diag     strings.Builder
		lastBad  bool // the diagnostic belongs to the first `not ok`
		sawFirst bool
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if inDiag {
			if trimmed == "..." {
				inDiag = false
				e := diagError(diag.String())
				if e != "" {
					t.Errors = append(t.Errors, e)
				}
				if lastBad && t.BadDiag == "" {
					t.BadDiag = e
				}
				diag.Reset()
				continue
			}
			diag.WriteString(line)
			diag.WriteByte('\n')
			continue
		}
		if trimmed == "---" && strings.HasPrefix(line, " ") {
			inDiag = true
			continue
		}
		if line != trimmed {
			continue
		}
		if strings.HasPrefix(line, "TAP version") {
			if d := docs[len(docs)-1]; d.plan >= 0 || d.lines > 0 {
				docs = append(docs, doc{plan: -1})
			}
			continue
		}
		if m := planRe.FindStringSubmatch(line); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				docs[len(docs)-1].plan = n
			}
			continue
		}
		m := testRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		docs[len(docs)-1].lines++
		lastBad = false
		switch {
		case m[1] == "not ok":
			t.NotOk++
			if !sawFirst {
				sawFirst, lastBad = true, true
				t.FirstBad = strings.TrimSpace(m[3])
			}
		case skipRe.MatchString(m[3]):
			t.Skipped++
		default:
			t.Ok++
		}
	}
	t.Planned, t.Complete = 0, true
	for _, d := range docs {
		if d.plan < 0 {
			t.Planned = -1
			break
		}
		t.Planned += d.plan
		t.Complete = t.Complete && d.lines == d.plan
	}
	return t
}

// diagError is the "error" and "stderr" of a YAML diagnostic (the suite
// writes them as JSON objects), or "" when it has neither.
func diagError(s string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		// Not JSON: a YAML diagnostic; keep it only if it names an error.
		if strings.Contains(s, "error") {
			return strings.TrimSpace(s)
		}
		return ""
	}
	var parts []string
	for _, k := range []string{"error", "stderr"} {
		if v, ok := m[k].(string); ok && strings.TrimSpace(v) != "" {
			parts = append(parts, strings.TrimSpace(v))
		}
	}
	return strings.Join(parts, "\n")
}

// Judge decides one test from its exit code and output:
//   - it passes only when it exits 0, prints a plan whose count equals the
//     number of test lines, prints no `not ok`, and asserted something
//     (an `ok` that is not a SKIP);
//   - a `1..0` plan (the hook and lifecycle tests assert by returning
//     errors, which they print as an "error" diagnostic) passes only when
//     no diagnostic names an error and nothing was written to stderr (the
//     poststop test, for one, only prints a WARNING there when the hook
//     never ran);
//   - a test whose every line is a SKIP is skipped, not passed.
func Judge(exit int, stdout, stderr []byte) (Status, int, string) {
	t := Parse(stdout)
	errText := firstError(string(stderr))
	switch {
	case exit != 0:
		reason := fmt.Sprintf("exit %d", exit)
		if e := errText; e != "" {
			reason += ": " + e
		} else if len(t.Errors) > 0 {
			reason += ": " + firstError(t.Errors[0])
		}
		return Fail, t.Ok, reason
	case t.Planned < 0:
		return Fail, t.Ok, "no TAP plan" + suffix(errText)
	case t.NotOk > 0:
		reason := fmt.Sprintf("%d of %d not ok, first: %s", t.NotOk, t.Planned, t.FirstBad)
		detail := firstError(t.BadDiag)
		// The suite often keeps only "exit status N" of the runtime
		// command; the runtime's own words may be on the test's stderr.
		if (detail == "" || bareExitRe.MatchString(detail) || bareExitRe.MatchString(t.FirstBad)) && errText != "" && !bareExitRe.MatchString(errText) {
			detail = errText
		}
		if detail != "" {
			reason += ": " + detail
		}
		return Fail, t.Ok, reason
	case !t.Complete:
		return Fail, t.Ok, fmt.Sprintf("incomplete plan: %d of %d test lines", t.Ok+t.Skipped, t.Planned) + suffix(errText)
	case t.Planned == 0:
		if len(t.Errors) > 0 {
			return Fail, 0, firstError(t.Errors[0])
		}
		if strings.TrimSpace(string(stderr)) != "" {
			return Fail, 0, "1..0 with output on stderr: " + errText
		}
		return Pass, 0, ""
	case t.Ok == 0:
		return Skip, 0, "every assertion skipped"
	}
	return Pass, t.Ok, ""
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

var (
	bareExitRe  = regexp.MustCompile(`^exit status [0-9]+$`)
	logNoiseRe  = regexp.MustCompile(`level="?(info|warning|debug)`) // a runtime's log line, not its error
	logrusMsgRe = regexp.MustCompile(`level=error msg="((?:[^"\\]|\\.)*)"`)
	nexcageRe   = regexp.MustCompile(`(?m)^nexcage: .*$`)
)

// firstError picks the most telling line of a runtime's error output:
// nexcage's own `nexcage: ...` line, else a logrus error message (runc),
// else the first line that is not the suite's generic "failed to ...".
func firstError(s string) string {
	if m := nexcageRe.FindString(s); m != "" {
		return strings.TrimSpace(m)
	}
	if m := logrusMsgRe.FindStringSubmatch(s); m != nil {
		if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
			return u
		}
		return m[1]
	}
	var fallback string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Refer to:") || logNoiseRe.MatchString(l) {
			continue
		}
		if strings.HasPrefix(l, "failed to ") && fallback == "" {
			fallback = l
			continue
		}
		return l
	}
	return fallback
}
