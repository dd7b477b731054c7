package pve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/nexcage/nexcage/internal/trust"
)

// Option is one `--name value` option of a pct command.
type Option struct {
	Name  string
	Value string
}

// Pct runs the pct command line tool. Every call is one process started
// with an argv (never a shell), bounded by Timeout, with its stderr parsed
// into a *PctError.
type Pct struct {
	// Path of the pct binary ("pct" = looked up on PATH).
	Path string
	// Timeout bounds each pct call; when it expires the whole process
	// group gets SIGTERM, then SIGKILL after KillGrace, and the call fails
	// with errs.KindTimeout. 0 = none.
	Timeout time.Duration
	// KillGrace is how long a pct that got SIGTERM (timeout or cancelled
	// context) has to end before its process group is killed; 0 =
	// DefaultKillGrace. pct forwards SIGTERM to its worker, which rolls
	// back (a create destroys its disks and config); SIGKILL would leave
	// the worker running with the lock held and the disks behind.
	KillGrace time.Duration
	// Retries is how many times a call failing on a container lock or a
	// lock timeout is tried again (0 = never).
	Retries int
	// RetryDelay is the wait before the first retry; it doubles each time.
	RetryDelay time.Duration
	// Env, when not nil, is the environment of pct (nil = inherited).
	Env []string
	// Log receives one debug line per call; nil = discard.
	Log *slog.Logger
}

// Result is what a finished pct call printed.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

var reOptionName = lazyre.New(`^[a-z][a-z0-9_-]*$`)

// CheckVMID validates a VMID the way Proxmox does (100 ..= 999999999).
func CheckVMID(vmid int) error {
	if vmid < 100 || vmid > 999999999 {
		return errs.New(errs.KindInternal, "vmid %d is outside 100..999999999", vmid)
	}
	return nil
}

// optionArgs turns options into argv words, refusing names that are not
// option names and values with control characters.
func optionArgs(opts []Option) ([]string, error) {
	out := make([]string, 0, 2*len(opts))
	for _, o := range opts {
		if !reOptionName.MatchString(o.Name) {
			return nil, errs.New(errs.KindInternal, "invalid pct option name %q", o.Name)
		}
		for _, r := range o.Value {
			if r < 0x20 || r == 0x7f {
				return nil, errs.New(errs.KindInvalidBundle, "value of pct option --%s contains a control character", o.Name)
			}
		}
		out = append(out, "--"+o.Name, o.Value)
	}
	return out, nil
}

// CreateArgs is the argv (without the pct binary) of `pct create`.
func CreateArgs(vmid int, ostemplate string, opts []Option) ([]string, error) {
	if err := CheckVMID(vmid); err != nil {
		return nil, err
	}
	if ostemplate == "" || strings.HasPrefix(ostemplate, "-") || strings.ContainsAny(ostemplate, "\x00\n\r") {
		return nil, errs.New(errs.KindTemplate, "invalid ostemplate %q", ostemplate)
	}
	o, err := optionArgs(opts)
	if err != nil {
		return nil, err
	}
	return append([]string{"create", strconv.Itoa(vmid), ostemplate}, o...), nil
}

// Create runs `pct create <vmid> <ostemplate> [options]`.
func (p *Pct) Create(ctx context.Context, vmid int, ostemplate string, opts []Option) error {
	args, err := CreateArgs(vmid, ostemplate, opts)
	if err != nil {
		return err
	}
	_, err = p.call(ctx, "create", vmid, false, args)
	return err
}

// Start runs `pct start <vmid>`.
func (p *Pct) Start(ctx context.Context, vmid int) error {
	return p.simple(ctx, "start", vmid)
}

// Stop runs `pct stop <vmid>` (immediate kill).
func (p *Pct) Stop(ctx context.Context, vmid int) error {
	return p.simple(ctx, "stop", vmid)
}

// Unlock runs `pct unlock <vmid>`: it removes a stale lock (such as the
// `create` lock a killed pct create leaves) from the container's config.
func (p *Pct) Unlock(ctx context.Context, vmid int) error {
	return p.simple(ctx, "unlock", vmid)
}

