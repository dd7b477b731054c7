package security

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/supervisor"
	"github.com/nexcage/nexcage/internal/testutil"
)

// Exit codes of the "dial" and "list" actions.
const (
	actOK       = 0
	actDenied   = 13 // EACCES or EPERM
	actNotFound = 2
	actOther    = 1
)

func init() {
	// dial <network> <path>: connect to a unix socket.
	testutil.RegisterAction("dial", func(args []string) int {
		c, err := net.Dial(args[0], args[1])
		if err == nil {
			c.Close()
			return actOK
		}
		return actionCode(err)
	})
	// list <dir>: read a directory.
	testutil.RegisterAction("list", func(args []string) int {
		_, err := os.ReadDir(args[0])
		return actionCode(err)
	})
}

func actionCode(err error) int {
	fmt.Fprintln(os.Stderr, err)
	switch {
	case err == nil:
		return actOK
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return actDenied
	case errors.Is(err, syscall.ENOENT):
		return actNotFound
	}
	return actOther
}

// containerData reads the backend's data of id from its state file.
func (w *world) containerData(id string) (map[string]string, []byte) {
	w.t.Helper()
	raw, err := os.ReadFile(filepath.Join(w.root, id, "state.json"))
	if err != nil {
		w.t.Fatal(err)
	}
	var s struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		w.t.Fatal(err)
	}
	return s.Data, raw
}

func wantOwner(t *testing.T, p string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
	}
}

// TestInitSocketOnlyContainerRoot creates Proxmox containers (create, not
// start: the supervisor serves them) and checks that a local user can
// neither list the helper base nor reach a helper directory, its init
// socket or the control socket; the helper directory belongs to the
// container's root (100000 for an unprivileged container), and the
// container's init helper did connect (create succeeded, start works).
func TestInitSocketOnlyContainerRoot(t *testing.T) {
	w := newWorld(t)
	u := testutil.NewLocalUser(t)
	// A privileged container's directory is root's (0): see the
	// backend's TestOwnHelperDir; privileged busybox bundles do not start
	// on pvesim (LXC cannot make /dev/lxc/tty1 in their rootfs).
	for _, tc := range []struct {
		id       string
		uid, gid uint32
	}{{"sock-unpriv", 100000, 100000}} {
		func() {
			b := testutil.BusyboxBundle(t, "", []string{"sh", "-c", "echo hello"}, nil)
			w.must("create", "--bundle", b, tc.id)
			w.cleanup(tc.id)
			data, _ := w.containerData(tc.id)
			dir := data["helper_dir"]
			if dir == "" {
				t.Fatalf("no helper_dir in the state of %s: %v", tc.id, data)
			}
			base := filepath.Dir(dir)
			wantOwner(t, dir, 0o700, tc.uid, tc.gid)
			wantOwner(t, base, 0o711, 0, 0)
			wantOwner(t, dir+".ctl", 0o600, 0, 0)
			wantOwner(t, dir+".json", 0o600, 0, 0)
			// Paths relative to the base (sun_path holds 108 bytes; the
			// base lets everyone search it).
			rel := filepath.Base(dir)
			for _, c := range []struct {
				what string
				cmd  *exec.Cmd
			}{
				{"connect to the init socket", u.Action("dial", "unixpacket", filepath.Join(rel, inithelper.SocketName))},
				{"connect to the control socket", u.Action("dial", "unix", rel+".ctl")},
				{"list the helper base", u.Action("list", ".")},
				{"list the helper directory", u.Action("list", rel)},
			} {
				c.cmd.Dir = base
				if r := u.Run(c.cmd); r.Code != actDenied {
					t.Errorf("local user: %s: exit %d (%s), want permission denied (%d)", c.what, r.Code, strings.TrimSpace(r.Stderr), actDenied)
				}
			}
			// The container works: start releases the process.
			w.must("start", tc.id)
		}()
	}
}

