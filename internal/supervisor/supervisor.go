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
//     Only the container's root can reach that socket (Options.UID/GID,
//     mode 0600 in a 0700 directory), and only the container's init, as
//     LXC knows it, is served (peer.go);
//   - answers `start` on a root-only control socket;
//   - relays SIGTERM, SIGINT and SIGHUP it receives to the container's
//     init (pidfd_send_signal), instead of dying while the container runs;
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
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/netsetup"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/trust"
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
	// LxcPath and Name identify the LXC container: its init is the only
	// peer the supervisor talks to, and the supervisor waits until LXC
	// has torn it down before exiting.
	LxcPath, Name string
	// UID and GID own the init socket (mode 0600): the container's root
	// as the host sees it (0 for a privileged container, the mapped root
	// for an unprivileged one), so that nobody else can connect.
	UID, GID int
	// ConnectTimeout bounds the wait for the helper to connect.
	ConnectTimeout time.Duration
}

// Args is the supervisor's argv after the verb.
func (o Options) Args() []string {
	return []string{"--dir", o.Dir, "--ctl", o.Ctl, "--process", o.Process, "--signal-file", o.SignalFile,
		"--lxc-path", o.LxcPath, "--name", o.Name, "--uid", strconv.Itoa(o.UID), "--gid", strconv.Itoa(o.GID),
		"--connect-timeout", o.ConnectTimeout.String()}
}

// Report lines the supervisor writes on fd 3 for `create`.
const (
	ReportListening = "listening"
	ReportReady     = "ready" // followed by " <host pid of the container's init>"
	ReportError     = "error" // followed by " <message>"
)

// relayed are the signals the supervisor passes on to the container's
// init instead of dying of them: whoever holds the --pid-file pid (the
// shim, an administrator) means the container.
var relayed = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP}

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
	fs.IntVar(&o.UID, "uid", 0, "")
	fs.IntVar(&o.GID, "gid", 0, "")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", time.Minute, "")
	if err := fs.Parse(args); err != nil || o.Dir == "" || o.Ctl == "" || o.Process == "" || o.UID < 0 || o.GID < 0 {
		fmt.Fprintln(os.Stderr, "nexcage: "+Verb+": internal helper started with bad arguments")
		return 2
	}
	// Sockets are born private (chmod follows bind).
	unix.Umask(0o077)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, relayed...)
	defer signal.Stop(sigs)
	s := &sup{o: o, report: os.NewFile(3, "report"), signals: sigs}
	s.peer = s.verifyPeer
	return s.run()
}

