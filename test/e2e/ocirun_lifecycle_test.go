package e2e

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// routingConfig sends ids starting with "crun-" to crun and everything
// else to runc, through routing rules as a user would write them.
const routingConfig = `{
  "runtime": {
    "routing": [
      {"pattern": "^crun-.*$", "runtime": "crun"},
      {"pattern": ".*", "runtime": "runc"}
    ]
  }
}`

// ociState is what `nexcage state` prints.
type ociState struct {
	OCIVersion string    `json:"ociVersion"`
	ID         string    `json:"id"`
	Pid        int       `json:"pid"`
	Status     string    `json:"status"`
	Bundle     string    `json:"bundle"`
	Rootfs     string    `json:"rootfs"`
	Created    time.Time `json:"created"`
	Backend    string    `json:"backend"`
}

func stateOf(t *testing.T, n *Nexcage, id string) ociState {
	t.Helper()
	r := n.Must("state", id)
	var s ociState
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		t.Fatalf("state %s: not JSON: %v: %q", id, err, r.Stdout)
	}
	return s
}

// outBundle is a busybox bundle running script with a host directory
// bind-mounted read-write at /out.
func outBundle(t *testing.T, script string) (bundle, out string) {
	t.Helper()
	out = t.TempDir()
	bundle = testutil.BusyboxBundle(t, "", []string{"sh", "-c", script}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/out", Type: "bind", Source: out, Options: []string{"rbind", "rw"}})
	})
	return bundle, out
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestOCIRunLifecycle(t *testing.T) {
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			n := NewNexcage(t, WriteConfig(t, routingConfig))
			id := rt + "-life"
			bundle, out := outBundle(t, "echo started > /out/started; while true; do sleep 1; done")
			pidFile := filepath.Join(t.TempDir(), "init.pid")
			n.CleanupContainer(id)

			// create: the process is set up but does not run yet.
			n.Must("create", "--bundle", bundle, "--pid-file", pidFile, id)
			s := stateOf(t, n, id)
			if s.Status != "created" || s.ID != id || s.Bundle != bundle || s.Backend != rt {
				t.Fatalf("after create: %+v", s)
			}
			if s.Pid <= 0 || !exists("/proc/"+strconv.Itoa(s.Pid)) {
				t.Fatalf("created container has no live pid: %d", s.Pid)
			}
			pidData, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			if string(pidData) != strconv.Itoa(s.Pid) {
				t.Fatalf("pid file %q, state pid %d (digits only, no newline)", pidData, s.Pid)
			}
			if exists(filepath.Join(out, "started")) {
				t.Fatal("process ran before start")
			}
			n.Fails(4, "container with given ID already exists", "create", "--bundle", bundle, id)

			// start: the process runs, same pid.
			n.Must("start", id)
			Eventually(t, 10*time.Second, "the container's output", func() bool { return exists(filepath.Join(out, "started")) })
			s = stateOf(t, n, id)
			if s.Status != "running" || s.Pid <= 0 || !exists("/proc/"+strconv.Itoa(s.Pid)) {
				t.Fatalf("after start: %+v", s)
			}

			// lifecycle errors with runc's words and nexcage's exit codes.
			n.Fails(10, "cannot start an already running container", "start", id)
			n.Fails(10, "cannot delete container "+id+" that is not stopped: running", "delete", id)

			n.Must("kill", id, "KILL")
			Eventually(t, 10*time.Second, "the container to stop", func() bool { return stateOf(t, n, id).Status == "stopped" })
			if s := stateOf(t, n, id); s.Pid != 0 {
				t.Fatalf("stopped container reports pid %d", s.Pid)
			}
			n.Fails(10, "container not running", "kill", id, "KILL")
			n.Fails(10, "cannot start a container that has stopped", "start", id)

			n.Must("delete", id)
			n.Fails(3, "does not exist", "state", id)
			assertRootEmpty(t, n.Root())
		})
	}
}

// assertRootEmpty checks that nothing of any container is left in root.
func assertRootEmpty(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "@") {
			t.Errorf("container directory %s left in root", name)
			continue
		}
		sub, _ := os.ReadDir(filepath.Join(root, name))
		for _, s := range sub {
			t.Errorf("%s/%s left in root", name, s.Name())
		}
	}
}