// TestInitSocketRefusesHostPeer runs a supervisor (the real binary) for a
// container that is not running, in a directory everyone can reach: a
// local user cannot connect to its socket (0600, the container root's),
// and root on the host can connect but is refused: closed without the
// process or its environment, and the supervisor keeps waiting for the
// real helper until the connect timeout, then says it refused a peer.
func TestInitSocketRefusesHostPeer(t *testing.T) {
	u := testutil.NewLocalUser(t)
	base := testutil.ContainerTempDir(t)
	if err := os.Chmod(base, 0o755); err != nil { // reachable by u
		t.Fatal(err)
	}
	dir := filepath.Join(base, "helper")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const secret = "SECRET=do-not-leak"
	msg, _ := json.Marshal(inithelper.Message{Process: &inithelper.Process{Args: []string{"sh"}, Env: []string{secret}}})
	proc := filepath.Join(base, "helper.json")
	if err := os.WriteFile(proc, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	o := supervisor.Options{Dir: dir, Ctl: filepath.Join(base, "helper.ctl"), Process: proc,
		SignalFile: filepath.Join(base, "helper.signal"), LxcPath: filepath.Join(base, "lxc"), Name: "999",
		UID: 100000, GID: 100000, ConnectTimeout: 10 * time.Second}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	cmd := exec.Command(testutil.NexcageBin(t), append([]string{supervisor.Verb}, o.Args()...)...)
	cmd.ExtraFiles = []*os.File{wr}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	report := bufio.NewScanner(rd)
	if !report.Scan() || report.Text() != supervisor.ReportListening {
		t.Fatalf("supervisor report %q (%v), stderr %s", report.Text(), report.Err(), stderr.String())
	}
	sock := filepath.Join(dir, inithelper.SocketName)
	wantOwner(t, sock, 0o600, 100000, 100000)
	if r := u.Run(u.Action("dial", "unixpacket", sock)); r.Code != actDenied {
		t.Errorf("local user connected to the init socket: exit %d (%s), want permission denied", r.Code, strings.TrimSpace(r.Stderr))
	}
	// Root on the host: not the container's init.
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatalf("root could not connect (the test needs the connection to show the refusal): %v", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 1<<20)
	n, err := c.Read(buf)
	if n > 0 || strings.Contains(string(buf[:n]), secret) {
		t.Errorf("a host peer received %d bytes (%q)", n, buf[:min(n, 200)])
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("host peer: %v", err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the host peer was neither served nor closed")
	}
	// The supervisor still waits: the socket is there until the timeout.
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("the supervisor stopped waiting after a refused peer: %v", err)
	}
	if !report.Scan() {
		t.Fatalf("no report after the timeout: %v", report.Err())
	}
	if l := report.Text(); !strings.HasPrefix(l, supervisor.ReportError) || !strings.Contains(l, "refused 1 peer") || !strings.Contains(l, "did not connect") {
		t.Errorf("report %q, want the timeout naming the refused peer", l)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("supervisor: %v, want exit 1", err)
	}
	if strings.Contains(stderr.String(), secret) {
		t.Errorf("the supervisor wrote the secret to stderr")
	}
}

// TestKillAllRefusesHostPidNamespace points a container's recorded init
// at a host process (as an impostor on the old 0666 socket could) and
// checks that kill --all refuses instead of signalling every process of
// the host's pid namespace.
func TestKillAllRefusesHostPidNamespace(t *testing.T) {
	w := newWorld(t)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	w.must("create", "--bundle", b, "killall-host")
	w.cleanup("killall-host")
	victim := exec.Command(testutil.BusyboxPath, "sleep", "1000")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()
	st, ok := procfs.StartTime(victim.Process.Pid)
	if !ok {
		t.Fatal("no start time of the victim")
	}
	statePath := filepath.Join(w.root, "killall-host", "state.json")
	_, orig := w.containerData("killall-host")
	defer func() {
		if err := os.WriteFile(statePath, orig, 0o600); err != nil {
			t.Error(err)
		}
	}()
	var s map[string]any
	if err := json.Unmarshal(orig, &s); err != nil {
		t.Fatal(err)
	}
	s["pid"] = victim.Process.Pid
	s["data"].(map[string]any)["pid_start"] = st
	forged, _ := json.Marshal(s)
	if err := os.WriteFile(statePath, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	r := w.run("kill", "--all", "killall-host", "KILL")
	if r.Code != 10 || !strings.Contains(r.Stderr, "host's pid namespace") {
		t.Errorf("kill --all with a host pid: exit %d, stderr %q; want 10 naming the host's pid namespace", r.Code, r.Stderr)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the host process was signalled: %v", err)
	}
	if _, ok := procfs.StartTime(victim.Process.Pid); !ok {
		t.Error("the host process is gone")
	}
}

// actionEnv is testutil's variable naming the action a re-executed test
// binary runs (testutil.RunMain dispatches), for actions run as root.
const actionEnv = "NEXCAGE_TESTUTIL_ACTION"

func init() {
	// supervise-term <nexcage> <root> <config> <bundle> <id> <pid-file>:
	// as a subreaper (the supervisor becomes its child, as with
	// containerd's shim), create and start id, SIGTERM the --pid-file
	// pid and print the status it exits with.
	testutil.RegisterAction("supervise-term", func(a []string) int {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer devnull.Close()
		nexcage := func(args ...string) error {
			cmd := exec.Command(a[0], append([]string{"--root", a[1], "--config", a[2]}, args...)...)
			cmd.Stdin, cmd.Stdout = devnull, devnull
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("nexcage %s: %v: %s", args[0], err, stderr.String())
			}
			return nil
		}
		// The supervisor keeps the stdio create gets: files, not pipes
		// the action would wait on.
		create := exec.Command(a[0], "--root", a[1], "--config", a[2], "create", "--bundle", a[3], "--pid-file", a[5], a[4])
		create.Stdin, create.Stdout, create.Stderr = devnull, devnull, devnull
		if err := create.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "create:", err)
			return 1
		}
		if err := nexcage("start", a[4]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		raw, err := os.ReadFile(a[5])
		pid, _ := strconv.Atoi(string(raw))
		if err != nil || pid <= 0 {
			fmt.Fprintln(os.Stderr, "pid file:", err, string(raw))
			return 1
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			fmt.Fprintln(os.Stderr, "kill:", err)
			return 1
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			fmt.Fprintln(os.Stderr, "wait:", err)
			return 1
		}
		if ws.Signaled() {
			fmt.Printf("signal %d\n", ws.Signal())
		} else {
			fmt.Printf("status %d\n", ws.ExitStatus())
		}
		return 0
	})
}

