package supervisor

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/testutil"
)

// exitMsg is one connector message: the exit of pid/tgid with status.
func exitMsg(pid, tgid int, status uint32) []byte {
	b := make([]byte, exitMsgLen+8)
	hostOrder.PutUint32(b[0:], uint32(len(b)))
	hostOrder.PutUint32(b[offWhat:], procEventExit)
	hostOrder.PutUint32(b[offExitPid:], uint32(pid))
	hostOrder.PutUint32(b[offExitTgid:], uint32(tgid))
	hostOrder.PutUint32(b[offExitCode:], status)
	return b
}

func TestParseExit(t *testing.T) {
	// A thread's exit, another process's, then ours, in one datagram.
	var buf []byte
	buf = append(buf, exitMsg(43, 42, 0)...)
	buf = append(buf, exitMsg(7, 7, 0)...)
	buf = append(buf, exitMsg(42, 42, 15)...)
	ws, ok := parseExit(buf, 42)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("parseExit = %v, %v; want killed by SIGTERM", ws, ok)
	}
	if _, ok := parseExit(buf, 99); ok {
		t.Error("found the exit of a process not in the datagram")
	}
}

// TestParseExitShortMessage: messages whose header claims fewer bytes
// than an exit event (the old reader sliced buf[36:l] for any l >= 16 and
// panicked), or more bytes than arrived, are skipped without panicking.
func TestParseExitShortMessage(t *testing.T) {
	full := exitMsg(42, 42, 0)
	for _, l := range []int{0, 1, 15, 16, 20, 35, 36, 40, exitMsgLen - 1} {
		b := make([]byte, len(full))
		copy(b, full)
		hostOrder.PutUint32(b, uint32(l))
		if _, ok := parseExit(b, 42); ok {
			t.Errorf("length %d: an exit parsed from a message too short to hold one", l)
		}
		if _, ok := parseExit(b[:min(l, len(b))], 42); ok {
			t.Errorf("length %d, truncated: an exit parsed", l)
		}
	}
	long := exitMsg(42, 42, 0)
	hostOrder.PutUint32(long, uint32(len(long)+100))
	if _, ok := parseExit(long, 42); ok {
		t.Error("a message claiming more bytes than arrived was parsed")
	}
	for n := 0; n < len(full); n++ {
		parseExit(full[:n], 42)
	}
}

// FuzzParseExit feeds arbitrary datagrams to the parser: it must never
// panic, and an exit it reports must be tgid's.
func FuzzParseExit(f *testing.F) {
	f.Add(exitMsg(42, 42, 0), 42)
	f.Add(exitMsg(42, 42, 0)[:20], 42)
	f.Add(append(exitMsg(1, 1, 0), exitMsg(42, 42, 9)...), 42)
	f.Add([]byte{16, 0, 0, 0}, 1)
	f.Fuzz(func(t *testing.T, buf []byte, tgid int) {
		if _, ok := parseExit(buf, tgid); ok && tgid < 0 {
			t.Errorf("an exit of a negative tgid %d", tgid)
		}
	})
}

// TestProcEventsFilteredExit subscribes, narrows the socket's filter to a
// child and reads its exit status from the kernel.
func TestProcEventsFilteredExit(t *testing.T) {
	ev, err := listenProcEvents()
	if err != nil {
		t.Fatalf("process events connector: %v (the supervisor needs it; tests run as root)", err)
	}
	defer ev.close()
	cmd := exec.Command(testutil.BusyboxPath, "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := ev.watch(cmd.Process.Pid); err != nil {
		t.Fatalf("attach the filter: %v", err)
	}
	// Other processes exit meanwhile: the filter drops them.
	for i := 0; i < 3; i++ {
		if err := exec.Command(testutil.BusyboxPath, "true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	out := make(chan unix.WaitStatus, 1)
	done := make(chan struct{})
	go func() { ev.run(cmd.Process.Pid, out); close(done) }()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case ws := <-out:
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("status %v, want killed by SIGKILL", ws)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit event")
	}
	<-done
}

// TestProcEventsCloseEndsRun: closing the subscription wakes a reader.
func TestProcEventsCloseEndsRun(t *testing.T) {
	ev, err := listenProcEvents()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.watch(1 << 30); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ev.run(1<<30, make(chan unix.WaitStatus, 1)); close(done) }()
	ev.close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after close")
	}
}