type sup struct {
	o      Options
	report *os.File
	// stdio are handed to the helper at start and then closed; nil means
	// descriptors 0-2, which are then pointed at /dev/null.
	stdio []*os.File
	// signals are the signals to relay to the container's init.
	signals <-chan os.Signal
	// peer identifies a connected helper and checks that it is the
	// container's init; it returns the init's host pid and a pidfd.
	peer func(c *net.UnixConn) (pid, pidfd int, err error)
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
// paths may exceed the 108 bytes of sun_path) and sets its mode and, with
// uid >= 0, its owner.
func listen(network, path string, mode os.FileMode, uid, gid int) (*net.UnixListener, error) {
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
	err = os.Chmod(path, mode)
	if err == nil && uid >= 0 {
		err = os.Lchown(path, uid, gid)
	}
	if err != nil {
		_ = l.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return l, nil
}

// helperMsg is one message from the helper, read in the background.
type helperMsg struct {
	m   inithelper.Message
	err error
}

// receive reads one message from the helper in the background; received
// descriptors are closed (the helper has none to give).
func receive(conn *net.UnixConn) <-chan helperMsg {
	ch := make(chan helperMsg, 1)
	go func() {
		m, fds, err := inithelper.Receive(conn)
		closeFds(fds)
		ch <- helperMsg{m, err}
	}()
	return ch
}

func closeFds(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
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
	if evErr == nil {
		defer events.close()
	}
	initSock := filepath.Join(s.o.Dir, inithelper.SocketName)
	initLn, err := listen("unixpacket", initSock, 0o600, s.o.UID, s.o.GID)
	if err != nil {
		s.tell("%s cannot listen on %s: %v", ReportError, initSock, err)
		return 1
	}
	ctlLn, err := listen("unix", s.o.Ctl, 0o600, -1, -1)
	if err != nil {
		_ = initLn.Close()
		_ = os.Remove(initSock)
		s.tell("%s cannot listen on %s: %v", ReportError, s.o.Ctl, err)
		return 1
	}
	defer os.Remove(s.o.Ctl)
	defer ctlLn.Close()
	s.tell(ReportListening)

	// The helper connects once the container runs.
	conn, pid, pidfd, status := s.acceptHelper(initLn)
	_ = initLn.Close()
	_ = os.Remove(initSock)
	if conn == nil {
		return status
	}
	defer conn.Close()
	defer unix.Close(pidfd)
	startTime, _ := procfs.StartTime(pid)
	exited := make(chan unix.WaitStatus, 1)
	if evErr == nil {
		if err := events.watch(pid); err == nil {
			go events.run(pid, exited)
		}
	}
	if err := inithelper.Send(conn, proc, nil); err != nil {
		s.tell("%s cannot talk to the init helper: %v", ReportError, err)
		return 1
	}
	replies := receive(conn)
	var r helperMsg
	for waiting := true; waiting; {
		select {
		case r = <-replies:
			waiting = false
		case sig := <-s.signals:
			relay(pidfd, sig)
		}
	}
	switch {
	case r.err != nil:
		s.tell("%s the init helper failed: %v", ReportError, r.err)
		return 1
	case r.m.Type == inithelper.MsgError:
		s.tell("%s %s", ReportError, r.m.Msg)
		return 127
	case r.m.Type != inithelper.MsgReady:
		s.tell("%s unexpected message %q from the init helper", ReportError, r.m.Type)
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

	// done stops the pid watcher (waited for: it polls the pidfd, closed
	// after it) and the control acceptor (which ends when the listener
	// closes).
	done := make(chan struct{})
	watched := make(chan struct{})
	defer func() { close(done); <-watched }()
	gone := make(chan struct{})
	go func() { defer close(watched); watchPidfd(pidfd, pid, startTime, gone, done) }()
	ctl := make(chan net.Conn)
	go func() {
		for {
			c, err := ctlLn.Accept()
			if err != nil {
				return
			}
			select {
			case ctl <- c:
			case <-done:
				_ = c.Close()
				return
			}
		}
	}()
	started := false
	for {
		select {
		case c := <-ctl:
			s.control(c, conn, &started)
		case sig := <-s.signals:
			relay(pidfd, sig)
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

// acceptHelper waits for the container's init helper until the connect
// timeout. A peer that is not the container's init (s.peer) is closed
// before anything is sent to it, and the wait goes on: an impostor can
// neither get the process nor keep the real helper out. A signal to
// relay ends the wait (there is no container init to pass it to yet). It
// returns the connection, or nil and the exit status.
func (s *sup) acceptHelper(ln *net.UnixListener) (conn *net.UnixConn, pid, pidfd, status int) {
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	conns := make(chan accepted)
	stop := make(chan struct{})
	defer close(stop)
	_ = ln.SetDeadline(time.Now().Add(s.o.ConnectTimeout))
	go func() {
		for {
			c, err := ln.AcceptUnix()
			select {
			case conns <- accepted{c, err}:
			case <-stop:
				if c != nil {
					_ = c.Close()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var refused []string
	for {
		select {
		case a := <-conns:
			if a.err != nil {
				msg := fmt.Sprintf("the container's init helper did not connect: %v", a.err)
				if len(refused) > 0 {
					msg += fmt.Sprintf("; refused %d peer(s) that were not the container's init (last: %s)", len(refused), refused[len(refused)-1])
				}
				s.tell("%s %s", ReportError, msg)
				return nil, 0, -1, 1
			}
			p, fd, err := s.peer(a.c)
			if err != nil {
				_ = a.c.Close()
				refused = append(refused, err.Error())
				continue
			}
			// Stop the acceptor before using the connection.
			_ = ln.Close()
			return a.c, p, fd, 0
		case sig := <-s.signals:
			n := sig.(unix.Signal)
			s.tell("%s interrupted by %v before the container's init helper connected", ReportError, n)
			_ = ln.Close()
			return nil, 0, -1, 128 + int(n)
		}
	}
}

// relay passes sig on to the process pidfd refers to (never to a process
// that reused its pid).
func relay(pidfd int, sig os.Signal) {
	if n, ok := sig.(unix.Signal); ok {
		_ = unix.PidfdSendSignal(pidfd, n, nil, 0)
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
	// The answer to start comes once the helper execs the process, after
	// the container's startContainer hooks, which may take longer than
	// 30 s: the caller bounds that wait (Start's timeout).
	_ = c.SetDeadline(time.Time{})
	reply := func(format string, a ...any) { _, _ = fmt.Fprintf(c, format+"\n", a...) }
	switch strings.TrimSpace(line) {
	case CmdStart:
		if *started {
			reply("cannot start an already running container")
			return
		}
		*started = true
		fds := []int{0, 1, 2}
		for i, f := range s.stdio {
			fds[i] = int(f.Fd())
		}
		if err := inithelper.Send(helper, inithelper.Message{Type: inithelper.MsgStart}, fds); err != nil {
			reply("cannot release the init helper: %v", err)
			return
		}
		s.dropStdio()
		m, fds, err := inithelper.Receive(helper)
		closeFds(fds)
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

// dropStdio lets go of the supervisor's copies of the container's stdio
// once the helper has them: the shim sees EOF when the container's
// processes close theirs.
func (s *sup) dropStdio() {
	if s.stdio != nil {
		for _, f := range s.stdio {
			_ = f.Close()
		}
		s.stdio = nil
		return
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup3(int(devnull.Fd()), fd, 0)
		}
		_ = devnull.Close()
	}
}

// finish waits (bounded) until LXC has torn the container down, so that
// whoever reaps the supervisor can destroy the container at once.
func (s *sup) finish(ctlLn *net.UnixListener, status int) int {
	_ = ctlLn.Close()
	if lxcInfo, err := trust.LookPath("lxc-info"); err == nil && s.o.LxcPath != "" && s.o.Name != "" {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			out, err := exec.Command(lxcInfo, "-P", s.o.LxcPath, "-n", s.o.Name, "-s", "-H").Output()
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

// watchPidfd closes gone when the process pidfd refers to has exited
// (pidfds poll readable then), or, without pidfd polling, when pid no
// longer is the process that started at startTime. It returns early
// when done is closed.
func watchPidfd(pidfd, pid int, startTime string, gone, done chan struct{}) {
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		switch {
		case err == nil && n > 0:
			close(gone)
			return
		case err != nil && err != unix.EINTR:
			if st, ok := procfs.StartTime(pid); !ok || (startTime != "" && st != startTime) {
				close(gone)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case <-done:
			return
		default:
		}
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
