package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Options say what to run.
type Options struct {
	Nexcage, Pvesim string // binaries (absolute paths)
	Variants        []Variant
	// Tests limits the run (per variant when set there); nil: every test
	// of the suite.
	Tests   []string
	PerTest map[string][]string // variant name -> tests (guard mode)
	// Calibrate runs the fail-all runtime first (see Calibration).
	Calibrate bool
	TempDir   string
	Keep      bool
	Timeout   time.Duration // per test
	Progress  io.Writer
}

// Result is one test against one variant.
type Result struct {
	Test     string
	Status   Status
	Asserts  int
	Reason   string
	Exit     int
	Duration time.Duration
	Leftover []string // containers the cleanup had to remove
}

// VariantResults are one variant's results in test order.
type VariantResults struct {
	Variant Variant
	Results []Result
	Err     string // the variant could not be set up
}

// Report is a whole run.
type Report struct {
	Suite       *Suite
	Started     time.Time
	Duration    time.Duration
	Calibration map[string]Result // test -> result against fail-all
	Variants    []VariantResults
	WorkDir     string
	Command     string      // how the run was started
	Machine     [][2]string // kernel, cgroups, runtime versions
}

// Run builds the suite and runs it against every variant of o.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	work, err := os.MkdirTemp(o.TempDir, "nexcage-conformance-")
	if err != nil {
		return nil, err
	}
	if !o.Keep {
		defer func() {
			// Never remove through a mount a test left behind.
			unmountUnder(work)
			os.RemoveAll(work)
		}()
	}
	// Traversable by every uid: linux_uid_mappings runs its container as
	// a mapped uid that must reach the bundle (under TMPDIR in here), as
	// it can under /tmp.
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), WorkDir: work, Machine: machine(o.Nexcage)}
	fmt.Fprintf(o.Progress, "building %s@%s in %s\n", SuiteModule, SuiteVersion, work)
	s, err := BuildSuite(ctx, work)
	if err != nil {
		return nil, err
	}
	rep.Suite = s
	tests := o.Tests
	if tests == nil {
		tests = s.Tests
	}
	if o.Calibrate {
		vr := runVariant(ctx, s, &o, Calibration, work, tests)
		rep.Calibration = map[string]Result{}
		for _, r := range vr.Results {
			rep.Calibration[r.Test] = r
		}
	}
	for _, v := range o.Variants {
		ts := tests
		if o.PerTest != nil {
			ts = o.PerTest[v.Name]
		}
		vr := runVariant(ctx, s, &o, v, work, ts)
		if rep.Calibration != nil {
			for i, r := range vr.Results {
				if c, ok := rep.Calibration[r.Test]; ok && r.Status == Pass && c.Status == Pass {
					vr.Results[i].Status = NotCounted
					vr.Results[i].Reason = "passes for a runtime that fails every command too"
				}
			}
		}
		rep.Variants = append(rep.Variants, vr)
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	rep.Duration = time.Since(rep.Started).Round(time.Second)
	return rep, nil
}

func runVariant(ctx context.Context, s *Suite, o *Options, v Variant, work string, tests []string) VariantResults {
	vr := VariantResults{Variant: v}
	e, err := setup(ctx, s, o, v, work)
	if err != nil {
		vr.Err = err.Error()
		fmt.Fprintf(o.Progress, "%s: cannot set up: %v\n", v.Name, err)
		return vr
	}
	defer e.cleanup(context.WithoutCancel(ctx))
	for _, t := range tests {
		if ctx.Err() != nil {
			break
		}
		r := runOne(ctx, s, e, t, o.Timeout)
		r.Leftover = e.cleanup(context.WithoutCancel(ctx))
		fmt.Fprintf(o.Progress, "%-16s %-34s %-5s %4d asserts %6.1fs %s\n", v.Name, t, r.Status, r.Asserts, r.Duration.Seconds(), r.Reason)
		vr.Results = append(vr.Results, r)
	}
	return vr
}

// runOne runs one test program in its own process group (a timeout kills
// the test and whatever runtime command it is waiting for).
func runOne(ctx context.Context, s *Suite, e *env, test string, timeout time.Duration) Result {
	r := Result{Test: test}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := e.command(ctx, filepath.Join(s.Bin, test))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t0 := time.Now()
	err := cmd.Run()
	r.Duration = time.Since(t0)
	_ = os.WriteFile(filepath.Join(e.out, test+".out"), stdout.Bytes(), 0o644)
	_ = os.WriteFile(filepath.Join(e.out, test+".err"), stderr.Bytes(), 0o644)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	default:
		r.Exit = -1
	}
	if ctx.Err() == context.DeadlineExceeded {
		r.Status, r.Asserts = Fail, Parse(stdout.Bytes()).Ok
		r.Reason = fmt.Sprintf("killed after %s (the suite waits at most 10 s for a state)", timeout)
		return r
	}
	if err != nil && ee == nil {
		r.Status, r.Reason = Fail, err.Error()
		return r
	}
	r.Status, r.Asserts, r.Reason = Judge(r.Exit, stdout.Bytes(), stderr.Bytes())
	r.Reason = tidy(r.Reason, e.dir)
	return r
}

// exitKinds are nexcage's exit codes (docs/CLI.md): the suite often keeps
// only "exit status N" of a failed runtime command, not its stderr.
var exitKinds = map[string]string{
	"1": "internal", "2": "usage", "3": "not-found", "4": "already-exists", "5": "invalid-bundle",
	"6": "invalid-config", "7": "template", "8": "backend failed", "9": "locked", "10": "invalid-state",
	"11": "unsupported", "12": "timeout",
}

var exitKindRe = regexp.MustCompile(`exit status ([0-9]+)$`)

func nameExit(m string) string {
	if k, ok := exitKinds[exitKindRe.FindStringSubmatch(m)[1]]; ok {
		return m + " (nexcage: " + k + ")"
	}
	return m
}

// Rejudge judges every result again from the outputs a -keep run left in
// its work directory (after a change of Judge, without running again).
func (rep *Report) Rejudge() error {
	for vi, vr := range rep.Variants {
		dir := filepath.Join(rep.WorkDir, vr.Variant.Name)
		for ri, r := range vr.Results {
			stdout, err := os.ReadFile(filepath.Join(dir, "out", r.Test+".out"))
			if err != nil {
				return fmt.Errorf("rejudge needs the outputs of a -keep run: %w", err)
			}
			stderr, err := os.ReadFile(filepath.Join(dir, "out", r.Test+".err"))
			if err != nil {
				return err
			}
			if r.Status == NotCounted || strings.HasPrefix(r.Reason, "killed after") {
				continue
			}
			st, n, why := Judge(r.Exit, stdout, stderr)
			rep.Variants[vi].Results[ri].Status, rep.Variants[vi].Results[ri].Asserts = st, n
			rep.Variants[vi].Results[ri].Reason = tidy(why, dir)
		}
	}
	return nil
}

var (
	uuidRe   = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	bundleRe = regexp.MustCompile(`\S*/ocitest[0-9]+`)
)

// tidy takes the run's own names out of a reason (container ids, bundle
// and work directories), so that two runs' reports differ only in what
// changed.
func tidy(reason, dir string) string {
	reason = uuidRe.ReplaceAllString(reason, "<id>")
	reason = bundleRe.ReplaceAllString(reason, "<bundle>")
	return strings.ReplaceAll(reason, dir, "<run>")
}
