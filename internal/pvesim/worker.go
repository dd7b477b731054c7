package pvesim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// A task verb on a real node (pct create, here) runs its work in a worker
// forked by PVE::RESTEnvironment::fork_worker. On the command line the
// worker is synchronous:
//
//   - the worker runs in a new session (setsid), with stdout and stderr on
//     a pipe that pct reads and copies to its own stdout, and reports its
//     result on a second (control) pipe: "TASK OK" or "TASK ERROR: <msg>";
//   - pct prints the error of a failed task on its stderr and exits 255;
//   - SIGTERM, SIGINT or SIGQUIT to pct is forwarded as SIGTERM to the
//     worker's process group (the fourth signal sends SIGKILL); the worker
//     dies with "received interrupt" wherever it is, and create's error
//     handler rolls the container back;
//   - when pct itself is SIGKILLed, nobody reads the pipe any more: the
//     worker (SIGPIPE at its default) goes on until it writes its next
//     output line and dies there, without rolling back.
//
// pvesim re-executes itself (Node.Exe) with the hidden tool workerTool to
// get the same process structure, so tests can signal and kill pct and
// observe what a real node leaves behind.

// workerTool is the hidden pvesim tool a task worker runs as:
// `pvesim __worker <kind> <job as JSON>`.
const workerTool = "__worker"

// workerCtrlFD is the worker's control pipe (exec.Cmd.ExtraFiles[0]).
const workerCtrlFD = 3

// errInterrupted is what the worker's signal handler dies with
// (fork_worker: `die "received interrupt\n"`).
var errInterrupted = errors.New("received interrupt")

// taskState is the state a task worker shares with the code it runs.
type taskState struct {
	ctx context.Context // done once the worker received SIGTERM/SIGINT/SIGQUIT
}

// ctx is the task's interrupt context (Background outside a worker).
func (n *Node) ctx() context.Context {
	if n.task != nil {
		return n.task.ctx
	}
	return context.Background()
}

// checkpoint marks a point of a task where an interrupt takes effect (Go
// code cannot be unwound at an arbitrary point the way a Perl signal
// handler's die does) and where PVESIM_PAUSE can hold the worker:
// PVESIM_PAUSE=<point>:<file>[;<point>:<file>...] makes the worker write
// its pid to <file>.reached and wait until <file> exists. Points of pct
// create: create-after-lock (the worker holds the config lock; the config
// is `lock: create`, no volume yet), create-after-disks (volumes allocated,
// before the archive is unpacked), create-after-extract (unpacked, before
// the next output line), create-after-config (the config was written in
// full for the first time, without a lock).
func (n *Node) checkpoint(point string) error {
	ctx := n.ctx()
	if ctx.Err() != nil {
		return errInterrupted
	}
	file := pauseFile(os.Getenv("PVESIM_PAUSE"), point)
	if file == "" {
		return nil
	}
	if err := os.WriteFile(file+".reached", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("PVESIM_PAUSE: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(file); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errInterrupted
		case <-tick.C:
		}
	}
}

// pauseFile returns the file PVESIM_PAUSE names for point, or "".
func pauseFile(spec, point string) string {
	for _, entry := range strings.Split(spec, ";") {
		if p, file, ok := strings.Cut(entry, ":"); ok && p == point && file != "" {
			return file
		}
	}
	return ""
}

// createJob is what pct create hands to its worker: the arguments of
// createTask as the parent computed them, plus --start.
type createJob struct {
	VMID        int               `json:"vmid"`
	Conf        *pvecfg.Config    `json:"conf"`
	MPParam     map[string]string `json:"mp_param"`
	Storages    []pvecfg.Storage  `json:"storages"`
	TmplVolid   string            `json:"tmpl_volid"`
	TmplStorage string            `json:"tmpl_storage"`
	TmplFile    string            `json:"tmpl_file"`
	Ostemplate  string            `json:"ostemplate"`
	Unpriv      bool              `json:"unprivileged"`
	Start       bool              `json:"start"`
}

// runCreateJob is the body of the vzcreate worker (create_vm's $realcmd):
// take the config lock, run createTask, and on any error (an interrupt
// included) destroy what it created and the config; then start the CT
// when asked. A failure to take the lock leaves the `lock: create`
// config in place, as on a real node.
func (n *Node) runCreateJob(j *createJob) error {
	err := n.lockConfig(j.VMID, func() error {
		err := n.checkpoint("create-after-lock")
		if err == nil {
			err = n.createTask(j.VMID, j.Conf, j.MPParam, j.Storages, j.TmplVolid, j.TmplStorage, j.TmplFile, j.Ostemplate, j.Unpriv)
		}
		if err != nil {
			n.unregisterVMID(j.VMID)
			return dief("unable to create CT %d - %s", j.VMID, strings.TrimSuffix(errorText(err), "\n"))
		}
		return nil
	})
	if err == nil && j.Start {
		err = n.doStart(j.VMID, false)
	}
	return err
}

// runCreateWorker runs job in a worker and returns the task's error as
// pct prints it. Without Node.Exe the worker runs in-process, with its
// stderr on stdout as in a real worker.
func (n *Node) runCreateWorker(job *createJob) error {
	if n.Exe == "" {
		w := *n
		w.Stderr = w.Stdout
		return taskError(w.runCreateJob(job))
	}
	return n.forkWorker("vzcreate", job)
}

// taskError is a worker's error as the control pipe carries it: one line
// (fork_worker joins the lines of the message with spaces).
func taskError(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.TrimSuffix(errorText(err), "\n")
	return &cliError{text: strings.ReplaceAll(msg, "\n", " ") + "\n"}
}

