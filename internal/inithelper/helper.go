package inithelper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/netsetup"
)

// DefaultPath is used to find process.args[0] when the process has no
// PATH variable (the value runc and Docker use).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// InitMain is the container's init: it connects to the supervisor, gets
// the process, prepares it (network, sysctls, checks: Prepare) and
// reports ready, waits for `start`, then takes the stdio the supervisor
// passes, applies the process (Apply) and execs it, so the process is
// the container's PID 1, as with runc. It returns only on failure.
func InitMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "nexcage: "+InitVerb+": internal helper; usage: "+InitVerb+" <socket>")
		return 2
	}
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: args[0], Net: "unixpacket"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "nexcage init: cannot reach the supervisor at %s: %v\n", args[0], err)
		return 1
	}
	fail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		_ = Send(conn, Message{Type: MsgError, Msg: msg}, nil)
		fmt.Fprintln(os.Stderr, "nexcage init: "+msg)
		return 127
	}
	m, _, err := Receive(conn)
	if err != nil || m.Type != MsgProcess || m.Process == nil || len(m.Process.Args) == 0 {
		return fail("no process from the supervisor (%v)", err)
	}
	p := m.Process
	// The spec's mounts first, in its order (rootfs.go): the network
	// setup and the sysctls below then use the container's final /proc
	// and /sys.
	if err := m.Rootfs.Setup(); err != nil {
		return fail("%v", err)
	}
	// Network setup of the container (interfaces, addresses, resolv.conf)
	// first: then Prepare writes the net.* sysctls, which may name the
	// interfaces.
	if err := setupNetwork(m.Net); err != nil {
		return fail("%v", err)
	}
	ptmxSymlink()
	path, err := Prepare(p, true)
	if err != nil {
		return fail("%v", err)
	}
	if err := Send(conn, Message{Type: MsgReady}, nil); err != nil {
		return 1
	}
	s, fds, err := Receive(conn)
	if err != nil || s.Type != MsgStart || len(fds) != 3 {
		// The supervisor went away or the container is being deleted.
		return 1
	}
	for i, fd := range fds {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fail("cannot set up stdio: %v", err)
		}
		if fd > 2 {
			_ = unix.Close(fd)
		}
	}
	// startContainer hooks: in the container, with the stdio in place,
	// before the process (a failure fails start; the container stops).
	if err := runStartContainerHooks(m.StartContainer); err != nil {
		return fail("%v", err)
	}
	// The socket is close-on-exec: a successful exec closes it, which is
	// the supervisor's signal that the process runs.
	return fail("%v", execProcess(p, path))
}

// setupNetwork configures the container's network (internal/netsetup)
// while the helper still has LXC's capabilities: it runs before ready, so
// that create fails when the container gets no network.
func setupNetwork(c *netsetup.Config) error {
	if c == nil {
		return nil
	}
	res, err := netsetup.Apply(context.Background(), c)
	if err != nil {
		return err
	}
	for _, name := range res.Missing {
		fmt.Fprintf(os.Stderr, "nexcage init: the container has no interface %s; not configured\n", name)
	}
	return nil
}

// ExecMain runs inside the container (started by lxc-attach as root): it
// reads the Process from descriptor ExecFD, prepares and applies it as
// the init helper does (without sysctls) and execs it with exactly its
// environment. It returns only on failure (status 127 when the command
// cannot be found, 126 when it cannot be run, as a shell does).
func ExecMain(args []string) int {
	if len(args) != 0 {
		fmt.Fprintln(os.Stderr, "nexcage: "+ExecVerb+": internal helper; usage: "+ExecVerb+" (process JSON on fd 3)")
		return 2
	}
	f := os.NewFile(ExecFD, "process")
	var p Process
	data, err := io.ReadAll(io.LimitReader(f, maxMessage+1))
	_ = f.Close()
	if err == nil && len(data) > maxMessage {
		err = fmt.Errorf("more than %d bytes", maxMessage)
	}
	if err == nil {
		err = json.Unmarshal(data, &p)
	}
	if err != nil || len(p.Args) == 0 {
		fmt.Fprintf(os.Stderr, "nexcage exec: bad process description on fd %d: %v\n", ExecFD, err)
		return 2
	}
	if err := narrowTo(p.ContainerBounding); err != nil {
		fmt.Fprintf(os.Stderr, "nexcage exec: %v\n", err)
		return 126
	}
	path, err := Prepare(&p, false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nexcage exec: %v\n", err)
		if errors.Is(err, errNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	err = execProcess(&p, path)
	fmt.Fprintf(os.Stderr, "nexcage exec: %v\n", err)
	return 126
}

// errNotFound is LookPath's error when args[0] does not exist.
var errNotFound = errors.New("executable file not found")

// LookPath finds name as execve would after a PATH search with the
// process's own environment; the error texts follow runc's.
//
// With id, the file must be executable by that user, group and
// supplementary groups (mode bits; id nil: by anyone).
func LookPath(name string, env []string, cwd string, id *Identity) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if err := executable(p, id); err != nil {
			return "", fmt.Errorf("exec: %q: stat %s: %w", name, name, err)
		}
		return p, nil
	}
	path := DefaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		p := filepath.Join(dir, name)
		if executable(p, id) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: %w in $PATH", name, errNotFound)
}

func executable(p string, id *Identity) error {
	fi, err := os.Stat(p)
	if err != nil {
		return unwrapPath(err)
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory")
	}
	if !id.mayExec(fi) {
		if id != nil && id.UID != 0 {
			return fmt.Errorf("permission denied for uid %d gid %d", id.UID, id.GID)
		}
		return fmt.Errorf("permission denied")
	}
	// The user must also be able to search every directory on the way
	// (mode bits; ACLs are not read).
	if id != nil && id.UID != 0 {
		for d := filepath.Dir(filepath.Clean(p)); ; d = filepath.Dir(d) {
			if di, err := os.Stat(d); err == nil && !id.mayExec(di) {
				return fmt.Errorf("permission denied for uid %d gid %d: cannot search %s", id.UID, id.GID, d)
			}
			if d == "/" || d == "." {
				break
			}
		}
	}
	return nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func init() {
	// The helpers must exec from the main thread: when another thread
	// execs, the kernel reports the thread-group leader as exited, which
	// the supervisor would take for the container's exit. And the
	// credentials, capabilities and no_new_privs they set are per thread:
	// they must be set on the thread that execs. main runs the helper
	// verbs on the main goroutine, which this locks to the main thread.
	if len(os.Args) > 1 && (os.Args[1] == InitVerb || os.Args[1] == ExecVerb) {
		runtime.LockOSThread()
	}
}
