// Package inithelper is the part of nexcage that runs inside a Proxmox
// container: the init helper that holds the container in the OCI
// "created" state until `start` releases it and then execs process.args
// (in the manner of lxcri), and the exec helper that `nexcage exec`
// runs through lxc-attach. Both apply the whole OCI process themselves
// (user, groups, cwd, env, umask, rlimits, capabilities,
// noNewPrivileges; the init helper also the net.* sysctls), so nothing
// depends on raw LXC keys that some Proxmox versions drop (process.go).
//
// nexcage is a static binary; the Proxmox backend bind-mounts a copy of it
// read-only at MountPoint in the container, with the supervisor's socket.
package inithelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/netsetup"
)

// Hidden nexcage verbs.
const (
	// InitVerb is `nexcage __nexcage-init <socket>`: the container's init.
	InitVerb = "__nexcage-init"
	// ExecVerb is `nexcage __nexcage-exec`, run in the container by
	// lxc-attach; it reads its Process as JSON from descriptor ExecFD
	// (never from argv, which every local user can read in /proc).
	ExecVerb = "__nexcage-exec"
)

// ExecFD is the descriptor the exec helper reads its Process from, until
// end of file.
const ExecFD = 3

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
	// StateFile is the container's OCI state the startContainer hooks
	// get on stdin, written by `start` (StateFileName in the host
	// directory) before it releases the helper.
	StateFile     = MountPoint + "/" + StateFileName
	StateFileName = "state.json"
)

// Message types of the init protocol (one JSON message per packet on a
// SOCK_SEQPACKET unix socket):
//
//	supervisor -> helper  process  {process, net, rootfs}
//	helper                mounts the spec's mounts, masked and read-only
//	                      paths (rootfs, RootfsSetup), if any, then
//	                      configures the network (net), if any, then
//	                      checks the process and writes its sysctls
//	                      (Prepare); a failure is an error {msg}
//	helper -> supervisor  ready | error {msg}
//	supervisor -> helper  start    + 3 fds (stdin, stdout, stderr)
//	helper                applies the process (Apply) and execs; the
//	                      socket closes (close-on-exec), which tells the
//	                      supervisor the process runs; or error {msg}
const (
	MsgProcess = "process"
	MsgReady   = "ready"
	MsgStart   = "start"
	MsgError   = "error"
)

// Message is one packet of the init protocol.
type Message struct {
	Type    string   `json:"type"`
	Process *Process `json:"process,omitempty"`
	// Net, when set, is the network the init helper configures before
	// it answers ready (internal/netsetup).
	Net *netsetup.Config `json:"net,omitempty"`
	// Rootfs, when set, is what the init helper mounts in the container
	// first (rootfs.go).
	Rootfs *RootfsSetup `json:"rootfs,omitempty"`
	Msg    string       `json:"msg,omitempty"`
	// StartContainer are the OCI startContainer hooks the init helper
	// runs at start, before it applies the process (starthooks.go).
	StartContainer []specs.Hook `json:"startContainer,omitempty"`
}

// Process is the OCI process as the helpers apply it: every field of
// specs.Process the Proxmox backend honours, already validated by the
// backend's translation. The order in which the helpers apply them is
// documented at Apply and in docs/PROXMOX.md.
type Process struct {
	Args []string `json:"args"`
	// Env is the process's whole environment (nothing is inherited).
	Env []string `json:"env,omitempty"`
	// Cwd is an absolute path inside the container; "" is "/".
	Cwd            string   `json:"cwd,omitempty"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
	// Umask nil means 0022, as with runc.
	Umask           *uint32             `json:"umask,omitempty"`
	NoNewPrivileges bool                `json:"noNewPrivileges,omitempty"`
	Rlimits         []specs.POSIXRlimit `json:"rlimits,omitempty"`
	// OOMScoreAdj is process.oomScoreAdj. The helpers do not apply it:
	// nexcage sets it from the host (root there may also lower it, which
	// an unprivileged container's root may not), on the init helper before
	// start and on itself before lxc-attach for exec; the process inherits
	// it, as with runc.
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
	// Capabilities nil leaves the sets as they are (a uid other than 0
	// then loses them all at setuid, as with runc).
	Capabilities *specs.LinuxCapabilities `json:"capabilities,omitempty"`
	// Sysctl holds net.* keys only (the init helper writes them under
	// /proc/sys/net, in the container's network namespace); the exec
	// helper refuses a process that has any.
	Sysctl map[string]string `json:"sysctl,omitempty"`
	// ContainerBounding, for the exec helper only, is the container's own
	// bounding set (hex, as CapBnd in /proc/<pid>/status of the init
	// helper LXC started). lxc-attach runs the exec helper with all
	// capabilities (--elevated-privileges=CAP, so it may switch user);
	// it first narrows itself to this set, so an exec'd process never
	// gets more than the container has.
	ContainerBounding string `json:"containerBounding,omitempty"`
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
