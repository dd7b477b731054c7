package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/testutil"
)

// processReport is what the test process prints about itself.
const processReport = `exec >/out/$REPORT 2>&1
echo "id: $(id)"
echo "pwd: $(pwd)"
echo "env: $(env | sort | tr '\n' ' ')"
echo "umask: $(umask)"
grep -E '^(NoNewPrivs|CapBnd|CapEff|CapPrm|CapAmb|Groups):' /proc/self/status
echo "sysctl: $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
echo "nofile: $(ulimit -n) $(ulimit -Hn)"
echo END
`

// processBundle is a busybox bundle whose process asks for everything
// the init helper applies: user 1000:1000 with two more groups, cwd
// /app, env, umask 027, noNewPrivileges, an rlimit, a reduced capability
// set (CAP_NET_BIND_SERVICE ambient, so a non-root process has it) and a
// net.* sysctl Proxmox refuses as a raw key. /out is a host directory.
func processBundle(t *testing.T, args []string) (bundle, out string) {
	t.Helper()
	dir := testutil.ContainerTempDir(t)
	out = filepath.Join(dir, "out")
	testutil.WritableDir(t, out)
	umask := uint32(0o027)
	bundle = testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), args, func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1001, 1002}, Umask: &umask}
		s.Process.Cwd = "/app"
		s.Process.Env = append(s.Process.Env, "GREETING=hello world", "REPORT=init")
		s.Process.NoNewPrivileges = true
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 777, Hard: 888}}
		caps := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps,
			Inheritable: []string{"CAP_NET_BIND_SERVICE"}, Ambient: []string{"CAP_NET_BIND_SERVICE"}}
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/out", Type: "bind", Source: out, Options: []string{"rbind", "rw"}})
	})
	if err := os.Mkdir(filepath.Join(bundle, "rootfs/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bundle, out
}

// waitReport waits for /out/<name> to be complete and returns its lines.
func waitReport(t *testing.T, out, name string) string {
	t.Helper()
	var report string
	Eventually(t, 60*time.Second, "the process's report "+name, func() bool {
		data, _ := os.ReadFile(filepath.Join(out, name))
		report = string(data)
		return strings.HasSuffix(report, "END\n")
	})
	return report
}

// checkProcessReport asserts every field of processBundle's process.
func checkProcessReport(t *testing.T, what, report string) {
	t.Helper()
	line := func(prefix string) string {
		for _, l := range strings.Split(report, "\n") {
			if v, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Errorf("%s: no %q line in:\n%s", what, prefix, report)
		return ""
	}
	for _, c := range []struct{ prefix, want string }{
		{"pwd:", "/app"},
		{"umask:", "0027"},
		{"Groups:", "1001 1002"},
		{"NoNewPrivs:", "1"},
		// CAP_KILL (5) and CAP_NET_BIND_SERVICE (10) bound; a uid-1000
		// process keeps only its ambient CAP_NET_BIND_SERVICE.
		{"CapBnd:", "0000000000000420"},
		{"CapEff:", "0000000000000400"},
		{"CapAmb:", "0000000000000400"},
		{"sysctl:", "0"},
		{"nofile:", "777 888"},
	} {
		if got := line(c.prefix); got != c.want {
			t.Errorf("%s: %s %q, want %q\n%s", what, c.prefix, got, c.want, report)
		}
	}
	if id := line("id:"); !strings.HasPrefix(id, "uid=1000 gid=1000 groups=") || !strings.Contains(id, "1001") || !strings.Contains(id, "1002") {
		t.Errorf("%s: id = %q", what, id)
	}
	if env := line("env:"); !strings.Contains(env, "GREETING=hello world ") || !strings.Contains(env, "PATH=/usr/local/sbin:") {
		t.Errorf("%s: env = %q", what, env)
	}
}

// TestProxmoxProcessThroughHelper: the whole OCI process reaches the
// container's process through nexcage's init helper, on every Proxmox
// version pvesim plays (PVESIM_PVE_VERSION; the helper path is the same
// on all; NEXCAGE_TEST_PVE_VERSIONS="8.4" narrows the list), and exec
// applies the same fields without ever putting the process on argv.
func TestProxmoxProcessThroughHelper(t *testing.T) {
	versions := []string{"8.4", "9.0", "9.1"}
	if v := os.Getenv("NEXCAGE_TEST_PVE_VERSIONS"); v != "" {
		versions = strings.Fields(v)
	}
	for _, version := range versions {
		t.Run("pve"+version, func(t *testing.T) {
			e := newPveEnvWith(t, false, "", "PVESIM_PVE_VERSION="+version)
			n := e.n
			// The simulated node really is that version (pvesim records it).
			if rec, err := os.ReadFile(filepath.Join(e.root, "var/lib/pvesim/nodes/pve/pve-version")); err != nil || strings.TrimSpace(string(rec)) != version {
				t.Fatalf("pvesim node version = %q, %v; want %s", rec, err, version)
			}
			script := processReport + "exec sleep 1000\n"
			bundle, out := processBundle(t, []string{"sh", "-c", script})
			id := "proc-" + strings.ReplaceAll(version, ".", "")
			n.Must("create", "--bundle", bundle, id)
			n.CleanupContainer(id)

			conf, err := os.ReadFile(e.confPath(e.vmidOf(id)))
			if err != nil {
				t.Fatal(err)
			}
			for _, dropped := range []string{"lxc.init.uid", "lxc.init.gid", "lxc.init.groups", "lxc.init.cwd", "lxc.environment", "lxc.prlimit", "lxc.cap."} {
				if strings.Contains(string(conf), dropped) {
					t.Errorf("config has %s, which PVE 8 and 9.0 drop or which narrows the helper:\n%s", dropped, conf)
				}
			}
			// The sysctl is written at create, before ready: the process
			// has not run yet.
			if _, err := os.Stat(filepath.Join(out, "init")); err == nil {
				t.Fatal("create ran the process")
			}
			n.Must("start", id)
			checkProcessReport(t, "init", waitReport(t, out, "init"))

			// exec with runc's process.json: the same fields, the process
			// on a pipe, so its environment never shows in /proc/*/cmdline.
			release := filepath.Join(out, "release")
			secret := "s3cr3t-" + id
			pj := filepath.Join(t.TempDir(), "process.json")
			var p specs.Process
			cfg, err := os.ReadFile(filepath.Join(bundle, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var spec specs.Spec
			if err := json.Unmarshal(cfg, &spec); err != nil {
				t.Fatal(err)
			}
			p = *spec.Process
			p.Args = []string{"sh", "-c", processReport + "while [ ! -e /out/release ]; do sleep 0.05; done\n"}
			p.Env = append(p.Env[:len(p.Env)-1], "REPORT=exec", "SECRET="+secret)
			data, _ := json.Marshal(&p)
			if err := os.WriteFile(pj, data, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(n.Bin, append(append([]string{}, n.Globals...), "exec", "--process", pj, id)...)
			cmd.Env = append(os.Environ(), n.Env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			var report string
			Eventually(t, 60*time.Second, "the exec'd process's report", func() bool {
				select {
				case err := <-exited:
					t.Fatalf("exec ended before its report: %v\n%s", err, stderr.String())
				default:
				}
				data, _ := os.ReadFile(filepath.Join(out, "exec"))
				report = string(data)
				return strings.HasSuffix(report, "END\n")
			})
			if holder := procWithCmdline(secret); holder != "" {
				t.Errorf("the exec'd process's environment is on a command line: %s", holder)
			}
			if err := os.WriteFile(release, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := <-exited; err != nil {
				t.Errorf("exec: %v\n%s", err, stderr.String())
			}
			checkProcessReport(t, "exec", report)
			if !strings.Contains(report, "SECRET="+secret) {
				t.Errorf("exec: env lacks SECRET:\n%s", report)
			}
		})
	}
}

// TestProxmoxPrivilegedStarts: a privileged `ostype: unmanaged` container
// whose image has an empty /dev (busybox, like the runtime-tools suite's
// rootfs) starts and runs its process on PVE 8 and 9. It did not while
// nexcage left Proxmox's default ttys in place: with no console, LXC has
// no /dev/lxc for common.conf's lxc.tty.dir and fails the tty setup.
func TestProxmoxPrivilegedStarts(t *testing.T) {
	for _, version := range []string{"8.4", "9.1"} {
		t.Run("pve"+version, func(t *testing.T) {
			e := newPveEnvWith(t, false, `"unprivileged": false`, "PVESIM_PVE_VERSION="+version)
			bundle, out := processBundle(t, []string{"sh", "-c", processReport + "exec sleep 1000\n"})
			id := "priv-" + strings.ReplaceAll(version, ".", "")
			e.n.Must("create", "--bundle", bundle, id)
			e.n.CleanupContainer(id)
			conf, err := os.ReadFile(e.confPath(e.vmidOf(id)))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(conf), "unprivileged: 1") {
				t.Errorf("container is unprivileged:\n%s", conf)
			}
			for _, line := range []string{"console: 0", "tty: 0"} {
				if !strings.Contains("\n"+string(conf), "\n"+line+"\n") {
					t.Errorf("config lacks %q:\n%s", line, conf)
				}
			}
			e.n.Must("start", id)
			checkProcessReport(t, "init", waitReport(t, out, "init"))
		})
	}
}

// procWithCmdline returns "pid: cmdline" of a process whose command line
// contains s, or "".
func procWithCmdline(s string) string {
	pids, _ := procfs.Pids()
	for _, pid := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err == nil && strings.Contains(string(data), s) {
			return strconv.Itoa(pid) + ": " + strings.ReplaceAll(string(data), "\x00", " ")
		}
	}
	return ""
}

// TestProxmoxProcessRefusedAtCreate: a process that cannot get what the
// bundle asks for fails create with a clear error; it never runs with
// less.
func TestProxmoxProcessRefusedAtCreate(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	for _, c := range []struct {
		name   string
		mutate func(s *specs.Spec)
		want   string
	}{
		{"missing cwd", func(s *specs.Spec) { s.Process.Cwd = "/nonexistent" }, `process.cwd "/nonexistent"`},
		{"args[0] missing", func(s *specs.Spec) { s.Process.Args = []string{"no-such-tool"} }, `"no-such-tool": executable file not found in $PATH`},
		{"args[0] not executable by the user", func(s *specs.Spec) {
			s.Process.User.UID = 1000
			s.Process.Args = []string{"/secret-tool"}
		}, "permission denied for uid 1000"},
		{"sysctl outside the namespace", func(s *specs.Spec) {
			s.Linux.Sysctl = map[string]string{"net.core.no_such_knob": "1"}
		}, "net.core.no_such_knob"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := testutil.ContainerTempDir(t)
			bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), []string{"sleep", "1000"}, c.mutate)
			if err := os.WriteFile(filepath.Join(bundle, "rootfs/secret-tool"), []byte("#!/bin/sh\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			n := *n
			n.T = t
			n.Fails(8, c.want, "create", "--bundle", bundle, "refused")
			e.assertNothingLeft(c.name)
		})
	}
}
