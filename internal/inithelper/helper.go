package inithelper

import (
	"context"
	"encoding/json"
	"fmt"
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

// InitMain is the container's init: it connects to the supervisor,
// checks that process.args[0] can be run, waits for `start`, then takes
// the stdio the supervisor passes and execs the process (so the
// process is the container's PID 1, as with runc). It returns only on
// failure.
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
	if err != nil || m.Type != MsgProcess || len(m.Args) == 0 {
		return fail("no process from the supervisor (%v)", err)
	}
	cwd := m.Cwd
	if cwd == "" {
		cwd = "/"
	}
	path, err := LookPath(m.Args[0], m.Env, cwd)
	if err != nil {
		return fail("%v", err)
	}
	if err := setupNetwork(m.Net); err != nil {
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
	if err := os.Chdir(cwd); err != nil {
		return fail("chdir to cwd (%q) set in config.json failed: %v", cwd, err)
	}
	// The socket is close-on-exec: a successful exec closes it, which is
	// the supervisor's signal that the process runs.
	err = unix.Exec(path, m.Args, m.Env)
	return fail("exec %q: %v", m.Args[0], err)
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

// ExecProcess is what the exec helper runs (from runc's process.json).
type ExecProcess struct {
	Args           []string `json:"args"`
	Env            []string `json:"env,omitempty"`
	Cwd            string   `json:"cwd,omitempty"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
}

// ExecMain runs inside the container (started by lxc-attach as root): it
// switches to the process's user, changes to its cwd and execs it with
// exactly its environment. It returns only on failure (status 127 when
// the command cannot be run, as a shell does).
func ExecMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "nexcage: "+ExecVerb+": internal helper; usage: "+ExecVerb+" <process json>")
		return 2
	}
	var p ExecProcess
	if err := json.Unmarshal([]byte(args[0]), &p); err != nil || len(p.Args) == 0 {
		fmt.Fprintf(os.Stderr, "nexcage exec: bad process description: %v\n", err)
		return 2
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := switchUser(p); err != nil {
		fmt.Fprintf(os.Stderr, "nexcage exec: %v\n", err)
		return 126
	}
	if err := os.Chdir(cwd); err != nil {
		fmt.Fprintf(os.Stderr, "nexcage exec: chdir to cwd (%q) failed: %v\n", cwd, err)
		return 126
	}
	path, err := LookPath(p.Args[0], p.Env, cwd)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nexcage exec: %v\n", err)
		return 127
	}
	err = unix.Exec(path, p.Args, p.Env)
	fmt.Fprintf(os.Stderr, "nexcage exec: exec %q: %v\n", p.Args[0], err)
	return 127
}

// LookPath finds name as execve would after a PATH search with the
// process's own environment; the error texts follow runc's.
func LookPath(name string, env []string, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if err := executable(p); err != nil {
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
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return unwrapPath(err)
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("permission denied")
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
	// The init helper must exec from the main thread: when another thread
	// execs, the kernel reports the thread-group leader as exited, which
	// the supervisor would take for the container's exit.
	if len(os.Args) > 1 && os.Args[1] == InitVerb {
		runtime.LockOSThread()
	}
}

// switchUser sets the process's groups, gid and uid, each only when it
// differs from the current one: the container's capability set may lack
// CAP_SETGID/CAP_SETUID, which a process staying root does not need.
func switchUser(p ExecProcess) error {
	gids := make([]int, len(p.AdditionalGids))
	for i, g := range p.AdditionalGids {
		gids[i] = int(g)
	}
	if cur, err := unix.Getgroups(); err != nil || !sameInts(cur, gids) {
		if err := unix.Setgroups(gids); err != nil {
			return fmt.Errorf("setgroups %v: %w", gids, err)
		}
	}
	if unix.Getgid() != int(p.GID) || unix.Getegid() != int(p.GID) {
		if err := unix.Setresgid(int(p.GID), int(p.GID), int(p.GID)); err != nil {
			return fmt.Errorf("setgid %d: %w", p.GID, err)
		}
	}
	if unix.Getuid() != int(p.UID) || unix.Geteuid() != int(p.UID) {
		if err := unix.Setresuid(int(p.UID), int(p.UID), int(p.UID)); err != nil {
			return fmt.Errorf("setuid %d: %w", p.UID, err)
		}
	}
	return nil
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