func TestOCIRunRun(t *testing.T) {
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			n := NewNexcage(t, WriteConfig(t, routingConfig))
			id := rt + "-run"
			n.CleanupContainer(id)
			bundle := testutil.BusyboxBundle(t, "", []string{"sh", "-c", "echo hello from " + rt + "; echo oops >&2; exit 7"}, nil)
			r := n.Run("run", "--bundle", bundle, id)
			if r.Code != 7 {
				t.Fatalf("run: want the container's exit code 7, got %s", r)
			}
			if r.Stdout != "hello from "+rt+"\n" || !strings.Contains(r.Stderr, "oops") {
				t.Fatalf("run output: %s", r)
			}
			// A foreground run removes the container when it exits.
			n.Fails(3, "does not exist", "state", id)
			assertRootEmpty(t, n.Root())

			// nexcage style: run --name <id> <bundle dir as image>, detached.
			bundle2, out := outBundle(t, "echo up > /out/up; sleep 1000")
			n.Must("run", "-d", "--name", id, bundle2)
			Eventually(t, 10*time.Second, "the detached container's output", func() bool { return exists(filepath.Join(out, "up")) })
			if s := stateOf(t, n, id); s.Status != "running" || s.Backend != rt {
				t.Fatalf("after run -d: %+v", s)
			}
			n.Must("kill", "-s", "SIGKILL", id)
			Eventually(t, 10*time.Second, "the container to stop", func() bool { return stateOf(t, n, id).Status == "stopped" })
			n.Must("delete", "--name", id)
			assertRootEmpty(t, n.Root())
		})
	}
}

func TestOCIRunListBothBackends(t *testing.T) {
	n := NewNexcage(t, WriteConfig(t, routingConfig))
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	for _, id := range []string{"crun-l1", "runc-l1"} {
		n.CleanupContainer(id)
		n.Must("create", "--bundle", bundle, id)
	}
	n.Must("start", "crun-l1")
	r := n.Must("list")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID PID STATUS BUNDLE CREATED OWNER BACKEND" {
		t.Fatalf("list table:\n%s", r.Stdout)
	}
	for _, want := range []string{"crun-l1 running crun", "runc-l1 created runc"} {
		found := false
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) == 7 && f[0]+" "+f[2]+" "+f[6] == want {
				found = true
			}
		}
		if !found {
			t.Fatalf("list has no row %q:\n%s", want, r.Stdout)
		}
	}
	var states []ociState
	if err := json.Unmarshal([]byte(n.Must("list", "--format", "json").Stdout), &states); err != nil || len(states) != 2 {
		t.Fatalf("list json: %v %+v", err, states)
	}
	if q := n.Must("list", "-q").Stdout; q != "crun-l1\nrunc-l1\n" {
		t.Fatalf("list -q: %q", q)
	}
	if q := n.Must("--runtime", "crun", "list", "-q").Stdout; q != "crun-l1\n" {
		t.Fatalf("list --runtime crun: %q", q)
	}
	// stop: sleep as pid 1 ignores SIGTERM, so this takes the SIGKILL path.
	n.Must("stop", "-t", "1", "crun-l1")
	if s := stateOf(t, n, "crun-l1"); s.Status != "stopped" {
		t.Fatalf("after stop: %+v", s)
	}
	n.Must("stop", "crun-l1") // stopping a stopped container succeeds
}

func TestOCIRunErrors(t *testing.T) {
	n := NewNexcage(t, WriteConfig(t, routingConfig))
	t.Run("invalid bundle leaves nothing", func(t *testing.T) {
		bundle := testutil.BusyboxBundle(t, "", []string{"true"}, func(s *specs.Spec) { s.Root.Path = "no-such-rootfs" })
		n.Fails(5, "no-such-rootfs", "create", "--bundle", bundle, "runc-bad")
		n.Fails(3, "does not exist", "state", "runc-bad")
	})
	t.Run("invalid id", func(t *testing.T) {
		n.Fails(2, "", "create", "--bundle", t.TempDir(), "../escape")
	})
	t.Run("crun rejects a 1.3.0 spec with a clear error", func(t *testing.T) {
		bundle := testutil.BusyboxBundle(t, "", []string{"true"}, func(s *specs.Spec) { s.Version = "1.3.0" })
		n.CleanupContainer("crun-v13")
		n.Fails(8, `set it to "1.0.2" or route the container to runc`, "create", "--bundle", bundle, "crun-v13")
		n.Fails(3, "does not exist", "state", "crun-v13")
	})
	t.Run("delete --force of a missing container", func(t *testing.T) {
		n.Must("delete", "--force", "runc-never")
	})
	assertRootEmpty(t, n.Root())
}

