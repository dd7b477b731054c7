package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// LocalUser is an unprivileged local account for the security tests: a
// uid and gid that no /etc/passwd or /etc/group entry names, no running
// process uses, and that lie outside the id ranges mapped to unprivileged
// containers (100000 and up on a Proxmox host). To the kernel, and so to
// every permission check nexcage relies on, such a uid is a local user;
// using one instead of useradd keeps the tests from writing the host's
// /etc/passwd.
type LocalUser struct {
	t        testing.TB
	Uid, Gid int
	// Home is a directory the user owns (0755), removed with the test.
	Home string
	self string // a copy of the test binary the user can execute
}

// Action is a function a LocalUser runs in a copy of the test binary
// (LocalUser.Action); it returns the process's exit code.
type Action func(args []string) int

var (
	actionsMu sync.Mutex
	actions   = map[string]Action{}
)

// actionEnv names the Action a re-executed test binary runs.
const actionEnv = "NEXCAGE_TESTUTIL_ACTION"

// RegisterAction makes fn runnable as name by LocalUser.Action; call it
// from an init function of the test package (RunMain dispatches).
func RegisterAction(name string, fn Action) {
	actionsMu.Lock()
	defer actionsMu.Unlock()
	actions[name] = fn
}

// runAction runs the registered action the environment names, if any.
func runAction() (int, bool) {
	name := os.Getenv(actionEnv)
	if name == "" {
		return 0, false
	}
	actionsMu.Lock()
	fn := actions[name]
	actionsMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "testutil: no action %q registered\n", name)
		return 2, true
	}
	var args []string
	if a := os.Getenv(actionEnv + "_ARGS"); a != "" {
		args = strings.Split(a, "\x1f")
	}
	return fn(args), true
}

// NewLocalUser picks an unused uid/gid pair and makes its home.
func NewLocalUser(t testing.TB) *LocalUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the security tests run as root (they switch to a local user)")
	}
	used := usedIDs(t)
	var id int
	for i := 0; ; i++ {
		id = 50000 + rand.IntN(10000)
		if !used[id] {
			break
		}
		if i > 1000 {
			t.Fatal("no unused uid in 50000-59999")
		}
	}
	u := &LocalUser{t: t, Uid: id, Gid: id}
	u.Home = ContainerTempDir(t)
	if err := os.Chown(u.Home, u.Uid, u.Gid); err != nil {
		t.Fatal(err)
	}
	return u
}

// usedIDs are the ids /etc/passwd and /etc/group name and those of the
// running processes.
func usedIDs(t testing.TB) map[int]bool {
	used := map[int]bool{}
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if fields := strings.Split(sc.Text(), ":"); len(fields) > 3 {
				for _, s := range fields[2:4] {
					if n, err := strconv.Atoi(s); err == nil {
						used[n] = true
					}
				}
			}
		}
		fh.Close()
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/status")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "Uid:") || strings.HasPrefix(line, "Gid:") {
				for _, s := range strings.Fields(line)[1:] {
					if n, err := strconv.Atoi(s); err == nil {
						used[n] = true
					}
				}
			}
		}
	}
	return used
}

// Command is name with args run as the user (no supplementary groups),
// in its home, with a minimal environment.
func (u *LocalUser) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = u.Home
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + u.Home}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.Uid), Gid: uint32(u.Gid), Groups: []uint32{}}}
	return cmd
}

// Action returns a command that runs the registered action name with
// args as the user, in a copy of the test binary the user can execute
// (go test builds it in a directory only root can enter).
func (u *LocalUser) Action(name string, args ...string) *exec.Cmd {
	u.t.Helper()
	if u.self == "" {
		exe, err := os.Executable()
		if err != nil {
			u.t.Fatal(err)
		}
		dir := ContainerTempDir(u.t)
		u.self = filepath.Join(dir, "test.bin")
		if err := copyExecutable(exe, u.self); err != nil {
			u.t.Fatal(err)
		}
	}
	cmd := u.Command(u.self)
	cmd.Env = append(cmd.Env, actionEnv+"="+name, actionEnv+"_ARGS="+strings.Join(args, "\x1f"))
	return cmd
}

// Run runs cmd (from Command or Action) and returns its result; only a
// command that cannot be started fails the test.
func (u *LocalUser) Run(cmd *exec.Cmd) Result {
	u.t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res Result
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		u.t.Fatalf("run %q as uid %d: %v", cmd.Args, u.Uid, err)
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	return res
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
