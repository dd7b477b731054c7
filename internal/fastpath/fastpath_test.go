package fastpath

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/state"
)

// world is a state root with a config routing everything to runc, whose
// path is true(1), and a fake runc container "c1" whose init is this
// test process (alive) or a pid that is not running (stopped).
type world struct {
	t            *testing.T
	root, config string
	execs        [][]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{t: t, root: filepath.Join(dir, "root"), config: filepath.Join(dir, "config.json")}
	cfg := `{"runtime": {"routing": [{"pattern": ".*", "runtime": "runc"}]}, "runtimes": {"runc": {"path": "/bin/true"}}}`
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	old := execve
	execve = func(path string, argv, env []string) error {
		w.execs = append(w.execs, argv)
		return nil
	}
	t.Cleanup(func() { execve = old })
	return w
}

// runcContainer writes runc's state directory of id; alive makes this
// process its init, created adds the exec fifo.
func (w *world) runcContainer(id string, alive, created bool) {
	w.t.Helper()
	dir := filepath.Join(w.root, "@runc", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		w.t.Fatal(err)
	}
	pid, start := os.Getpid(), selfStart(w.t)
	if !alive {
		start++ // another process than the one now at pid
	}
	st := map[string]any{"id": id, "init_process_pid": pid, "init_process_start": start, "created": "2026-01-02T03:04:05Z",
		"config": map[string]any{"version": "1.0.2", "rootfs": "/b/rootfs", "labels": []string{"bundle=/b", "a=b"}}}
	data, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		w.t.Fatal(err)
	}
	if created {
		if err := syscall.Mkfifo(filepath.Join(dir, "exec.fifo"), 0o600); err != nil {
			w.t.Fatal(err)
		}
	}
}

