package inithelper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/testutil"
)

// The test binary doubles as the exec helper: with ExecVerb as its first
// argument it runs ExecMain (init() locks the main thread for it, as in
// nexcage). testHelperPrepare lets a test narrow the helper first, as a
// container would: NOFILE hard limit, a capability gone from the
// bounding set.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ExecVerb {
		if err := testHelperPrepare(); err != nil {
			fmt.Fprintln(os.Stderr, "test helper:", err)
			os.Exit(99)
		}
		os.Exit(ExecMain(os.Args[2:]))
	}
	// The tests start helpers (exec.Cmd's copying goroutines): none may
	// be left behind.
	goleak.VerifyTestMain(m)
}

func testHelperPrepare() error {
	if v := os.Getenv("TEST_NOFILE_HARD"); v != "" {
		n, _ := strconv.ParseUint(v, 10, 64)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			return err
		}
	}
	if v := os.Getenv("TEST_DROP_BOUND"); v != "" {
		c, ok := CapabilityByName(v)
		if !ok {
			return fmt.Errorf("no capability %s", v)
		}
		if err := capability.DropBound(c); err != nil {
			return err
		}
	}
	if v := os.Getenv("TEST_DROP_EFFECTIVE"); v != "" {
		c, ok := CapabilityByName(v)
		if !ok {
			return fmt.Errorf("no capability %s", v)
		}
		caps, err := capability.NewPid2(0)
		if err == nil {
			err = caps.Load()
		}
		if err != nil {
			return err
		}
		caps.Unset(capability.EFFECTIVE, c)
		if err := caps.Apply(capability.CAPS); err != nil {
			return err
		}
	}
	return nil
}

// runExecHelper runs the test binary as the exec helper with p on fd 3.
func runExecHelper(t *testing.T, p any, env ...string) (stdout, stderr string, code int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the helper tests switch users: run them as root (as the project's tests are)")
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], ExecVerb)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{rd}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd.Close()
	_, _ = wr.Write(data)
	wr.Close()
	err = cmd.Wait()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("helper: %v", err)
	}
	return out.String(), errOut.String(), code
}

// testProcess asks for everything Apply sets; its script prints it.
func testProcess(t *testing.T, cwd string) *Process {
	umask := uint32(0o027)
	caps := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &Process{
		Args: []string{"sh", "-c", `if [ -e /proc/self/fd/3 ]; then echo "fd3: open"; else echo "fd3: closed"; fi
echo "uid: $(id -u) $(id -g)"
echo "pwd: $(pwd)"
echo "env: $(env | sort | tr '\n' ' ')"
echo "umask: $(umask)"
grep -E '^(NoNewPrivs|CapBnd|CapEff|CapPrm|CapInh|CapAmb|Groups):' /proc/self/status
echo "nofile: $(ulimit -n) $(ulimit -Hn)"`},
		Env: []string{"PATH=" + filepath.Dir(testutil.BusyboxPath), "GREETING=hello world"},
		Cwd: cwd,
		UID: 1000, GID: 1000, AdditionalGids: []uint32{1001, 1002},
		Umask: &umask, NoNewPrivileges: true,
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 777, Hard: 4096}},
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps,
			Inheritable: []string{"CAP_NET_BIND_SERVICE"}, Ambient: []string{"CAP_NET_BIND_SERVICE"}},
	}
}

func reportLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestExecAppliesProcess runs the exec helper with a process that asks
// for every field and checks what the exec'd program sees: the bounding
// set is dropped before setuid (it needs CAP_SETPCAP), the ambient set
// survives the switch to uid 1000 (keep-caps, then capset), fd 3 does not
// leak into the process. (This machine's root lacks CAP_SYS_RESOURCE, so
// the rlimit keeps the helper's hard limit.)
func TestExecAppliesProcess(t *testing.T) {
	if _, err := os.Stat(testutil.BusyboxPath); err != nil {
		t.Fatalf("busybox-static is needed (make deps): %v", err)
	}
	cwd := t.TempDir()
	stdout, stderr, code := runExecHelper(t, testProcess(t, cwd), "TEST_NOFILE_HARD=4096")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	got := reportLines(stdout)
	for k, want := range map[string]string{
		"uid":        "1000 1000",
		"pwd":        cwd,
		"env":        "GREETING=hello world PATH=" + filepath.Dir(testutil.BusyboxPath) + " PWD=" + cwd, // PWD: sh's own
		"umask":      "0027",
		"Groups":     "1001 1002",
		"NoNewPrivs": "1",
		"CapBnd":     "0000000000000420",
		"CapPrm":     "0000000000000400",
		"CapEff":     "0000000000000400",
		"CapInh":     "0000000000000400",
		"CapAmb":     "0000000000000400",
		"nofile":     "777 4096",
		"fd3":        "closed",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q\n%s", k, got[k], want, stdout)
		}
	}
}

