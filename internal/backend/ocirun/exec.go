package ocirun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/nexcage/nexcage/internal/runtime"
)

// globals are the runtime's global flags for one call. logPath/logFormat
// override the configured log (create and run use their own log when the
// caller gave none, to learn why the runtime failed).
func (b *Backend) globals(logPath, logFormat string) []string {
	args := []string{"--root", b.o.Root}
	if logPath != "" {
		args = append(args, "--log", logPath)
		if logFormat != "" {
			args = append(args, "--log-format", logFormat)
		}
	}
	if b.o.Debug {
		args = append(args, "--debug")
	}
	if b.o.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	if b.o.Rootless != "" {
		args = append(args, "--rootless="+b.o.Rootless)
	}
	return args
}

// command builds the exec.Cmd for argv; with workaround it re-executes
// nexcage as the hybrid-cgroup helper in a new mount namespace (see
// hybrid.go), which then execs the runtime.
func (b *Backend) command(ctx context.Context, argv []string, workaround bool) (*exec.Cmd, error) {
	if !workaround {
		return exec.CommandContext(ctx, b.path, argv...), nil
	}
	self := b.o.SelfExe
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, errs.Wrap(errs.KindInternal, err, "cannot find the nexcage binary for the crun cgroup helper")
		}
	}
	cmd := exec.CommandContext(ctx, self, append([]string{HelperVerb, b.path}, argv...)...)
	// The child starts in a private mount namespace: Go makes "/"
	// recursively private there before exec.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

// result of an attached call.
type result struct {
	code   int
	logErr string // last error message the runtime logged during the call
}

// attached runs verb with the caller's stdio. For create and run it also
// reads the runtime's log to learn why it failed: the caller's --log when
// given, else a private temporary JSON log in stateDir (see tempDir).
func (b *Backend) attached(ctx context.Context, verb string, args []string, stdio runtime.Stdio, workaround bool, onStart func(*os.Process), stateDir string) (result, error) {
	var res result
	logPath, logFormat := b.o.Log, b.o.LogFormat
	var offset int64
	watchLog := verb == "create" || verb == "run"
	if watchLog {
		if logPath == "" {
			dir, err := b.tempDir(stateDir)
			if err != nil {
				return res, err
			}
			f, err := os.CreateTemp(dir, ".log-*.json")
			if err != nil {
				return res, errs.Wrap(errs.KindInternal, err, "cannot create a log file for %s", b.o.Name)
			}
			_ = f.Close()
			defer os.Remove(f.Name())
			logPath, logFormat = f.Name(), "json"
		} else if fi, err := os.Stat(logPath); err == nil {
			offset = fi.Size()
		}
	}
	argv := append(b.globals(logPath, logFormat), verb)
	argv = append(argv, args...)
	cmd, err := b.command(ctx, argv, workaround)
	if err != nil {
		return res, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	cmd.ExtraFiles = stdio.ExtraFiles
	b.o.Logger.Debug("exec", "argv", cmd.Args)
	if err := cmd.Start(); err != nil {
		return res, errs.Wrap(errs.KindBackend, err, "cannot run %s", b.path)
	}
	if onStart != nil {
		onStart(cmd.Process)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.code = exitCode(exitErr)
	default:
		return res, errs.Wrap(errs.KindBackend, err, "%s %s", b.o.Name, verb)
	}
	if watchLog && res.code != 0 {
		res.logErr = LastLogError(logPath, offset)
	}
	return res, nil
}

// exitCode is the status of a finished process, 128+signal when killed.
func exitCode(e *exec.ExitError) int {
	if ws, ok := e.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return e.ExitCode()
}

// captured runs verb with its output captured; a failure becomes a
// KindBackend error carrying the runtime's message.
func (b *Backend) captured(ctx context.Context, verb string, args ...string) ([]byte, error) {
	argv := append(b.globals(b.o.Log, b.o.LogFormat), verb)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, b.path, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	b.o.Logger.Debug("exec", "argv", cmd.Args)
	if err := cmd.Run(); err != nil {
		msg := lastMessage(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		id := ""
		if len(args) > 0 {
			id = " " + args[len(args)-1]
			if verb == "kill" && len(args) > 1 {
				id = " " + args[len(args)-2]
			}
		}
		return stdout.Bytes(), errs.Wrap(errs.KindBackend, errors.New(msg), "%s %s%s", b.o.Name, verb, id)
	}
	return stdout.Bytes(), nil
}

var logfmtMsg = lazyre.New(`msg="((?:[^"\\]|\\.)*)"`)

// lastMessage extracts the runtime's error from its stderr: the last
// non-empty line, unwrapped from logrus text format when it is one.
func lastMessage(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if m := logfmtMsg.FindStringSubmatch(l); m != nil {
			return strings.ReplaceAll(m[1], `\"`, `"`)
		}
		return l
	}
	return ""
}

// LastLogError returns the msg of the last error-level line written to
// the log at path after offset (JSON or logrus text lines).
func LastLogError(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	last := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &entry) == nil {
			if entry.Level == "error" || entry.Level == "fatal" {
				last = entry.Msg
			}
			continue
		}
		if bytes.Contains(line, []byte("level=error")) {
			if m := logfmtMsg.FindSubmatch(line); m != nil {
				last = strings.ReplaceAll(string(m[1]), `\"`, `"`)
			}
		}
	}
	return last
}

// forwardedSignals are relayed to the runtime during a foreground run, so
// that `kill <nexcage pid>` reaches the container as with runc itself.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// forwardSignals starts relaying signals to the process handed to the
// returned setProc (signals arriving before that are queued); stop ends
// the relay.
func forwardSignals(log *slog.Logger) (setProc func(*os.Process), stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, forwardedSignals...)
	procCh := make(chan *os.Process, 1)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var pending []os.Signal
		var proc *os.Process
		for {
			select {
			case <-quit:
				return
			case s := <-ch:
				if proc == nil {
					pending = append(pending, s)
					continue
				}
				if err := proc.Signal(s); err != nil {
					log.Debug("signal forward failed", "signal", s, "err", err)
				}
			case p := <-procCh:
				proc = p
				for _, s := range pending {
					_ = p.Signal(s)
				}
				pending = nil
			}
		}
	}()
	return func(p *os.Process) { procCh <- p }, func() {
		signal.Stop(ch)
		close(quit)
		<-done
	}
}
