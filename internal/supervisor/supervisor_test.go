package supervisor

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openFds counts this process's descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory being read
}

// harness runs a supervisor in this process: the "container's init" is
// a child sleep (the peer check names it, holding a pidfd), the helper is
// played by the test over the real init socket.
type harness struct {
	t       *testing.T
	s       *sup
	dir     string
	signals chan os.Signal
	report  *bufio.Scanner
	child   *exec.Cmd
	status  chan int
	// refuse makes the peer check refuse the next n peers.
	refuse int
	peers  int
}

const secret = "SECRET=hunter2"

func newHarness(t *testing.T, timeout time.Duration, initArgs ...string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), signals: make(chan os.Signal, 4), status: make(chan int, 1)}
	helperDir := filepath.Join(h.dir, "helper")
	if err := os.Mkdir(helperDir, 0o700); err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(inithelper.Message{Process: &inithelper.Process{Args: []string{"app"}, Env: []string{secret}}})
	proc := filepath.Join(h.dir, "helper.json")
	if err := os.WriteFile(proc, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	if len(initArgs) == 0 {
		initArgs = []string{"sleep", "1000"}
	}
	h.child = exec.Command(testutil.BusyboxPath, initArgs...)
	if err := h.child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.child.Process.Kill(); _ = h.child.Wait() })
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	h.report = bufio.NewScanner(rd)
	var stdio []*os.File
	for i := 0; i < 3; i++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		stdio = append(stdio, f)
	}
	h.s = &sup{
		o: Options{Dir: helperDir, Ctl: filepath.Join(h.dir, "helper.ctl"), Process: proc,
			UID: 4242, GID: 4343, ConnectTimeout: timeout},
		report: wr, stdio: stdio, signals: h.signals,
	}
	// What the supervisor does not close (on a failure) goes with the test.
	t.Cleanup(func() {
		for _, f := range stdio {
			_ = f.Close()
		}
		_ = wr.Close()
	})
	h.s.peer = func(c *net.UnixConn) (int, int, error) {
		h.peers++
		if h.refuse > 0 {
			h.refuse--
			return 0, -1, errors.New("not the container's init")
		}
		fd, err := unix.PidfdOpen(h.child.Process.Pid, 0)
		return h.child.Process.Pid, fd, err
	}
	return h
}

func (h *harness) start() {
	go func() { h.status <- h.s.run() }()
}

func (h *harness) line() string {
	h.t.Helper()
	if !h.report.Scan() {
		h.t.Fatalf("report closed: %v", h.report.Err())
	}
	return h.report.Text()
}

func (h *harness) wait() int {
	h.t.Helper()
	select {
	case st := <-h.status:
		return st
	case <-time.After(time.Minute):
		h.t.Fatal("the supervisor did not exit")
		return 0
	}
}

