// Package supervisor is the host-side process that stands in for a
// Proxmox container in its caller's process tree. containerd's runc shim
// learns that a container exited only by reaping the pid in --pid-file,
// but `pct start` runs the container under Proxmox's own service. So
// `create` leaves a supervisor (it becomes the shim's child, the shim
// being a subreaper) that:
//
//   - serves the container's init helper (internal/inithelper) on a unix
//     socket bind-mounted into the container: hands it process.args, and
//     on `start` the stdio `create` was given, so the container's output
//     goes straight to the shim's pipes (no copying, no polling);
//   - answers `start` on a root-only control socket;
//   - renews the DHCP leases the helper took (netsetup.KeepLeases);
//   - exits when the container's init exits, with its exit status
//     (from the kernel's process events connector), or 128+the last
//     signal `nexcage kill` sent, or 255, when the status is unknown.
package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/netsetup"
	"github.com/nexcage/nexcage/internal/procfs"
)

// Verb is the hidden nexcage verb that runs a supervisor.
const Verb = "__nexcage-supervise"

// UnknownStatus is the exit status reported when the container's exit
// status cannot be known and no signal was sent by `nexcage kill`.
const UnknownStatus = 255

// Control commands and replies on the control socket (one line each).
const (
	CmdStart = "start"
	ReplyOK  = "ok"
)

// Options of one supervisor, given on its command line.
type Options struct {
	// Dir is the host directory bind-mounted at inithelper.MountPoint.
	Dir string
	// Ctl is the control socket (root only, outside Dir).
	Ctl string
	// Process is a JSON file holding the inithelper.Message to send.
	Process string
	// SignalFile holds the number of the last signal `nexcage kill` sent.
	SignalFile string
	// LxcPath and Name identify the LXC container, to wait until LXC has
	// torn it down before exiting.
	LxcPath, Name string
	// ConnectTimeout bounds the wait for the helper to connect.
	ConnectTimeout time.Duration
}

// Args is the supervisor's argv after the verb.
func (o Options) Args() []string {
	return []string{"--dir", o.Dir, "--ctl", o.Ctl, "--process", o.Process, "--signal-file", o.SignalFile,
		"--lxc-path", o.LxcPath, "--name", o.Name, "--connect-timeout", o.ConnectTimeout.String()}
}

// Report lines the supervisor writes on fd 3 for `create`.
const (
	ReportListening = "listening"
	ReportReady     = "ready" // followed by " <host pid of the container's init>"
	ReportError     = "error" // followed by " <message>"
)

// Main runs the supervisor: fd 0-2 are the container's stdio to be, fd
// 3 the report pipe to `create`. It returns the exit status.
func Main(args []string) int {
	fs := flag.NewFlagSet(Verb, flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Dir, "dir", "", "")
	fs.StringVar(&o.Ctl, "ctl", "", "")
	fs.StringVar(&o.Process, "process", "", "")
	fs.StringVar(&o.SignalFile, "signal-file", "", "")
	fs.StringVar(&o.LxcPath, "lxc-path", "", "")
	fs.StringVar(&o.Name, "name", "", "")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", time.Minute, "")
	if err := fs.Parse(args); err != nil || o.Dir == "" || o.Ctl == "" || o.Process == "" {
		fmt.Fprintln(os.Stderr, "nexcage: "+Verb+": internal helper started with bad arguments")
		return 2
	}
	report := os.NewFile(3, "report")
	s := &sup{o: o, report: report}
	return s.run()
}

type sup struct {
	o      Options
	report *os.File
}

func (s *sup) tell(format string, a ...any) {
	if s.report == nil {
		return
	}
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	if _, err := fmt.Fprintln(s.report, msg); err != nil {
		s.report = nil
	}
}

func (s *sup) doneReporting() {
	if s.report != nil {
		_ = s.report.Close()
		s.report = nil
	}
}

// listen binds a unix socket by a path relative to its directory (host
// paths may exceed the 108 bytes of sun_path) and sets its mode.
func listen(network, path string, mode os.FileMode) (*net.UnixListener, error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	_ = os.Remove(path)
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	if len(short) > len(path) {
		short = path
	}
	l, err := net.ListenUnix(network, &net.UnixAddr{Name: short, Net: network})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, mode); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