// TestExecRootKeepsOnlyItsCapabilities: a root process gets its bounding
// set (exec as root fills permitted from it), and nothing else of the
// helper's; no umask given is 0022.
func TestExecRootKeepsOnlyItsCapabilities(t *testing.T) {
	p := testProcess(t, "/")
	p.UID, p.GID, p.AdditionalGids, p.Umask, p.NoNewPrivileges, p.Rlimits = 0, 0, nil, nil, false, nil
	p.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}, Effective: []string{"CAP_CHOWN"}, Permitted: []string{"CAP_CHOWN"}}
	stdout, stderr, code := runExecHelper(t, p)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	got := reportLines(stdout)
	for k, want := range map[string]string{"uid": "0 0", "umask": "0022", "CapBnd": "0000000000000001", "CapEff": "0000000000000001", "NoNewPrivs": "0", "Groups": ""} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q\n%s", k, got[k], want, stdout)
		}
	}
}

// selfBoundingWithout is this process's CapBnd without capability c.
func selfBoundingWithout(t *testing.T, c capability.Cap) (string, uint64) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			m &^= 1 << uint(c)
			return fmt.Sprintf("%016x", m), m
		}
	}
	t.Fatal("no CapBnd")
	return "", 0
}

// TestExecNarrowsToContainerBounding: lxc-attach gives the exec helper
// every capability; it narrows itself to the container's bounding set
// first, so a process without capabilities of its own (root) gets the
// container's set, and one asking for more is refused.
func TestExecNarrowsToContainerBounding(t *testing.T) {
	mask, _ := selfBoundingWithout(t, capability.CAP_KILL)
	p := testProcess(t, "/")
	p.UID, p.GID, p.AdditionalGids, p.Rlimits, p.Capabilities = 0, 0, nil, nil, nil
	p.ContainerBounding = mask
	stdout, stderr, code := runExecHelper(t, p)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	if got := reportLines(stdout)["CapBnd"]; got != mask {
		t.Errorf("CapBnd = %q, want the container's %q", got, mask)
	}
	p = testProcess(t, "/")
	p.ContainerBounding = mask
	_, stderr, code = runExecHelper(t, p)
	if code != 126 || !strings.Contains(stderr, "process.capabilities.bounding asks for CAP_KILL, which this container does not have") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestExecRefuses: a process that cannot get what it asks for fails
// before anything runs, with a message naming the problem.
func TestExecRefuses(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret-tool")
	if err := os.WriteFile(secret, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	hidden := filepath.Join(dir, "private", "tool")
	if err := os.WriteFile(hidden, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		mutate func(p *Process)
		env    []string
		code   int
		want   string
	}{
		{"args[0] missing", func(p *Process) { p.Args = []string{"no-such-tool"} }, nil, 127, `"no-such-tool": executable file not found in $PATH`},
		{"args[0] not executable by the user", func(p *Process) { p.Args = []string{secret} }, nil, 126, "permission denied for uid 1000"},
		{"args[0] in a directory the user cannot search", func(p *Process) { p.Args = []string{hidden} }, nil, 126, "cannot search " + filepath.Dir(hidden)},
		{"cwd missing", func(p *Process) { p.Cwd = "/nonexistent" }, nil, 126, `process.cwd "/nonexistent": no such file or directory`},
		{"cwd a file", func(p *Process) { p.Cwd = secret }, nil, 126, "is not a directory"},
		{"capability the helper lacks", func(p *Process) {
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, "CAP_SYS_MODULE")
		}, []string{"TEST_DROP_BOUND=CAP_SYS_MODULE"}, 126, "process.capabilities.bounding asks for CAP_SYS_MODULE, which this container does not have"},
		{"ambient not inheritable", func(p *Process) { p.Capabilities.Inheritable = nil }, nil, 126, "process.capabilities.ambient: CAP_NET_BIND_SERVICE must be in the permitted and inheritable sets"},
		{"unknown capability", func(p *Process) { p.Capabilities.Effective = []string{"CAP_FLY"} }, nil, 126, `"CAP_FLY" is not a capability`},
		{"rlimit above the hard limit without CAP_SYS_RESOURCE", func(p *Process) { p.Rlimits[0].Hard = 8192 }, []string{"TEST_NOFILE_HARD=4096", "TEST_DROP_EFFECTIVE=CAP_SYS_RESOURCE"}, 126,
			"hard limit 8192 is above the container's 4096 and its init lacks CAP_SYS_RESOURCE"},
		{"soft above hard", func(p *Process) { p.Rlimits[0].Soft = 9000 }, nil, 126, "soft limit 9000 is above the hard limit 4096"},
		{"sysctl for exec", func(p *Process) { p.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} }, nil, 126, "linux.sysctl cannot be set for an exec'd process"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := testProcess(t, "/")
			c.mutate(p)
			stdout, stderr, code := runExecHelper(t, p, c.env...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, c.code, c.want)
			}
			if stdout != "" {
				t.Errorf("the process ran: %q", stdout)
			}
		})
	}
	// Bad input on fd 3.
	if _, stderr, code := runExecHelper(t, "not a process"); code != 2 || !strings.Contains(stderr, "bad process description on fd 3") {
		t.Errorf("bad JSON: exit %d %q", code, stderr)
	}
}