func dialInit(t *testing.T, dir string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: filepath.Join(dir, inithelper.SocketName), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRunRelaysSignalsAndLeaksNothing goes through a container's life:
// the socket is the container root's and private, the helper gets the
// process, `start` passes the stdio, a SIGTERM to the supervisor goes to
// the container's init, and the supervisor exits with its status (143),
// leaving no goroutine and no descriptor behind.
func TestRunRelaysSignalsAndLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	hup := filepath.Join(t.TempDir(), "hup")
	h := newHarness(t, time.Minute, "sh", "-c", `trap "echo hup > `+hup+`" HUP; while :; do busybox sleep 0.05; done`)
	// The supervisor's descriptors, opened by the harness, are its own
	// (it closes its stdio at start and the report at ready).
	before := openFds(t) - 4
	h.start()
	if l := h.line(); l != ReportListening {
		t.Fatalf("report %q", l)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(h.s.o.Dir, inithelper.SocketName), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o600 || st.Uid != 4242 || st.Gid != 4343 {
		t.Errorf("init socket mode %o owner %d:%d, want 600 4242:4343", st.Mode&0o777, st.Uid, st.Gid)
	}
	if err := unix.Lstat(h.s.o.Ctl, &st); err != nil || st.Mode&0o777 != 0o600 || st.Uid != 0 {
		t.Errorf("control socket: %v mode %o uid %d, want 600 root's", err, st.Mode&0o777, st.Uid)
	}
	c := dialInit(t, h.s.o.Dir)
	defer c.Close()
	m, fds, err := inithelper.Receive(c)
	if err != nil || m.Type != inithelper.MsgProcess || m.Process == nil || m.Process.Env[0] != secret || len(fds) != 0 {
		t.Fatalf("helper got %+v %v %v", m, fds, err)
	}
	// A signal while the helper prepares goes to the init (whose trap
	// notes it). Wait until the shell has set its trap: a SIGHUP before
	// that would kill it (seen under `make stress`).
	waitCaught(t, h.child.Process.Pid, unix.SIGHUP)
	h.signals <- unix.SIGHUP
	for i := 0; ; i++ {
		if _, err := os.Stat(hup); err == nil {
			break
		}
		if i > 6000 {
			t.Fatal("the init never got the relayed SIGHUP")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := inithelper.Send(c, inithelper.Message{Type: inithelper.MsgReady}, nil); err != nil {
		t.Fatal(err)
	}
	if l := h.line(); l != ReportReady+" "+strconv.Itoa(h.child.Process.Pid) {
		t.Fatalf("report %q", l)
	}
	started := make(chan error, 1)
	go func() { started <- Start(h.s.o.Ctl, time.Minute) }()
	m, fds, err = inithelper.Receive(c)
	if err != nil || m.Type != inithelper.MsgStart || len(fds) != 3 {
		t.Fatalf("helper got %+v %v %v at start", m, fds, err)
	}
	closeFds(fds)
	_ = c.Close() // the exec
	if err := <-started; err != nil {
		t.Fatalf("start: %v", err)
	}
	if h.peers != 1 {
		t.Errorf("%d peers checked, want 1", h.peers)
	}
	h.signals <- unix.SIGTERM
	if got := h.wait(); got != 128+int(syscall.SIGTERM) {
		t.Errorf("exit status %d, want 143 (the init's death by the relayed SIGTERM)", got)
	}
	if after := openFds(t); after != before {
		t.Errorf("descriptors: %d before, %d after the supervisor", before, after)
	}
	if _, err := os.Lstat(h.s.o.Ctl); !os.IsNotExist(err) {
		t.Errorf("control socket left: %v", err)
	}
}

// TestRunRelaysSIGTERM: SIGTERM to the supervisor ends the container's
// init with it, and the supervisor exits 143.
func TestRunRelaysSIGTERM(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, time.Minute)
	h.start()
	h.line()
	c := dialInit(t, h.s.o.Dir)
	defer c.Close()
	if _, _, err := inithelper.Receive(c); err != nil {
		t.Fatal(err)
	}
	if err := inithelper.Send(c, inithelper.Message{Type: inithelper.MsgReady}, nil); err != nil {
		t.Fatal(err)
	}
	h.line()
	h.signals <- unix.SIGTERM
	if got := h.wait(); got != 143 {
		t.Errorf("exit status %d, want 143", got)
	}
	if err := h.child.Wait(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("the init: %v, want terminated by SIGTERM", err)
	}
}

// TestRunRefusesImpostor: a peer the check refuses is closed before it
// gets anything; the supervisor keeps waiting and serves the real helper.
func TestRunRefusesImpostor(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, time.Minute)
	h.refuse = 1
	h.start()
	h.line()
	bad := dialInit(t, h.s.o.Dir)
	defer bad.Close()
	m, fds, err := inithelper.Receive(bad)
	if err == nil && (m.Type != "" || len(fds) > 0) {
		t.Fatalf("the impostor got %+v and %d fds", m, len(fds))
	}
	good := dialInit(t, h.s.o.Dir)
	defer good.Close()
	m, _, err = inithelper.Receive(good)
	if err != nil || m.Type != inithelper.MsgProcess || m.Process.Env[0] != secret {
		t.Fatalf("the helper got %+v, %v", m, err)
	}
	_ = inithelper.Send(good, inithelper.Message{Type: inithelper.MsgReady}, nil)
	h.line()
	_ = h.child.Process.Kill()
	if got := h.wait(); got != 137 {
		t.Errorf("exit status %d, want 137", got)
	}
}

// TestRunTimesOutAfterImpostor: with only refused peers, the supervisor
// fails at the connect timeout and says so.
func TestRunTimesOutAfterImpostor(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, 2*time.Second)
	h.refuse = 1
	before := openFds(t) - 4
	h.start()
	h.line()
	bad := dialInit(t, h.s.o.Dir)
	if _, _, err := inithelper.Receive(bad); err == nil {
		t.Log("impostor read an empty message")
	}
	_ = bad.Close()
	l := h.line()
	if !strings.HasPrefix(l, ReportError) || !strings.Contains(l, "did not connect") || !strings.Contains(l, "not the container's init") {
		t.Errorf("report %q", l)
	}
	if got := h.wait(); got != 1 {
		t.Errorf("exit status %d, want 1", got)
	}
	for _, f := range h.s.stdio {
		_ = f.Close()
	}
	if h.s.report != nil {
		_ = h.s.report.Close()
	}
	if after := openFds(t); after != before {
		t.Errorf("descriptors: %d before, %d after the supervisor", before, after)
		dump(t)
	}
}