func (s *sup) run() int {
	data, err := os.ReadFile(s.o.Process)
	var proc inithelper.Message
	if err == nil {
		err = json.Unmarshal(data, &proc)
	}
	if err != nil {
		s.tell("%s cannot read the process description: %v", ReportError, err)
		return 1
	}
	proc.Type = inithelper.MsgProcess
	events, evErr := listenProcEvents()
	initSock := filepath.Join(s.o.Dir, inithelper.SocketName)
	initLn, err := listen("unixpacket", initSock, 0o666)
	if err != nil {
		s.tell("%s cannot listen on %s: %v", ReportError, initSock, err)
		return 1
	}
	ctlLn, err := listen("unix", s.o.Ctl, 0o600)
	if err != nil {
		s.tell("%s cannot listen on %s: %v", ReportError, s.o.Ctl, err)
		return 1
	}
	defer os.Remove(s.o.Ctl)
	s.tell(ReportListening)

	// The helper connects once the container runs.
	_ = initLn.SetDeadline(time.Now().Add(s.o.ConnectTimeout))
	conn, err := initLn.AcceptUnix()
	_ = initLn.Close()
	_ = os.Remove(initSock)
	if err != nil {
		s.tell("%s the container's init helper did not connect: %v", ReportError, err)
		return 1
	}
	pid, err := peerPid(conn)
	if err != nil {
		s.tell("%s %v", ReportError, err)
		return 1
	}
	startTime, _ := procfs.StartTime(pid)
	exited := make(chan unix.WaitStatus, 1)
	if evErr == nil {
		go events.run(pid, exited)
	}
	if err := inithelper.Send(conn, proc, nil); err != nil {
		s.tell("%s cannot talk to the init helper: %v", ReportError, err)
		return 1
	}
	m, _, err := inithelper.Receive(conn)
	switch {
	case err != nil:
		s.tell("%s the init helper failed: %v", ReportError, err)
		return 1
	case m.Type == inithelper.MsgError:
		s.tell("%s %s", ReportError, m.Msg)
		return 127
	case m.Type != inithelper.MsgReady:
		s.tell("%s unexpected message %q from the init helper", ReportError, m.Type)
		return 1
	}
	s.tell("%s %d", ReportReady, pid)
	s.doneReporting()
	if proc.Net != nil {
		// The helper's DHCP leases outlive it: renew them from here, in
		// the container's network namespace, while the container lives.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go netsetup.KeepLeases(ctx, fmt.Sprintf("/proc/%d/ns/net", pid), proc.Net, nil)
	}

	gone := make(chan struct{})
	go watchPid(pid, startTime, gone)
	ctl := make(chan net.Conn)
	go func() {
		for {
			c, err := ctlLn.Accept()
			if err != nil {
				return
			}
			ctl <- c
		}
	}()
	started := false
	for {
		select {
		case c := <-ctl:
			s.control(c, conn, &started)
		case st := <-exited:
			return s.finish(ctlLn, statusOf(st))
		case <-gone:
			// Exit events may trail the process's disappearance a little.
			select {
			case st := <-exited:
				return s.finish(ctlLn, statusOf(st))
			case <-time.After(time.Second):
			}
			return s.finish(ctlLn, s.unknownStatus())
		}
	}
}

// control serves one control connection.
func (s *sup) control(c net.Conn, helper *net.UnixConn, started *bool) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	reply := func(format string, a ...any) { _, _ = fmt.Fprintf(c, format+"\n", a...) }
	switch strings.TrimSpace(line) {
	case CmdStart:
		if *started {
			reply("cannot start an already running container")
			return
		}
		*started = true
		if err := inithelper.Send(helper, inithelper.Message{Type: inithelper.MsgStart}, []int{0, 1, 2}); err != nil {
			reply("cannot release the init helper: %v", err)
			return
		}
		// The supervisor's copies of the stdio are not needed any more:
		// the shim sees EOF when the container's processes close theirs.
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err == nil {
			for fd := 0; fd <= 2; fd++ {
				_ = unix.Dup3(int(devnull.Fd()), fd, 0)
			}
			_ = devnull.Close()
		}
		m, _, err := inithelper.Receive(helper)
		switch {
		case errors.Is(err, inithelper.ErrClosed) || (err == nil && m.Type == ""):
			reply(ReplyOK) // exec closed the socket: the process runs
		case err != nil:
			reply(ReplyOK) // connection reset by the exec: the process runs
		case m.Type == inithelper.MsgError:
			reply("%s", m.Msg)
		default:
			reply("unexpected message %q from the init helper", m.Type)
		}
	default:
		reply("unknown command")
	}
}

// finish waits (bounded) until LXC has torn the container down, so that
// whoever reaps the supervisor can destroy the container at once.
func (s *sup) finish(ctlLn *net.UnixListener, status int) int {
	_ = ctlLn.Close()
	if s.o.LxcPath != "" && s.o.Name != "" {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			out, err := exec.Command("lxc-info", "-P", s.o.LxcPath, "-n", s.o.Name, "-s", "-H").Output()
			if err != nil || strings.TrimSpace(string(out)) == "STOPPED" {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return status
}

// unknownStatus is 128+the last signal `nexcage kill` sent, else 255.
func (s *sup) unknownStatus() int {
	if s.o.SignalFile != "" {
		if data, err := os.ReadFile(s.o.SignalFile); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 0 && n < 65 {
				return 128 + n
			}
		}
	}
	return UnknownStatus
}

// statusOf is a shell-style exit status: the code, or 128+signal.
func statusOf(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func peerPid(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("cannot identify the init helper: %w", cerr)
	}
	return int(cred.Pid), nil
}

// watchPid closes gone when pid no longer is the process that started at
// startTime.
func watchPid(pid int, startTime string, gone chan<- struct{}) {
	for {
		st, ok := procfs.StartTime(pid)
		if !ok || (startTime != "" && st != startTime) {
			close(gone)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Start asks the supervisor behind ctl to release the container's process.
func Start(ctl string, timeout time.Duration) error {
	// Dial by a short path through the directory's descriptor: host
	// paths may exceed the 108 bytes of sun_path.
	dir, err := os.Open(filepath.Dir(ctl))
	if err != nil {
		return err
	}
	defer dir.Close()
	addr := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(ctl))
	if len(addr) > len(ctl) {
		addr = ctl
	}
	c, err := net.DialTimeout("unix", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(c, CmdStart); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no answer from the supervisor: %w", err)
	}
	if line = strings.TrimSpace(line); line != ReplyOK {
		return errors.New(line)
	}
	return nil
}