// Shutdown runs `pct shutdown <vmid> --timeout N [--forceStop 1]`.
func (p *Pct) Shutdown(ctx context.Context, vmid, timeoutSec int, forceStop bool) error {
	if err := CheckVMID(vmid); err != nil {
		return err
	}
	args := []string{"shutdown", strconv.Itoa(vmid), "--timeout", strconv.Itoa(timeoutSec)}
	if forceStop {
		args = append(args, "--forceStop", "1")
	}
	_, err := p.call(ctx, "shutdown", vmid, false, args)
	return err
}

// DefaultKillGrace is Pct.KillGrace when unset.
const DefaultKillGrace = 10 * time.Second

// DestroyOptions are the flags of `pct destroy`.
type DestroyOptions struct {
	// Purge removes the VMID from backup jobs, replication and HA too.
	Purge bool
	// Force stops a running container first.
	Force bool
	// UnreferencedDisks also frees the volumes of this VMID that the
	// config does not name (those an interrupted create left behind).
	UnreferencedDisks bool
}

// Destroy runs `pct destroy <vmid> [--purge 1] [--force 1]
// [--destroy-unreferenced-disks 1]`.
func (p *Pct) Destroy(ctx context.Context, vmid int, o DestroyOptions) error {
	if err := CheckVMID(vmid); err != nil {
		return err
	}
	args := []string{"destroy", strconv.Itoa(vmid)}
	if o.Purge {
		args = append(args, "--purge", "1")
	}
	if o.Force {
		args = append(args, "--force", "1")
	}
	if o.UnreferencedDisks {
		args = append(args, "--destroy-unreferenced-disks", "1")
	}
	_, err := p.call(ctx, "destroy", vmid, false, args)
	return err
}

// Status runs `pct status <vmid>` and returns "running" or "stopped".
func (p *Pct) Status(ctx context.Context, vmid int) (string, error) {
	if err := CheckVMID(vmid); err != nil {
		return "", err
	}
	res, err := p.call(ctx, "status", vmid, true, []string{"status", strconv.Itoa(vmid)})
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(res.Stdout, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "status:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errs.New(errs.KindBackend, "pct status %d: unexpected output %q", vmid, res.Stdout)
}

// ListEntry is one row of `pct list`.
type ListEntry struct {
	VMID   int
	Status string
	Lock   string
	Name   string
}

// List runs `pct list`.
func (p *Pct) List(ctx context.Context) ([]ListEntry, error) {
	res, err := p.call(ctx, "list", 0, true, []string{"list"})
	if err != nil {
		return nil, err
	}
	return ParseList(res.Stdout), nil
}

// ParseList parses `pct list` output. The lock column is blank for most
// rows and lock names can be long, so rows are split on blanks, not by
// column offsets: 4 fields = with lock, 3 = without.
func ParseList(out string) []ListEntry {
	var rows []ListEntry
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] == "VMID" {
			continue
		}
		id, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		e := ListEntry{VMID: id, Status: f[1]}
		switch len(f) {
		case 3:
			e.Name = f[2]
		case 4:
			e.Lock, e.Name = f[2], f[3]
		}
		rows = append(rows, e)
	}
	return rows
}

// Exec runs `pct exec <vmid> -- argv...` and returns its output; a
// non-zero exit of the command itself is not an error.
func (p *Pct) Exec(ctx context.Context, vmid int, argv []string) (Result, error) {
	if err := CheckVMID(vmid); err != nil {
		return Result{}, err
	}
	if len(argv) == 0 {
		return Result{}, errs.New(errs.KindUsage, "pct exec: no command")
	}
	args := append([]string{"exec", strconv.Itoa(vmid), "--"}, argv...)
	res, err := p.run(ctx, args)
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 {
		if pe := ParseStderr(res.Stderr); pe.Reason != ReasonUnknown {
			pe.Verb, pe.VMID, pe.Args, pe.ExitCode = "exec", vmid, args, res.ExitCode
			return res, pe.Err()
		}
	}
	return res, nil
}

func (p *Pct) simple(ctx context.Context, verb string, vmid int) error {
	if err := CheckVMID(vmid); err != nil {
		return err
	}
	_, err := p.call(ctx, verb, vmid, false, []string{verb, strconv.Itoa(vmid)})
	return err
}

