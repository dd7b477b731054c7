// Package health checks that a host can run nexcage: the config, the
// state root, the Proxmox tools and files, the bridge, runc and crun, the
// cgroup layout, the LXC tools and the routing rules. Each check gives
// PASS, WARN or FAIL and one line of advice. Every side effect (looking up
// and running commands, sysfs, filesystem types) goes through Env so that
// tests run the checks on fake trees.
package health

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/config"
)

// Status is the outcome of one check.
type Status string

// Check outcomes, from best to worst.
const (
	Pass Status = "PASS"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Exit statuses of `nexcage health` (documented in docs/CLI.md).
const (
	ExitPass = 0 // every check passed
	ExitFail = 1 // at least one check failed
	ExitWarn = 2 // no failure, at least one warning
)

// Result is one check's outcome: what was found (Detail) and, unless it
// passed, what to do about it (Advice).
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Advice string `json:"advice,omitempty"`
}

// Report is the outcome of every check, in the order they ran.
type Report struct {
	Status Status   `json:"status"` // worst status of all checks
	Config string   `json:"config"` // config file used ("" for defaults)
	Checks []Result `json:"checks"`
}

// ExitCode is 0 when every check passed, 1 when one failed, 2 when there
// were only warnings.
func (r *Report) ExitCode() int {
	switch r.Status {
	case Fail:
		return ExitFail
	case Warn:
		return ExitWarn
	}
	return ExitPass
}

// Find returns the result of the check called name.
func (r *Report) Find(name string) (Result, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Result{}, false
}

// WriteText prints one aligned line per check, its advice below it, and
// a summary line.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	counts := map[Status]int{}
	for _, c := range r.Checks {
		counts[c.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Status, c.Name, c.Detail)
		if c.Advice != "" {
			fmt.Fprintf(tw, "\t\t-> %s\n", c.Advice)
		}
	}
	fmt.Fprintf(tw, "\n%s: %d passed, %d warnings, %d failed\n", r.Status, counts[Pass], counts[Warn], counts[Fail])
	return tw.Flush()
}

// WriteJSON prints the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// Env is what the checks look at. Run fills unset fields with the real
// host's (see withDefaults).
type Env struct {
	// Config is the loaded configuration; when ConfigErr is set it holds
	// the defaults the other checks fall back to.
	Config         *config.Config
	ConfigErr      error
	ConfigWarnings []string

	// Root is the state root (--root).
	Root string
	// SampleID is the container id the routing check routes.
	SampleID string

	// LookPath finds a command (exec.LookPath).
	LookPath func(file string) (string, error)
	// Command runs a command and returns its stdout and stderr.
	Command func(ctx context.Context, path string, args ...string) (stdout, stderr []byte, err error)
	// Timeout bounds each command.
	Timeout time.Duration

	// SysRoot is where sysfs is mounted (/sys); bridges are under
	// SysRoot/class/net.
	SysRoot string
	// CgroupRoot is where the cgroup hierarchies are mounted (/sys/fs/cgroup).
	CgroupRoot string
	// FSType returns the filesystem magic of path (statfs f_type).
	FSType func(path string) (int64, error)
}

// DefaultSampleID is the container id routed when none is given.
const DefaultSampleID = "example"

func (e *Env) withDefaults() {
	if e.Config == nil {
		e.Config = config.Default()
	}
	if e.SampleID == "" {
		e.SampleID = DefaultSampleID
	}
	if e.LookPath == nil {
		e.LookPath = exec.LookPath
	}
	if e.Command == nil {
		e.Command = runCommand
	}
	if e.Timeout <= 0 {
		e.Timeout = 20 * time.Second
	}
	if e.SysRoot == "" {
		e.SysRoot = "/sys"
	}
	if e.CgroupRoot == "" {
		e.CgroupRoot = "/sys/fs/cgroup"
	}
	if e.FSType == nil {
		e.FSType = statfsType
	}
}

// maxOutput bounds what is kept of a command's output.
const maxOutput = 64 << 10

// runCommand runs path with args, no stdin, and returns its output.
func runCommand(ctx context.Context, path string, args ...string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within the timeout: %w", ctx.Err())
	}
	return stdout.Bytes(), stderr.Bytes(), err
}

// capped keeps the first maxOutput bytes written to it.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func statfsType(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Type), nil
}

// check is one named check.
type check struct {
	name string
	run  func(ctx context.Context, e *Env) Result
}

// checks in the order they run and print.
var checks = []check{
	{"config", checkConfig},
	{"state-root", checkStateRoot},
	{"pct", toolCheck("pct", func(c *config.Config) string { return c.Proxmox.PctPath }, "list")},
	{"pveam", toolCheck("pveam", func(c *config.Config) string { return c.Proxmox.PveamPath }, "available")},
	{"pvesh", toolCheck("pvesh", func(c *config.Config) string { return c.Proxmox.PveshPath }, "get", "/cluster/nextid")},
	{"pve-version", checkPveVersion},
	{"etc-pve", checkEtcPve},
	{"storage", checkRootdirStorage},
	{"template-storage", checkTemplateStorage},
	{"bridge", checkBridge},
	{"cgroup", checkCgroup},
	{"runc", runtimeCheck(config.BackendRunc)},
	{"crun", runtimeCheck(config.BackendCrun)},
	{"lxc-tools", checkLxcTools},
	{"routing", checkRouting},
}

// Run runs every check against e and returns the report.
func Run(ctx context.Context, e Env) *Report {
	e.withDefaults()
	r := &Report{Status: Pass, Config: e.Config.Path}
	for _, c := range checks {
		res := c.run(ctx, &e)
		res.Name = c.name
		if res.Status == Pass {
			res.Advice = ""
		}
		r.Checks = append(r.Checks, res)
		r.Status = worst(r.Status, res.Status)
	}
	return r
}

func worst(a, b Status) Status {
	rank := map[Status]int{Pass: 0, Warn: 1, Fail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func pass(format string, args ...any) Result {
	return Result{Status: Pass, Detail: fmt.Sprintf(format, args...)}
}

func result(s Status, detail, advice string) Result {
	return Result{Status: s, Detail: detail, Advice: advice}
}

// lastLine is the last non-empty line of out, for error details.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