// TestSupervisorRelaysSIGTERM sends SIGTERM to the --pid-file pid of a
// running Proxmox container (its supervisor, as containerd or an
// administrator would): the supervisor passes it to the container's init
// instead of dying of it, the container stops, and the supervisor exits
// with the init's status (42, from the container's own TERM trap).
func TestSupervisorRelaysSIGTERM(t *testing.T) {
	w := newWorld(t)
	b := testutil.BusyboxBundle(t, "", []string{"sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done"}, nil)
	w.cleanup("relay-term")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), w.env...)
	cmd.Env = append(cmd.Env, actionEnv+"=supervise-term", actionEnv+"_ARGS="+strings.Join(
		[]string{w.nexcage, w.root, w.config, b, "relay-term", filepath.Join(t.TempDir(), "pid")}, "\x1f"))
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("action: %v: %s", err, ee.Stderr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "status 42" {
		t.Errorf("supervisor ended with %q, want \"status 42\" (the container's status after the relayed SIGTERM)", got)
	}
	r := w.must("state", "relay-term")
	if !strings.Contains(r.Stdout, `"status": "stopped"`) && !strings.Contains(r.Stdout, `"status":"stopped"`) {
		t.Errorf("state after the supervisor's SIGTERM: %s", r.Stdout)
	}
}