// call runs pct with args; a failure is parsed into a typed error. Lock
// errors are retried; timeouts too when idempotent is true.
func (p *Pct) call(ctx context.Context, verb string, vmid int, idempotent bool, args []string) (Result, error) {
	delay := p.RetryDelay
	if delay <= 0 {
		delay = 500 * time.Millisecond
	}
	for attempt := 0; ; attempt++ {
		res, err := p.run(ctx, args)
		var pe *PctError
		switch {
		case err != nil && errs.KindOf(err) == errs.KindTimeout:
			pe = &PctError{Reason: ReasonTimeout, Text: fmt.Sprintf("timed out after %s", p.Timeout), Stderr: res.Stderr}
		case err != nil:
			return res, err
		case res.ExitCode == 0:
			return res, nil
		default:
			pe = ParseStderr(res.Stderr)
		}
		pe.Verb, pe.VMID, pe.Args, pe.ExitCode = verb, vmid, args, res.ExitCode
		retry := pe.Reason == ReasonLocked || pe.Reason == ReasonLockTimeout ||
			(pe.Reason == ReasonTimeout && idempotent)
		if !retry || attempt >= p.Retries || ctx.Err() != nil {
			return res, pe.Err()
		}
		p.logger().Debug("pct call failed, retrying", "verb", verb, "vmid", vmid, "reason", pe.Text, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return res, pe.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func (p *Pct) logger() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

// maxStderr bounds how much stderr is kept.
const maxStderr = 1 << 20

type capped struct {
	bytes.Buffer
}

func (c *capped) Write(b []byte) (int, error) {
	if room := maxStderr - c.Len(); room > 0 {
		if len(b) > room {
			c.Buffer.Write(b[:room])
		} else {
			c.Buffer.Write(b)
		}
	}
	return len(b), nil
}

// run executes pct once. The error is non-nil only when pct could not be
// run or timed out; a non-zero exit is reported in Result.ExitCode.
func (p *Pct) run(ctx context.Context, args []string) (Result, error) {
	bin := p.Path
	if bin == "" {
		bin = "pct"
	}
	// pct runs as root: refuse one another user could have planted or
	// redirected (the path comes from the config; a name is looked up on
	// PATH). A missing pct is left to exec to report.
	if _, err := trust.LookPath(bin); errs.KindOf(err) == errs.KindInvalidConfig {
		return Result{}, errs.Wrap(errs.KindInvalidConfig, err, "proxmox.pct_path %s: refusing to run it", bin)
	}
	callCtx := ctx
	cancel := func() {}
	if p.Timeout > 0 {
		callCtx, cancel = context.WithTimeout(ctx, p.Timeout)
	}
	defer cancel()
	grace := p.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	cmd := exec.CommandContext(callCtx, bin, args...)
	cmd.Env = p.Env
	// pct's helpers (lxc-start, tar ...) run in its process group. On a
	// timeout or cancel the group gets SIGTERM first: pct forwards it to
	// its worker, which rolls back. Whatever still runs after the grace
	// period is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var (
		mu     sync.Mutex
		ended  bool
		killer *time.Timer
	)
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		mu.Lock()
		defer mu.Unlock()
		killer = time.AfterFunc(grace, func() {
			mu.Lock()
			defer mu.Unlock()
			if !ended {
				p.logger().Warn("pct did not end after SIGTERM; killing it", "args", args, "grace", grace)
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		})
		return syscall.Kill(-pgid, syscall.SIGTERM)
	}
	// Wait gives up on pct's output pipes (held by a child that outlives
	// pct) this long after pct ended or was told to.
	cmd.WaitDelay = grace + 5*time.Second
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	mu.Lock()
	ended = true
	if killer != nil {
		killer.Stop()
	}
	mu.Unlock()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	p.logger().Debug("pct", "args", args, "duration", time.Since(start), "err", err)
	if callCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		return res, errs.New(errs.KindTimeout, "pct %s timed out after %s", strings.Join(args, " "), p.Timeout).
			WithHint("raise proxmox.timeout if the host is slow")
	}
	if ctx.Err() != nil {
		return res, errs.Wrap(errs.KindInternal, ctx.Err(), "pct %s interrupted", args[0])
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		if res.ExitCode < 0 {
			res.ExitCode = 255
		}
	default:
		return res, errs.Wrap(errs.KindBackend, err, "cannot run pct (%s)", bin).
			WithHint("install Proxmox VE's pct or set proxmox.pct_path")
	}
	return res, nil
}
