package supervisor

import (
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"
)

// The kernel's process events connector (CONFIG_PROC_EVENTS) reports every
// process exit with its wait status to a root listener in the initial
// namespaces. It is how the supervisor learns the exit status of a
// container init that is not its child (LXC's monitor reaps it).

const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventExit     = 0x80000000
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
)

// procEvents is a subscription to process events.
type procEvents struct{ fd int }

// listenProcEvents subscribes to process events.
func listenProcEvents() (*procEvents, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: 0}); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	le := binary.LittleEndian
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
	return &procEvents{fd: fd}, nil
}

// run sends the exit of tgid (whole process, not single threads) to out,
// then closes the subscription; it also returns when the socket fails.
func (p *procEvents) run(tgid int, out chan<- unix.WaitStatus) {
	defer func() { _ = unix.Close(p.fd) }()
	buf := make([]byte, 64*1024)
	le := binary.LittleEndian
	for {
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err == unix.ENOBUFS || err == unix.EINTR {
			continue // events were lost; the poller still notices the exit
		}
		if err != nil {
			return
		}
		for off := 0; off+nlmsgHdrLen <= n; {
			l := int(le.Uint32(buf[off:]))
			if l < nlmsgHdrLen || off+l > n {
				break
			}
			data := buf[off+nlmsgHdrLen+cnMsgLen : off+l]
			off += (l + 3) &^ 3
			// struct proc_event: what u32, cpu u32, timestamp u64, then
			// exit: pid, tgid, exit_code, exit_signal ...
			if len(data) < 16+12 || le.Uint32(data[0:]) != procEventExit {
				continue
			}
			pid := int(le.Uint32(data[16:]))
			tg := int(le.Uint32(data[20:]))
			if pid == tgid && tg == tgid {
				out <- unix.WaitStatus(le.Uint32(data[24:]))
				return
			}
		}
	}
}
