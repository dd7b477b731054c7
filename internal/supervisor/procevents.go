package supervisor

import (
	"encoding/binary"
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's process events connector (CONFIG_PROC_EVENTS) reports every
// process exit with its wait status to a root listener in the initial
// namespaces. It is how the supervisor learns the exit status of a
// container init that is not its child (LXC's monitor reaps it).
//
// Every exit on the host is multicast to every listener, so the socket
// carries a classic BPF filter: first one that passes exit events only
// (before the container's init is known), then one that passes only the
// exit of the init's thread-group leader. The parser (parseExit) checks
// every length itself all the same: the filter is an optimisation, and
// the bytes come from the kernel's buffer, which the parser must never
// index past.

const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventExit     = 0x80000000
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
	// Offsets in one message: the proc_event after nlmsghdr and cn_msg
	// (what u32, cpu u32, timestamp u64), then for an exit event:
	// process_pid, process_tgid, exit_code, exit_signal (u32 each).
	offWhat     = nlmsgHdrLen + cnMsgLen
	offExitPid  = offWhat + 16
	offExitTgid = offExitPid + 4
	offExitCode = offExitTgid + 4
	exitMsgLen  = offExitCode + 4
)

// procEvents is a subscription to process events.
type procEvents struct{ f *os.File }

// listenProcEvents subscribes to process exit events.
func listenProcEvents() (*procEvents, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, err
	}
	// Exit events only, from the start: the buffer does not fill with
	// the host's forks and execs while the helper has not connected.
	if err := attachFilter(fd, exitFilter(0)); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: 0}); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	le := hostOrder
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], unix.NLMSG_DONE)
	le.PutUint32(msg[12:], uint32(os.Getpid()))
	le.PutUint32(msg[16:], cnIdxProc)
	le.PutUint32(msg[20:], cnValProc)
	le.PutUint16(msg[32:], 4)
	le.PutUint32(msg[36:], procCnMcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor in the runtime's poller: Close wakes a
	// reader blocked in run, so no goroutine outlives the subscription.
	return &procEvents{f: os.NewFile(uintptr(fd), "proc-events")}, nil
}

// watch narrows the subscription to the exit of tgid.
func (p *procEvents) watch(tgid int) error {
	raw, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = attachFilter(int(fd), exitFilter(tgid)) }); err != nil {
		return err
	}
	return ferr
}

// close ends the subscription; a run in progress returns.
func (p *procEvents) close() { _ = p.f.Close() }

// run sends the exit of tgid (whole process, not single threads) to out
// and returns; it also returns when the subscription is closed or fails.
func (p *procEvents) run(tgid int, out chan<- unix.WaitStatus) {
	buf := make([]byte, 64*1024)
	for {
		n, err := p.f.Read(buf)
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EINTR) {
			continue // events were lost; the pid watcher still notices the exit
		}
		if err != nil {
			return
		}
		if ws, ok := parseExit(buf[:n], tgid); ok {
			out <- ws
			return
		}
	}
}

// parseExit looks through one datagram from the process events connector
// for the exit of the process tgid (its thread-group leader) and returns
// its wait status. It never indexes past buf, whatever buf holds.
func parseExit(buf []byte, tgid int) (unix.WaitStatus, bool) {
	for off := 0; off >= 0 && off+nlmsgHdrLen <= len(buf); {
		msg := buf[off:]
		l := int(hostOrder.Uint32(msg))
		if l < nlmsgHdrLen || l > len(msg) {
			return 0, false
		}
		msg = msg[:l]
		next := (l + 3) &^ 3
		if next <= 0 || next > len(buf)-off {
			off = len(buf) // last message
		} else {
			off += next
		}
		if len(msg) < exitMsgLen || hostOrder.Uint32(msg[offWhat:]) != procEventExit {
			continue
		}
		pid := int(hostOrder.Uint32(msg[offExitPid:]))
		tg := int(hostOrder.Uint32(msg[offExitTgid:]))
		if pid == tgid && tg == tgid {
			return unix.WaitStatus(hostOrder.Uint32(msg[offExitCode:])), true
		}
	}
	return 0, false
}

// hostOrder is the byte order of the kernel's structures (native).
var hostOrder binary.ByteOrder = binary.NativeEndian

// exitFilter is a classic BPF program for the connector socket that
// passes PROC_EVENT_EXIT messages only, and with tgid > 0 only those of
// that process's thread-group leader. BPF loads read big-endian words, so
// the constants are the host-order values as BPF reads them.
func exitFilter(tgid int) []unix.SockFilter {
	asBPF := func(v uint32) uint32 {
		var b [4]byte
		hostOrder.PutUint32(b[:], v)
		return binary.BigEndian.Uint32(b[:])
	}
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK = unix.BPF_RET | unix.BPF_K
	)
	// A load past the message's end makes the program return 0 (drop).
	if tgid <= 0 {
		return []unix.SockFilter{
			{Code: ldW, K: offWhat},
			{Code: jeq, Jt: 0, Jf: 1, K: asBPF(procEventExit)},
			{Code: retK, K: 0xffffffff},
			{Code: retK, K: 0},
		}
	}
	t := asBPF(uint32(tgid))
	return []unix.SockFilter{
		{Code: ldW, K: offWhat},
		{Code: jeq, Jt: 0, Jf: 5, K: asBPF(procEventExit)},
		{Code: ldW, K: offExitPid},
		{Code: jeq, Jt: 0, Jf: 3, K: t},
		{Code: ldW, K: offExitTgid},
		{Code: jeq, Jt: 0, Jf: 1, K: t},
		{Code: retK, K: 0xffffffff},
		{Code: retK, K: 0},
	}
}

func attachFilter(fd int, prog []unix.SockFilter) error {
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: unsafe.SliceData(prog)}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp)
}
