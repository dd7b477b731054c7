// Package inithelper is the part of nexcage that runs inside a Proxmox
// container: the init helper that holds the container in the OCI
// "created" state until `start` releases it and then execs process.args
// (in the manner of lxcri), and the exec helper that `nexcage exec`
// runs through lxc-attach to apply a process's env, cwd and user.
//
// nexcage is a static binary; the Proxmox backend bind-mounts a copy of it
// read-only at MountPoint in the container, with the supervisor's socket.
package inithelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/netsetup"
)

// Hidden nexcage verbs.
const (
	// InitVerb is `nexcage __nexcage-init <socket>`: the container's init.
	InitVerb = "__nexcage-init"
	// ExecVerb is `nexcage __nexcage-exec <process json>`, run in the
	// container by lxc-attach.
	ExecVerb = "__nexcage-exec"
)

// Paths inside the container.
const (
	// MountPoint is where the helper directory is mounted (read-only).
	MountPoint = "/.nexcage"
	// Binary is the helper binary inside the container.
	Binary = MountPoint + "/nexcage"
	// Socket is the supervisor's socket inside the container.
	Socket = MountPoint + "/init.sock"
	// BinaryName and SocketName are their names in the host directory.
	BinaryName = "nexcage"
	SocketName = "init.sock"
)

// Message types of the init protocol (one JSON message per packet on a
// SOCK_SEQPACKET unix socket):
//
//	supervisor -> helper  process  {args, env, cwd, net}
//	helper                configures the network (net), if any
//	helper -> supervisor  ready | error {msg}
//	supervisor -> helper  start    + 3 fds (stdin, stdout, stderr)
//	helper                execs; the socket closes (close-on-exec), which
//	                      tells the supervisor the process runs; or error {msg}
const (
	MsgProcess = "process"
	MsgReady   = "ready"
	MsgStart   = "start"
	MsgError   = "error"
)

// Message is one packet of the init protocol.
type Message struct {
	Type string   `json:"type"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	Msg  string   `json:"msg,omitempty"`
	// Net, in the process message, is the network the helper configures
	// before it answers ready (nil: none).
	Net *netsetup.Config `json:"net,omitempty"`
}

// maxMessage bounds one packet (args and env of a process).
const maxMessage = 1 << 20

// Send writes m with fds attached (may be nil).
func Send(c *net.UnixConn, m Message, fds []int) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > maxMessage {
		return fmt.Errorf("message of %d bytes is too large", len(data))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(data, oob, nil)
	return err
}

// ErrClosed is returned by Receive when the peer closed the connection.
var ErrClosed = errors.New("connection closed")

// Receive reads one message and the fds that came with it.
func Receive(c *net.UnixConn) (Message, []int, error) {
	var m Message
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return m, nil, err
	}
	if n == 0 && oobn == 0 {
		return m, nil, ErrClosed
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return m, nil, err
		}
		for _, cm := range msgs {
			f, err := unix.ParseUnixRights(&cm)
			if err == nil {
				fds = append(fds, f...)
			}
		}
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return m, nil, fmt.Errorf("bad message: %w", err)
	}
	return m, fds, nil
}