// TestOCIRunContainerdArgv drives nexcage with the exact argv shapes the
// containerd runc v2 shim uses.
func TestOCIRunContainerdArgv(t *testing.T) {
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			config := WriteConfig(t, routingConfig)
			root := filepath.Join(t.TempDir(), "default")
			bundle, out := outBundle(t, "echo ran > /out/ran; sleep 1000")
			logFile := filepath.Join(bundle, "log.json")
			n := &Nexcage{T: t, Bin: NexcageBin(t), Globals: []string{"--config", config, "--root", root, "--log", logFile, "--log-format", "json"}}
			id := rt + "-ctrd"
			n.CleanupContainer(id)
			pidFile := filepath.Join(bundle, "init.pid")
			n.Must("create", "--bundle", bundle, "--pid-file", pidFile, id)
			pid, err := os.ReadFile(pidFile)
			if err != nil || strings.TrimSpace(string(pid)) != string(pid) {
				t.Fatalf("pid file %q: %v", pid, err)
			}
			n.Must("start", id)
			Eventually(t, 10*time.Second, "the container's output", func() bool { return exists(filepath.Join(out, "ran")) })
			ps := n.Must("ps", "--format", "json", id)
			var pids []int
			if err := json.Unmarshal([]byte(ps.Stdout), &pids); err != nil || len(pids) == 0 || strconv.Itoa(pids[0]) != string(pid) {
				t.Fatalf("ps --format json: %v %s (init pid %s)", err, ps, pid)
			}
			ex := n.Must("exec", id, "sh", "-c", "echo exec-ok")
			if ex.Stdout != "exec-ok\n" {
				t.Fatalf("exec: %s", ex)
			}
			if r := n.Run("exec", id, "sh", "-c", "exit 5"); r.Code != 5 {
				t.Fatalf("exec exit code: %s", r)
			}
			n.Must("pause", id)
			if s := stateOf(t, n, id); s.Status != "paused" {
				t.Fatalf("after pause: %+v", s)
			}
			n.Must("resume", id)
			if s := stateOf(t, n, id); s.Status != "running" {
				t.Fatalf("after resume: %+v", s)
			}
			n.Must("kill", id, "9")
			Eventually(t, 10*time.Second, "the container to stop", func() bool { return stateOf(t, n, id).Status == "stopped" })
			n.Must("delete", id)
			// containerd reads the last "level":"error" line of --log.
			n.Fails(3, "does not exist", "start", id)
			data, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			var last struct{ Level, Msg, Time string }
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Level != "error" || !strings.Contains(last.Msg, "does not exist") || last.Time == "" {
				t.Fatalf("last log line %q: %v", lines[len(lines)-1], err)
			}
		})
	}
}

// TestOCIRunPreserveFDs: create --preserve-fds 1 hands the caller's fd 3
// through nexcage to runc/crun and on to the container's process, which
// writes into it once started; the container sees nothing else of
// nexcage's (its fd 4 is not open).
func TestOCIRunPreserveFDs(t *testing.T) {
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			n := NewNexcage(t, WriteConfig(t, routingConfig))
			id := rt + "-fds"
			bundle := testutil.BusyboxBundle(t, "", []string{"sh", "-c", "if [ -e /proc/self/fd/4 ]; then echo fd4-open >&3; else echo via-fd3 >&3; fi"}, nil)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			n.CleanupContainer(id)
			cmd := exec.Command(n.Bin, append(append([]string{}, n.Globals...), "create", "--preserve-fds", "1", "--bundle", bundle, id)...)
			cmd.ExtraFiles = []*os.File{w}
			// A file, not a pipe: the container's process keeps create's
			// stdio, so a pipe would not end before the container does.
			out := tempFile(t, "create-out")
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Run(); err != nil {
				w.Close()
				data, _ := os.ReadFile(out.Name())
				t.Fatalf("create --preserve-fds 1: %v: %s", err, data)
			}
			w.Close() // the container's copy is the only writer left
			n.Must("start", id)
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(got)) != "via-fd3" {
				t.Errorf("the container wrote %q through fd 3, want via-fd3", got)
			}
		})
	}
}