func dump(t *testing.T) {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		t.Log(e.Name(), l)
	}
}

// TestRunSignalBeforeHelper: a SIGTERM while no helper is connected ends
// the supervisor with 143 and a report.
func TestRunSignalBeforeHelper(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, time.Minute)
	h.start()
	h.line()
	h.signals <- unix.SIGTERM
	if l := h.line(); !strings.HasPrefix(l, ReportError+" interrupted") {
		t.Errorf("report %q", l)
	}
	if got := h.wait(); got != 143 {
		t.Errorf("exit status %d, want 143", got)
	}
	if _, err := os.Lstat(filepath.Join(h.s.o.Dir, inithelper.SocketName)); !os.IsNotExist(err) {
		t.Errorf("init socket left: %v", err)
	}
}

// TestVerifyPeerRefusesHostProcess: the real check refuses a peer on
// the host (this test process), whatever container it is told about.
func TestVerifyPeerRefusesHostProcess(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	for _, o := range []Options{{}, {LxcPath: t.TempDir(), Name: "100"}} {
		s := &sup{o: o}
		if _, _, err := s.verifyPeer(a); err == nil {
			t.Errorf("%+v: a host process passed the peer check", o)
		}
	}
	// Even as LXC's "init": it is in the host's pid namespace.
	pid, fd, err := peerPidfd(a)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("peerPidfd = %d, %v", pid, err)
	}
	defer unix.Close(fd)
	if p, err := pidfdPid(fd); err != nil || p != pid {
		t.Errorf("pidfdPid = %d, %v", p, err)
	}
	if same, err := sameNamespace(pid, "pid"); err != nil || !same {
		t.Errorf("sameNamespace(self) = %v, %v", same, err)
	}
	if err := inContainerCgroup(pid, "100"); err == nil {
		t.Error("the test process passed as in container 100's cgroup")
	}
}

func TestCgroupNames(t *testing.T) {
	for p, want := range map[string]bool{
		"/lxc/100/ns":             true,
		"/lxc/100":                true,
		"/lxc.payload.100":        true,
		"/lxc.payload.100/init":   true,
		"/lxc.payload.100-1":      true,
		"/lxc/100-12/ns":          true,
		"/lxc.payload.100-":       false,
		"/lxc.payload.100-1a":     false,
		"/lxc.payload.100a":       false,
		"/a/b.lxc/100/ns/x":       true,
		"/lxc/1000/ns":            false,
		"/lxc.payload.1000":       false,
		"/lxc.monitor.100":        false,
		"/user.slice/lxc/x/100":   false,
		"/system.slice/100":       false,
		"/":                       false,
		"/process_api/lxc.payloa": false,
	} {
		if got := cgroupNames(p, "100"); got != want {
			t.Errorf("cgroupNames(%q, 100) = %v, want %v", p, got, want)
		}
	}
}

func unixPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conn := func(fd int) (*net.UnixConn, error) {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	a, err := conn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := conn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// waitCaught polls until pid catches sig (its SigCgt mask in
// /proc/<pid>/status has the signal's bit).
func waitCaught(t *testing.T, pid int, sig unix.Signal) {
	t.Helper()
	for i := 0; ; i++ {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&(1<<(uint(sig)-1)) != 0 {
					return
				}
			}
		}
		if i > 6000 {
			t.Fatalf("pid %d never caught %v", pid, sig)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