// TestWriteSysctls: net.* keys are written under /proc/sys/net in sorted
// order; a key that does not exist there fails with its name; keys that
// are not net.* or could leave /proc/sys/net are refused.
func TestWriteSysctls(t *testing.T) {
	root := t.TempDir()
	old := procSys
	procSys = root + "/"
	defer func() { procSys = old }()
	if err := os.MkdirAll(filepath.Join(root, "net/ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"net/ipv4/ip_unprivileged_port_start", "net/ipv4/ip_forward"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("1024\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeSysctls(map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ip_forward": "1"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "net/ipv4/ip_unprivileged_port_start")); string(data) != "0" {
		t.Errorf("written %q", data)
	}
	err := writeSysctls(map[string]string{"net.core.no_such_knob": "1"})
	if err == nil || !strings.Contains(err.Error(), `linux.sysctl net.core.no_such_knob="1" cannot be set`) {
		t.Errorf("missing key: %v", err)
	}
	for _, k := range []string{"kernel.hostname", "net", "net.ipv4/../../kernel.x", "net..x", "net.a b"} {
		if _, err := SysctlPath(k); err == nil {
			t.Errorf("SysctlPath(%q) accepted", k)
		}
	}
	if p, err := SysctlPath("net.ipv4.conf.eth0.forwarding"); err != nil || p != "/proc/sys/net/ipv4/conf/eth0/forwarding" {
		t.Errorf("SysctlPath = %q %v", p, err)
	}
}

// TestCheckRlimitsNeedsSysResource: raising a hard limit needs
// CAP_SYS_RESOURCE in the helper, checked before ready.
func TestCheckRlimitsNeedsSysResource(t *testing.T) {
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	p := &Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1, Hard: now.Max}}}
	if err := checkRlimits(p); err != nil {
		t.Errorf("keeping the hard limit: %v", err)
	}
	p.Rlimits[0].Type = "RLIMIT_BOGUS"
	if err := checkRlimits(p); err == nil {
		t.Error("unknown rlimit accepted")
	}
}

func TestCapabilityByName(t *testing.T) {
	for _, n := range []string{"CAP_NET_ADMIN", "cap_net_admin", "NET_ADMIN"} {
		if c, ok := CapabilityByName(n); !ok || c != capability.CAP_NET_ADMIN {
			t.Errorf("%s = %v %v", n, c, ok)
		}
	}
	if _, ok := CapabilityByName("CAP_FLY"); ok {
		t.Error("CAP_FLY known")
	}
}
