package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/trust"
)

// soPeerPidfd is SO_PEERPIDFD (Linux 6.5; the same number on the
// architectures nexcage is built for): a pidfd of the peer as it was at
// connect(2), immune to pid reuse. Older kernels answer ENOPROTOOPT and
// the supervisor opens a pidfd by the SO_PEERCRED pid instead (and then
// checks that it still names that pid).
const soPeerPidfd = 77

// verifyPeer accepts a peer on the init socket only when it is the
// container's init as LXC knows it (`lxc-info -p`): the same process
// (held by a pidfd, so a reused pid cannot pass), in a pid namespace other
// than the supervisor's (and, for an unprivileged container, a user
// namespace other than the supervisor's), in a cgroup of the container.
// The init socket is reachable by the container's root only; this check
// keeps out anything else that could reach it, root processes on the host
// included. It returns the peer's host pid and an open pidfd.
func (s *sup) verifyPeer(c *net.UnixConn) (pid, pidfd int, err error) {
	pid, pidfd, err = peerPidfd(c)
	if err != nil {
		return 0, -1, err
	}
	if err := s.checkPeer(pid, pidfd); err != nil {
		_ = unix.Close(pidfd)
		return 0, -1, fmt.Errorf("peer pid %d: %w", pid, err)
	}
	return pid, pidfd, nil
}

func (s *sup) checkPeer(pid, pidfd int) error {
	if s.o.LxcPath == "" || s.o.Name == "" {
		return errors.New("no LXC container to check the peer against")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lxcInfo, err := trust.LookPath("lxc-info")
	if err != nil {
		return fmt.Errorf("container %s: cannot check the peer: %w", s.o.Name, err)
	}
	out, err := exec.CommandContext(ctx, lxcInfo, "-P", s.o.LxcPath, "-n", s.o.Name, "-p", "-H").Output()
	if err != nil {
		return fmt.Errorf("container %s has no init pid (lxc-info: %v)", s.o.Name, err)
	}
	initPid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || initPid <= 0 {
		return fmt.Errorf("container %s has no init pid (lxc-info: %q)", s.o.Name, strings.TrimSpace(string(out)))
	}
	if pid != initPid {
		return fmt.Errorf("not the init (pid %d) of container %s", initPid, s.o.Name)
	}
	for _, ns := range []string{"pid", "user"} {
		same, err := sameNamespace(pid, ns)
		if err != nil {
			return err
		}
		// A privileged container shares the host's user namespace.
		if same && (ns == "pid" || s.o.UID != 0) {
			return fmt.Errorf("in the host's %s namespace", ns)
		}
	}
	if err := inContainerCgroup(pid, s.o.Name); err != nil {
		return err
	}
	// Everything above was read by pid: it was this peer's if the process
	// the pidfd holds is alive (a live process's pid is not reused) and
	// has that pid.
	if p, err := pidfdPid(pidfd); err != nil || p != pid {
		return fmt.Errorf("exited while it was checked")
	}
	return unix.PidfdSendSignal(pidfd, 0, nil, 0)
}

// peerPidfd is the peer's host pid and a pidfd of it.
func peerPidfd(c *net.UnixConn) (pid, pidfd int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, -1, err
	}
	var cred *unix.Ucred
	var cerr, ferr error
	pidfd = -1
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		pidfd, ferr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, soPeerPidfd)
	}); err != nil {
		return 0, -1, err
	}
	if cerr != nil {
		if ferr == nil {
			_ = unix.Close(pidfd)
		}
		return 0, -1, fmt.Errorf("cannot identify the peer: %w", cerr)
	}
	pid = int(cred.Pid)
	if ferr != nil {
		if pidfd, ferr = unix.PidfdOpen(pid, 0); ferr != nil {
			return 0, -1, fmt.Errorf("cannot hold the peer (pid %d): %w", pid, ferr)
		}
	}
	unix.CloseOnExec(pidfd)
	return pid, pidfd, nil
}

// pidfdPid is the pid (in our namespace) of the process pidfd refers
// to, from /proc/self/fdinfo; -1 once it has exited.
func pidfdPid(pidfd int) (int, error) {
	f, err := os.Open("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no pid in the pidfd's fdinfo")
}

// sameNamespace tells whether pid is in the supervisor's own namespace of
// kind ns.
func sameNamespace(pid int, ns string) (bool, error) {
	var own, its unix.Stat_t
	if err := unix.Stat("/proc/self/ns/"+ns, &own); err != nil {
		return false, fmt.Errorf("cannot read the supervisor's %s namespace: %w", ns, err)
	}
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/"+ns, &its); err != nil {
		return false, fmt.Errorf("cannot read its %s namespace: %w", ns, err)
	}
	return own.Dev == its.Dev && own.Ino == its.Ino, nil
}

// inContainerCgroup checks that pid is in a cgroup named for container
// name, the way LXC names them: "lxc/<name>" (as Proxmox configures it)
// or "lxc.payload.<name>" (LXC's default), each possibly with LXC's "-<n>"
// suffix. On a hybrid cgroup v1 host LXC may leave some controllers where
// its monitor was, so one hierarchy naming the container is enough: the
// check beside the pid being LXC's init, not instead of it.
func inContainerCgroup(pid int, name string) error {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return fmt.Errorf("cannot read its cgroup: %w", err)
	}
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if cgroupNames(parts[2], name) {
			return nil
		}
		paths = append(paths, parts[2])
	}
	return fmt.Errorf("its cgroups %s are not container %s's", strings.Join(paths, ", "), name)
}

// cgroupNames tells whether cgroup path p is the cgroup (or under the
// cgroup) LXC made for container name. LXC appends "-<n>" to the name
// when a cgroup of that name already exists.
func cgroupNames(p, name string) bool {
	elems := strings.Split(strings.Trim(p, "/"), "/")
	for i, e := range elems {
		if c, ok := strings.CutPrefix(e, "lxc.payload."); ok && isName(c, name) {
			return true
		}
		if (e == "lxc" || strings.HasSuffix(e, ".lxc")) && i+1 < len(elems) && isName(elems[i+1], name) {
			return true
		}
	}
	return false
}

// isName: e is name or name-<digits>.
func isName(e, name string) bool {
	rest, ok := strings.CutPrefix(e, name)
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	n, ok := strings.CutPrefix(rest, "-")
	if !ok || n == "" {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