// forkWorker starts `<Exe> __worker <kind> <job>` in a new session, copies
// its output to n.Stdout until it closes, forwards SIGTERM/SIGINT/SIGQUIT
// to its process group meanwhile, and returns the result it reported.
func (n *Node) forkWorker(kind string, job any) error {
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return dief("unable to fork worker - %v", err)
	}
	defer outR.Close()
	ctrlR, ctrlW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return dief("unable to fork worker - %v", err)
	}
	defer ctrlR.Close()

	cmd := exec.Command(n.Exe, workerTool, kind, string(data))
	cmd.Stdin = nil // /dev/null
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = []*os.File{ctrlW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	// fork_worker ignores SIGPIPE in pct: a write to a closed stdout fails
	// with EPIPE instead of killing pct (Go raises SIGPIPE for fds 1 and 2
	// unless the signal is being notified).
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)

	err = cmd.Start()
	outW.Close()
	ctrlW.Close()
	if err != nil {
		return dief("unable to fork worker - %v", err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		count := 0
		for {
			select {
			case <-sigs:
				// tee_worker: TERM to the whole group, KILL from the
				// fourth signal on.
				sig := syscall.SIGTERM
				if count >= 3 {
					sig = syscall.SIGKILL
				}
				_ = syscall.Kill(-pid, sig)
				count++
			case <-done:
				return
			}
		}
	}()

	// pct's stdout closed (its reader died): stop reading; the worker is
	// then killed by reapWorker's SIGTERM and rolls back.
	_, copyErr := io.Copy(n.Stdout, outR)
	outR.Close()
	var ctrl []byte
	if copyErr == nil {
		buf := make([]byte, 4096)
		k, _ := ctrlR.Read(buf)
		ctrl = buf[:k]
	}
	close(done)
	<-forwarded
	reapWorker(cmd, pid)

	if copyErr != nil {
		// tee_worker died "broken pipe" (its SIGPIPE handler) and
		// kill_process_group sent the worker SIGTERM: it rolled back.
		return &cliError{text: "broken pipe \n"}
	}
	return parseTaskResult(string(ctrl), n.Stderr)
}

// reapWorker is kill_process_group followed by waitpid: SIGTERM to the
// worker's group, up to 5 s for the worker to end, then SIGKILL.
func reapWorker(cmd *exec.Cmd, pid int) {
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-waited
	}
}

// parseTaskResult turns a worker's control message into pct's result.
func parseTaskResult(msg string, stderr io.Writer) error {
	line := strings.TrimSuffix(msg, "\n")
	switch {
	case line == "TASK OK" && !strings.Contains(line, "\n"):
		return nil
	case strings.HasPrefix(line, "TASK ERROR: ") && !strings.Contains(line, "\n"):
		return &cliError{text: strings.TrimPrefix(line, "TASK ERROR: ") + "\n"}
	case strings.HasPrefix(line, "TASK WARNINGS: ") && !strings.Contains(line, "\n"):
		fmt.Fprintf(stderr, "Task finished with %s warning(s)!\n", strings.TrimPrefix(line, "TASK WARNINGS: "))
		return nil
	}
	// The worker died without reporting (SIGKILL): tee_worker's die,
	// with its newlines turned into spaces.
	return &cliError{text: strings.ReplaceAll("got unexpected control message: "+msg+"\n", "\n", " ") + "\n"}
}

// taskOutput is a worker's stdout. Once the worker was interrupted its
// task prints nothing more (in Perl the signal handler's die ends it on
// the spot; here the task runs on silently to its next checkpoint, where
// it rolls back). Writes go straight to the file, so a write after pct
// died still gets SIGPIPE.
type taskOutput struct {
	w   io.Writer
	ctx context.Context
}

func (o *taskOutput) Write(p []byte) (int, error) {
	if o.ctx.Err() != nil {
		return len(p), nil
	}
	return o.w.Write(p)
}

// workerMain is the hidden tool a task worker runs as. Its stdout and
// stderr are the pipe pct reads (a write after pct died kills it with
// SIGPIPE, which Go raises for fds 1 and 2), fd 3 the control pipe.
func workerMain(n *Node, args []string) int {
	ctrl := os.NewFile(workerCtrlFD, "ctrl")
	if ctrl == nil || len(args) != 2 {
		fmt.Fprintf(n.Stderr, "pvesim: %s is internal to pvesim\n", workerTool)
		return exitUsage
	}
	defer ctrl.Close()
	// Inherited without close-on-exec: keep it from the processes the
	// task starts (lxc-start's monitor outlives the worker).
	syscall.CloseOnExec(workerCtrlFD)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	defer stop()
	n.task = &taskState{ctx: ctx}
	n.Stdin = strings.NewReader("")
	n.Stdout = &taskOutput{w: n.Stdout, ctx: ctx}
	n.Stderr = n.Stdout // fork_worker: STDERR to STDOUT

	var err error
	switch args[0] {
	case "vzcreate":
		var job createJob
		if err = json.Unmarshal([]byte(args[1]), &job); err == nil {
			err = n.runCreateJob(&job)
		}
	default:
		err = fmt.Errorf("unknown worker type '%s'", args[0])
	}
	msg := "TASK OK\n"
	code := 0
	if err != nil {
		msg = "TASK ERROR: " + strings.TrimSuffix(taskError(err).Error(), "\n") + "\n"
		code = exitFailure
	}
	// After pct was SIGKILLed this write fails with EPIPE (fd 3 is not
	// one Go raises SIGPIPE for); the work is done either way.
	_, _ = ctrl.Write([]byte(msg))
	return code
}