func selfStart(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	n, err := strconv.Atoi(f[19])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// try runs Try and returns whether the fast path took argv and the argv
// it exec'd, if any.
func (w *world) try(args ...string) (handled bool, exec []string) {
	w.execs = nil
	_, handled = Try(append([]string{"--root", w.root, "--config", w.config}, args...))
	if len(w.execs) > 0 {
		exec = w.execs[0]
	}
	return handled, exec
}

func TestVerbsBecomeTheRuntimeOnlyWhenItWillAgree(t *testing.T) {
	for _, tc := range []struct {
		name           string
		alive, created bool
		args           []string
		want           string // the exec'd argv after --root, "" for handed over
	}{
		{"start created", true, true, []string{"start", "c1"}, "start c1"},
		{"start running", true, false, []string{"start", "c1"}, ""},
		{"start stopped", false, false, []string{"start", "c1"}, ""},
		{"kill running", true, false, []string{"kill", "c1", "KILL"}, "kill c1 9"},
		{"kill --all created", true, true, []string{"kill", "--all", "c1"}, "kill --all c1 15"},
		{"kill stopped", false, false, []string{"kill", "c1"}, ""},
		{"kill bad signal", true, false, []string{"kill", "c1", "NOPE"}, ""},
		{"delete stopped", false, false, []string{"delete", "c1"}, "delete c1"},
		{"delete created", true, true, []string{"delete", "c1"}, "delete c1"},
		{"delete running", true, false, []string{"delete", "c1"}, ""},
		{"delete --force running", true, false, []string{"delete", "--force", "c1"}, "delete --force c1"},
		{"pause", true, false, []string{"pause", "c1"}, "pause c1"},
		{"unknown id", true, false, []string{"start", "c2"}, ""},
		{"create of an existing id", true, false, []string{"create", "--bundle", "/nonexistent", "c1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.runcContainer("c1", tc.alive, tc.created)
			handled, argv := w.try(tc.args...)
			if handled {
				t.Fatalf("handled without exec")
			}
			got := ""
			if argv != nil {
				if argv[0] != "true" || argv[1] != "--root" || argv[2] != filepath.Join(w.root, "@runc") {
					t.Fatalf("exec'd %q", argv)
				}
				got = strings.Join(argv[3:], " ")
			}
			if got != tc.want {
				t.Fatalf("exec'd %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDeleteForgetsTheRecordFirst(t *testing.T) {
	w := newWorld(t)
	w.runcContainer("c1", false, false)
	s, err := state.NewStore(w.root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(&state.Container{ID: "c1", Backend: "runc", Status: state.Created, Nonce: "n"}); err != nil {
		t.Fatal(err)
	}
	if _, argv := w.try("delete", "c1"); argv == nil {
		t.Fatal("delete not exec'd")
	}
	if exists, _ := s.Exists("c1"); exists {
		t.Fatal("the record is still there when the runtime runs")
	}
	if _, err := os.Stat(filepath.Join(w.root, "@locks", "c1.lock")); !os.IsNotExist(err) {
		t.Fatalf("lock file left: %v", err)
	}
}

// TestDeleteRemovesACrashedCreatesLock: a create that crashed leaves the
// id's lock file (no record); delete takes the lock, so the file goes.
func TestDeleteRemovesACrashedCreatesLock(t *testing.T) {
	w := newWorld(t)
	w.runcContainer("c1", false, false)
	lock := filepath.Join(w.root, "@locks", "c1.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, argv := w.try("delete", "c1"); argv == nil {
		t.Fatal("delete not exec'd")
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Fatalf("lock file left: %v", err)
	}
}

func TestRecordDecidesTheRuntime(t *testing.T) {
	w := newWorld(t)
	s, err := state.NewStore(w.root)
	if err != nil {
		t.Fatal(err)
	}
	// A Proxmox record: the full CLI's.
	if err := s.Save(&state.Container{ID: "px", Backend: "proxmox-lxc", Status: state.Created}); err != nil {
		t.Fatal(err)
	}
	if handled, argv := w.try("kill", "px"); handled || argv != nil {
		t.Fatalf("a Proxmox container went through the passthrough: %q", argv)
	}
}

func TestStateReadsTheRuntimeStateDirectory(t *testing.T) {
	w := newWorld(t)
	w.runcContainer("c1", true, true)
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = wr
	handled, argv := w.try("state", "c1")
	os.Stdout = old
	_ = wr.Close()
	if !handled || argv != nil {
		t.Fatalf("state: handled %v, exec'd %q", handled, argv)
	}
	var st state.OCIState
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.ID != "c1" || st.Status != state.Created || st.Pid != os.Getpid() || st.Bundle != "/b" || st.Rootfs != "/b/rootfs" ||
		st.Backend != "runc" || st.OCIVersion != "1.0.2" || st.Annotations["a"] != "b" {
		t.Fatalf("state %+v", st)
	}
}

// bundleDir writes a bundle whose config.json is cfg, with a rootfs
// directory.
func bundleDir(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCreateRunsTheRuntime: create runs the runtime's create with
// create's flags as its only child and writes nothing of nexcage's
// (issue 16); a bundle the full CLI refuses or explains is handed to it;
// a failing runtime's exit status is create's.
func TestCreateRunsTheRuntime(t *testing.T) {
	good := `{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"]}}`
	for _, tc := range []struct {
		name, cfg string
		exit      int // the stand-in runtime's exit status
		handled   bool
	}{
		{"valid bundle", good, 0, true},
		{"the runtime fails", good, 3, true},
		{"not JSON", `{"ociVersion": `, 0, false},
		{"no root", `{"ociVersion": "1.0.2"}`, 0, false},
		{"missing rootfs", `{"ociVersion": "1.0.2", "root": {"path": "nope"}}`, 0, false},
		// runc would take these; nexcage refuses them by name.
		{"a hostname with a newline", `{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "hostname": "a\nb", "process": {"args": ["true"]}}`, 0, false},
		{"a garbage ociVersion", `{"ociVersion": "x", "root": {"path": "rootfs"}, "process": {"args": ["true"]}}`, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			calls := w.recordingRuntime(tc.exit)
			b := bundleDir(t, tc.cfg)
			pid, log := filepath.Join(t.TempDir(), "pid"), filepath.Join(t.TempDir(), "log.json")
			code, handled := Try([]string{"--root", w.root, "--config", w.config, "--log", log, "--log-format", "json",
				"create", "--bundle", b, "--pid-file", pid, "c9"})
			want := 0
			if tc.exit != 0 {
				want = errs.ExitCode(errs.New(errs.KindBackend, "runtime failed")) // reported as the full CLI does
			}
			if handled != tc.handled || code != want {
				t.Fatalf("handled %v code %d, want %v %d", handled, code, tc.handled, want)
			}
			data, _ := os.ReadFile(calls)
			globals := "--root " + filepath.Join(w.root, "@runc") + " --log " + log + " --log-format json "
			wantCalls := globals + "create --bundle " + b + " --pid-file " + pid + " c9\n"
			if tc.exit != 0 {
				wantCalls += globals + "delete --force c9\n" // the undo
			}
			if !tc.handled {
				wantCalls = ""
			}
			if string(data) != wantCalls {
				t.Fatalf("runtime calls %q, want %q", data, wantCalls)
			}
			entries, err := os.ReadDir(w.root)
			if err != nil && tc.handled {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "@runc" && e.Name() != "@locks" {
					t.Errorf("create left %s in the state root", e.Name())
				}
			}
		})
	}
	t.Run("the runtime fails, no --log", func(t *testing.T) {
		w := newWorld(t)
		w.recordingRuntime(3)
		code, handled := Try([]string{"--root", w.root, "--config", w.config, "create", "--bundle", bundleDir(t, good), "c9"})
		if !handled || code != errs.ExitCode(errs.New(errs.KindBackend, "runtime failed")) {
			t.Fatalf("handled %v code %d", handled, code)
		}
		entries, _ := os.ReadDir(w.root)
		for _, e := range entries {
			if e.Name() != "@runc" && e.Name() != "@locks" {
				t.Errorf("create left %s in the state root", e.Name())
			}
		}
		// The private log lives beside the id's lock and goes with it.
		if locks, _ := os.ReadDir(filepath.Join(w.root, "@locks")); len(locks) > 0 {
			t.Errorf("create left %s in @locks (its private log?)", locks[0].Name())
		}
	})
	t.Run("an id another runtime has", func(t *testing.T) {
		w := newWorld(t)
		calls := w.recordingRuntime(0)
		if err := os.MkdirAll(filepath.Join(w.root, "@crun", "c9"), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, handled := Try([]string{"--root", w.root, "--config", w.config, "create", "--bundle", bundleDir(t, good), "c9"}); handled {
			t.Fatal("taken")
		}
		if data, _ := os.ReadFile(calls); len(data) != 0 {
			t.Fatalf("the runtime ran: %q", data)
		}
	})
}

// recordingRuntime makes runc a script that appends its arguments to a
// file (returned) and exits with exit.
func (w *world) recordingRuntime(exit int) string {
	w.t.Helper()
	dir := w.t.TempDir()
	calls, bin := filepath.Join(dir, "calls"), filepath.Join(dir, "runc")
	script := "#!/bin/sh\necho \"$@\" >> " + calls + "\nexit " + strconv.Itoa(exit) + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		w.t.Fatal(err)
	}
	cfg := `{"runtime": {"routing": [{"pattern": ".*", "runtime": "runc"}]}, "runtimes": {"runc": {"path": "` + bin + `"}}}`
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return calls
}
