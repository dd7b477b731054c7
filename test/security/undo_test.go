package security

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/lockfile"
	"github.com/nexcage/nexcage/internal/testutil"
)

// Persist before acquire, undo on interrupt, delete --force after a crash
// (issue 14 point 4): a create is stopped at each of its steps, then
// either SIGKILLed (and `delete --force` must free everything) or sent
// SIGINT/SIGTERM (and its own undo must free everything, without a
// delete). At the step itself, every resource that exists must already be
// named by the container's record.
//
// The steps are held without sleeps: a lock the create waits for is held
// by the test (the create is there once it opened the lock's file, seen
// with inotify), and a pct or runc call is held by a wrapper
// (test/reliability/pctwrap, runcWrapper). pvesim's create
// worker steps (PVESIM_PAUSE) are in test/reliability/worker_crash_test.go.

// undoWorld is a security world whose pct is pctwrap in front of pvesim.
type undoWorld struct {
	*world
	wrapDir string
	base    []string // node files before the test
}

func newUndoWorld(t *testing.T) *undoWorld {
	t.Helper()
	w := &undoWorld{world: newWorld(t), wrapDir: t.TempDir()}
	wrap := testutil.Binary(t, "", "github.com/nexcage/nexcage/test/reliability/pctwrap", "pctwrap")
	data, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	px := cfg["proxmox"].(map[string]any)
	px["pct_path"], px["kill_grace"] = wrap, 5
	cfg["runtimes"] = map[string]any{"runc": map[string]any{"path": w.runcWrapper()}}
	data, _ = json.Marshal(cfg)
	if err := os.WriteFile(w.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "PCTWRAP_REAL="+testutil.PvesimBin(t), "PCTWRAP_DIR="+w.wrapDir)
	w.base = w.nodeFiles()
	t.Cleanup(w.destroyAll)
	return w
}

// sub is w for the subtest t, which shares w's node and state root (each
// subtest leaves them as it found them, or fails).
func (w *undoWorld) sub(t *testing.T) *undoWorld {
	inner := *w.world
	inner.t = t
	c := *w
	c.world = &inner
	// A failed subtest may leave containers: gone before the next one.
	t.Cleanup(func() {
		if t.Failed() {
			c.destroyAll()
		}
	})
	return &c
}

// destroyAll deletes every container left by a failed test, so that no
// LXC container outlives it: nexcage's records with delete --force, then
// whatever is still on the node with pct.
func (w *undoWorld) destroyAll() {
	if r := w.run("list", "-q"); r.Code == 0 {
		for _, id := range strings.Fields(r.Stdout) {
			w.run("delete", "--force", id)
		}
	}
	confs, _ := filepath.Glob(filepath.Join(w.sim, "etc/pve/nodes/*/lxc/*.conf"))
	for _, p := range confs {
		vmid := strings.TrimSuffix(filepath.Base(p), ".conf")
		for _, args := range [][]string{{"unlock", vmid}, {"stop", vmid}, {"destroy", vmid, "--purge", "1"}} {
			cmd := exec.Command(testutil.PvesimBin(w.t), args...)
			cmd.Args[0] = "pct"
			cmd.Env = append(os.Environ(), w.env...)
			_ = cmd.Run()
		}
	}
}

// runcWrapper writes a stand-in for runc that runs the real one, but can
// hold a runc verb before it runs (RUNCWRAP_MODE=before-<verb>) or `runc
// create` after it succeeded (after-create), as pctwrap does for pct: it writes its pid
// to $PCTWRAP_DIR/held and goes on once $PCTWRAP_DIR/release exists.
func (w *undoWorld) runcWrapper() string {
	real, err := exec.LookPath("runc")
	if err != nil {
		w.t.Fatal(err)
	}
	script := `#!/bin/sh
verb=
for a in "$@"; do case "$a" in create|run|delete|state|start|kill|list) verb=$a; break;; esac; done
hold() {
	echo $$ > "$PCTWRAP_DIR/held.tmp" && mv "$PCTWRAP_DIR/held.tmp" "$PCTWRAP_DIR/held"
	while [ ! -e "$PCTWRAP_DIR/release" ]; do sleep 0.01; done
}
if [ "$RUNCWRAP_MODE" = "before-$verb" ]; then hold; fi
if [ "$verb" = create ] && [ "$RUNCWRAP_MODE" = after-create ]; then ` + real + ` "$@" || exit $?; hold; exit 0; fi
exec ` + real + ` "$@"
`
	p := filepath.Join(w.t.TempDir(), "runc")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *undoWorld) lxcPath() string    { return filepath.Join(w.sim, "var/lib/lxc") }
func (w *undoWorld) cacheDir() string   { return filepath.Join(w.sim, "var/lib/vz/template/cache") }
func (w *undoWorld) helperBase() string { return filepath.Join(w.lxcPath(), ".nexcage") }

// nodeFiles lists the node's files but those kept on purpose that do not
// grow with the number of containers: Proxmox's own lock files and
// container logs (/run/lock/lxc/pve-config-<vmid>.lock,
// /run/pve/ct-<vmid>.stderr), pvesim's cluster lock and version record,
// and the one lock of nexcage's template cache.
func (w *undoWorld) nodeFiles() []string {
	var out []string
	err := filepath.WalkDir(w.sim, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(w.sim, p)
		if d.IsDir() || strings.HasPrefix(rel, "run/lock/") || strings.HasPrefix(rel, "run/pve/") ||
			rel == "etc/pve/.pvesim-cluster.lock" || strings.HasSuffix(rel, "template/cache/.nexcage/lock") ||
			strings.HasPrefix(rel, "var/lib/pvesim/nodes/") && strings.HasSuffix(rel, "/pve-version") {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// assertClean checks that nothing of any container is left: no new node
// file (config, volume, template, template reference, helper directory or
// copy, vmid.lock), no VMID in .vmlist, nothing under --root but the
// node-version cache, no mount under the node, no record in `list`.
func (w *undoWorld) assertClean(when string) {
	w.t.Helper()
	var left []string
	for _, f := range w.nodeFiles() {
		if !slices.Contains(w.base, f) {
			left = append(left, f)
		}
	}
	if len(left) > 8 {
		left = append(left[:8:8], fmt.Sprintf("... %d more", len(left)-8))
	}
	if len(left) > 0 {
		w.t.Errorf("%s: left on the node: %q", when, left)
	}
	if data, err := os.ReadFile(filepath.Join(w.sim, "etc/pve/.vmlist")); err == nil {
		var l struct {
			IDs map[string]any `json:"ids"`
		}
		if err := json.Unmarshal(data, &l); err != nil || len(l.IDs) > 0 {
			w.t.Errorf("%s: .vmlist: %s (%v)", when, data, err)
		}
	}
	var state []string
	_ = filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if rel, _ := filepath.Rel(w.root, p); rel != "@proxmox-lxc/node-version.json" {
				state = append(state, rel)
			}
		}
		return nil
	})
	if len(state) > 0 {
		w.t.Errorf("%s: left under --root: %q", when, state)
	}
	if m := testutil.MountsUnder(w.t, w.sim); len(m) > 0 {
		w.t.Errorf("%s: mounts left: %q", when, m)
	}
	if ids := w.listIDs(); len(ids) > 0 {
		w.t.Errorf("%s: list shows %q", when, ids)
	}
}

func (w *undoWorld) listIDs() []string {
	w.t.Helper()
	return testutil.ListIDs(w.t, w.must("list", "--format", "json").Stdout)
}

// record reads id's state file as it is now (nil when there is none).
func (w *undoWorld) record(id string) map[string]string {
	data, err := os.ReadFile(filepath.Join(w.root, id, "state.json"))
	if err != nil {
		return nil
	}
	var st struct {
		Data map[string]string `json:"data"`
	}
	if json.Unmarshal(data, &st) != nil {
		return nil // being replaced: read again
	}
	if st.Data == nil {
		st.Data = map[string]string{}
	}
	return st.Data
}

// assertNamed checks persist before acquire at a step: each helper
// directory, packed template, template reference and CT config that
// exists is named by the record.
func (w *undoWorld) assertNamed(step string, rec map[string]string) {
	w.t.Helper()
	var unnamed []string
	if ents, err := os.ReadDir(w.helperBase()); err == nil {
		for _, e := range ents {
			if e.IsDir() && filepath.Join(w.helperBase(), e.Name()) != rec["helper_dir"] {
				unnamed = append(unnamed, "helper directory "+e.Name())
			}
		}
	}
	tmpls, _ := filepath.Glob(filepath.Join(w.cacheDir(), "nexcage-*"))
	for _, p := range tmpls {
		if !strings.HasSuffix(p, ".json") && "local:vztmpl/"+filepath.Base(p) != rec["ostemplate"] {
			unnamed = append(unnamed, "template "+filepath.Base(p))
		}
	}
	refs, _ := filepath.Glob(filepath.Join(w.cacheDir(), ".nexcage/*.refs/*"))
	for _, p := range refs {
		if filepath.Base(p) != rec["template_ref"] {
			unnamed = append(unnamed, "template reference "+filepath.Base(p))
		}
	}
	confs, _ := filepath.Glob(filepath.Join(w.sim, "etc/pve/nodes/*/lxc/*.conf"))
	for _, p := range confs {
		if strings.TrimSuffix(filepath.Base(p), ".conf") != rec["vmid"] {
			unnamed = append(unnamed, "CT config "+filepath.Base(p))
		}
	}
	if len(unnamed) > 0 {
		w.t.Errorf("%s: taken but not named by the record %v: %q", step, rec, unnamed)
	}
}

// createStep is a point of `nexcage create` where the test holds it.
type createStep struct {
	name string
	// lock is the lock file the test holds so that create waits for it
	// at this step; "" for a pct step.
	lock func(w *undoWorld, id string) string
	// mode is pctwrap's PCTWRAP_MODE for a pct step, runcMode the runc
	// wrapper's for a runc step (ids routed to runc: "runc-...").
	mode, runcMode string
	// recorded are the record's data keys that must be set at the step.
	recorded []string
	sig      syscall.Signal // for the interrupt variant
	// recreate: after the crash and delete --force, the id is created
	// and deleted again (once per route).
	recreate bool
}

var createSteps = []createStep{
	// Another nexcage works on the id: nothing is taken yet.
	{name: "id-lock", lock: func(w *undoWorld, id string) string { return filepath.Join(w.root, "@locks", id+".lock") },
		sig: syscall.SIGINT},
	// The helper directory (and the helper's copy) is made, the packed
	// template's volume id and this container's reference on it are
	// recorded, and the pack waits for the template cache.
	{name: "template-cache-lock", lock: func(w *undoWorld, id string) string { return filepath.Join(w.cacheDir(), ".nexcage", "lock") },
		recorded: []string{"helper_dir", "ostemplate", "template_ref", "owner_ref"}, sig: syscall.SIGTERM},
	// The template is packed and referenced; the VMID turn of the node is
	// another nexcage's.
	{name: "vmid-lock", lock: func(w *undoWorld, id string) string { return filepath.Join(w.helperBase(), "vmid.lock") },
		recorded: []string{"helper_dir", "ostemplate", "template_ref"}, sig: syscall.SIGINT},
	// The VMID is recorded, pct create not run yet (the VMID lock held).
	{name: "before-pct-create", mode: "before-create", recorded: []string{"vmid", "packed"}, sig: syscall.SIGTERM},
	// The CT exists; its raw lines are not added yet.
	{name: "after-pct-create", mode: "after-create", recorded: []string{"vmid"}, sig: syscall.SIGINT},
	// The supervisor runs and listens; pct start not run yet.
	{name: "before-pct-start", mode: "before-start", recorded: []string{"vmid", "supervisor", "helper_dir"}, sig: syscall.SIGTERM},
	// The container runs its init helper, connecting to the supervisor.
	{name: "after-pct-start", mode: "after-start", recorded: []string{"vmid", "supervisor"}, sig: syscall.SIGTERM, recreate: true},
	// The runc route: the id's lock is held, runc create not run yet
	// (nexcage keeps no record of a runc container) ...
	{name: "runc-before-create", runcMode: "before-create", sig: syscall.SIGINT},
	// ... and runc created the container (its init waits for start).
	{name: "runc-after-create", runcMode: "after-create", sig: syscall.SIGTERM, recreate: true},
}

// heldCreate is a `nexcage create` stopped at a step.
type heldCreate struct {
	cmd    *exec.Cmd
	exited chan error
	out    string
	pct    int            // the held pct (pct steps)
	lock   *lockfile.Lock // the lock the test holds (lock steps)
	rec    map[string]string
}

// startHeld starts `nexcage create` of id and returns once it is at
// step: it waits for the lock the test holds (it has its file open), or
// pct is held, and the record holds step.recorded.
func (w *undoWorld) startHeld(id, bundle string, step createStep) *heldCreate {
	t := w.t
	t.Helper()
	h := &heldCreate{exited: make(chan error, 1)}
	var lockPath string
	if step.lock != nil {
		lockPath = step.lock(w, id)
		if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
			t.Fatal(err)
		}
		l, err := lockfile.Acquire(t.Context(), lockPath, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		h.lock = l
		t.Cleanup(func() { _ = l.Unlock() })
	}
	// Create is at a lock step once it opened the lock's file (to try
	// the lock, again and again, while the test holds it): an inotify
	// IN_OPEN on the file, which nothing else opens.
	var opened func() bool
	if step.lock != nil {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if _, err := unix.InotifyAddWatch(fd, lockPath, unix.IN_OPEN); err != nil {
			t.Fatal(err)
		}
		seen := false
		opened = func() bool {
			buf := make([]byte, 4096)
			if n, _ := unix.Read(fd, buf); n > 0 {
				seen = true
			}
			return seen
		}
	}
	held := filepath.Join(w.wrapDir, "held")
	_ = os.Remove(held)
	_ = os.Remove(filepath.Join(w.wrapDir, "release"))
	h.cmd = exec.Command(w.nexcage, "--root", w.root, "--config", w.config, "create", "--bundle", bundle, id)
	h.cmd.Env = append(append(os.Environ(), w.env...), "PCTWRAP_MODE="+step.mode, "RUNCWRAP_MODE="+step.runcMode)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	h.out = filepath.Join(t.TempDir(), "out")
	f, err := os.Create(h.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h.cmd.Stdout, h.cmd.Stderr = f, f
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.exited <- h.cmd.Wait() }()
	reached := func() bool {
		if step.lock != nil {
			if !opened() {
				return false
			}
		} else {
			data, err := os.ReadFile(held)
			if err != nil || len(data) == 0 {
				return false
			}
			h.pct, _ = strconv.Atoi(string(data))
		}
		h.rec = w.record(id)
		for _, k := range step.recorded {
			if h.rec == nil || h.rec[k] == "" {
				return false
			}
		}
		return true
	}
	deadline := time.After(90 * time.Second)
	for !reached() {
		select {
		case err := <-h.exited:
			data, _ := os.ReadFile(h.out)
			t.Fatalf("nexcage create ended before %s (%v): %s", step.name, err, data)
		case <-deadline:
			t.Fatalf("timed out waiting for create to reach %s (record %v)", step.name, w.record(id))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if step.lock != nil && step.name == "id-lock" && h.rec != nil {
		t.Errorf("a record exists while create waits for the id's lock: %v", h.rec)
	}
	w.assertNamed(step.name, h.rec)
	return h
}

// TestUndoAfterCrashAtEachCreateStep: SIGKILL (nexcage and its process
// group) at each step of a create through the Proxmox backend; whatever
// was held (pct, a lock) then goes on as on a real host. `list` shows the
// record, `delete --force` frees everything (configs, volumes, VMIDs,
// packed templates and their references, helper directories and copies,
// the supervisor, mounts, lock files, the record), and the id can be
// created and deleted again. The subtests share one node and state root,
// each leaving it as it found it.
func TestUndoAfterCrashAtEachCreateStep(t *testing.T) {
	world := newUndoWorld(t)
	b := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	for _, step := range createSteps {
		t.Run(step.name, func(t *testing.T) {
			w := world.sub(t)
			id := step.name + "-kill"
			h := w.startHeld(id, b, step)
			if err := syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-h.exited
			if h.pct > 0 {
				// pct runs on without nexcage.
				if err := os.WriteFile(filepath.Join(w.wrapDir, "release"), []byte("go"), 0o644); err != nil {
					t.Fatal(err)
				}
				testutil.WaitGone(t, h.pct, 60*time.Second)
			}
			if h.lock != nil {
				if err := h.lock.UnlockRemove(); err != nil {
					t.Fatal(err)
				}
			}
			if h.rec != nil {
				if ids := w.listIDs(); len(ids) != 1 || ids[0] != id {
					t.Errorf("after the crash, list shows %q, want [%s]", ids, id)
				}
			}
			sup, _ := strconv.Atoi(h.rec["supervisor"])
			if step.mode == "after-start" && (sup <= 0 || !testutil.Alive(sup)) {
				t.Errorf("no live supervisor recorded after pct start: %v", h.rec)
			}
			w.must("delete", "--force", id)
			if sup > 0 {
				testutil.WaitGone(t, sup, 60*time.Second)
			}
			w.assertClean("after delete --force")
			if step.recreate {
				w.must("create", "--bundle", b, id)
				w.must("delete", id)
				w.assertClean("after a fresh create and delete")
			}
		})
	}
}

// TestUndoOnInterruptAtEachCreateStep: SIGINT or SIGTERM to nexcage at
// each step of a create: the create is cancelled (a held pct gets
// SIGTERM), every undo step runs, nexcage exits 128+n, and nothing is
// left, the record included, without any delete.
func TestUndoOnInterruptAtEachCreateStep(t *testing.T) {
	world := newUndoWorld(t)
	b := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	for _, step := range createSteps {
		t.Run(step.name+"-"+step.sig.String(), func(t *testing.T) {
			w := world.sub(t)
			id := step.name + "-intr"
			h := w.startHeld(id, b, step)
			if err := h.cmd.Process.Signal(step.sig); err != nil {
				t.Fatal(err)
			}
			if step.name == "template-cache-lock" {
				// The undo releases the template reference, which needs
				// the cache lock too.
				if err := h.lock.Unlock(); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			select {
			case err = <-h.exited:
			case <-time.After(120 * time.Second):
				t.Fatal("nexcage did not end after the interrupt")
			}
			data, _ := os.ReadFile(h.out)
			want := 128 + int(step.sig)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != want {
				t.Errorf("nexcage ended with %v, want exit %d: %s", err, want, data)
			}
			if !strings.Contains(string(data), "interrupted by") {
				t.Errorf("no interrupt in the message: %s", data)
			}
			if h.pct > 0 {
				testutil.WaitGone(t, h.pct, 60*time.Second)
			}
			if sup, _ := strconv.Atoi(h.rec["supervisor"]); sup > 0 {
				testutil.WaitGone(t, sup, 60*time.Second)
			}
			if h.lock != nil {
				if err := h.lock.UnlockRemove(); err != nil {
					t.Fatal(err)
				}
			}
			w.assertClean("after the interrupt")
		})
	}
}

// TestRunDeletesOnlyItsOwnContainer (issue 14 point 5): while a
// foreground `run` of an id waits for its container (without the id's
// lock), another nexcage deletes that container with --force and creates a
// new one under the same id. When the run's wait ends it must leave the
// new container alone: it deletes only the container it created (same
// creation nonce). The run is stopped (SIGSTOP) from before the delete
// until the new container exists, so it checks the id exactly then. Both
// routes: runc (the runtime's own `run` in the foreground) and the Proxmox
// backend (create, start, wait for the supervisor).
func TestRunDeletesOnlyItsOwnContainer(t *testing.T) {
	for _, id := range []string{"runc-own", "px-own"} {
		t.Run(id, func(t *testing.T) {
			w := newWorld(t)
			b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
			run := exec.Command(w.nexcage, "--root", w.root, "--config", w.config, "run", "--bundle", b, id)
			run.Env = append(os.Environ(), w.env...)
			run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out := filepath.Join(t.TempDir(), "out")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			run.Stdout, run.Stderr = f, f
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- run.Wait() }()
			t.Cleanup(func() {
				_ = syscall.Kill(run.Process.Pid, syscall.SIGCONT)
				_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			})
			// The run waits for its container once it runs.
			first := waitRecord(t, w, id, exited, out, func(st recordState) bool { return st.Status == "running" })
			if err := syscall.Kill(run.Process.Pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			w.must("delete", "--force", id)
			w.must("create", "--bundle", b, id)
			w.cleanup(id)
			// A runc container created through the passthrough has no
			// record (issue 16): the run then finds none and leaves the
			// id alone; a Proxmox one has a record with a new nonce.
			passthrough := strings.HasPrefix(id, "runc-")
			var second recordState
			if passthrough {
				if _, err := os.Stat(filepath.Join(w.root, id, "state.json")); !os.IsNotExist(err) {
					t.Fatalf("a record of the passthrough's runc container: %v", err)
				}
			} else if second = readRecord(t, w, id); second.Nonce == "" || second.Nonce == first.Nonce {
				t.Fatalf("nonces: first %q, second %q", first.Nonce, second.Nonce)
			}
			if err := syscall.Kill(run.Process.Pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
			case <-time.After(120 * time.Second):
				t.Fatal("the run did not end after its container was deleted")
			}
			// The run's wait path is over: the new container is untouched.
			if !passthrough {
				if after := readRecord(t, w, id); after.Nonce != second.Nonce {
					t.Errorf("record after the run ended: nonce %q, want the new container's %q", after.Nonce, second.Nonce)
				}
			}
			r := w.must("state", id)
			if !strings.Contains(r.Stdout, `"status": "created"`) {
				t.Errorf("the new container after the first run ended: %s", r.Stdout)
			}
			if vmid := second.Data["vmid"]; vmid != "" {
				if _, err := os.Stat(filepath.Join(w.sim, "etc/pve/nodes/pve/lxc", vmid+".conf")); err != nil {
					t.Errorf("the new container's CT: %v", err)
				}
				if sup, _ := strconv.Atoi(second.Data["supervisor"]); sup <= 0 || !testutil.Alive(sup) {
					t.Errorf("the new container's supervisor %d is gone", sup)
				}
			}
			// ... because the run saw the other nonce (not because it
			// found no record), where there is one.
			if data, _ := os.ReadFile(out); !passthrough && !strings.Contains(string(data), "now names another container") {
				t.Errorf("the first run did not see the new container: %s", data)
			}
		})
	}
}

// recordState is what the tests read of a state file.
type recordState struct {
	Status string            `json:"status"`
	Nonce  string            `json:"nonce"`
	Data   map[string]string `json:"data"`
}

func readRecord(t *testing.T, w *world, id string) recordState {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.root, id, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st recordState
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitRecord polls `nexcage state` of id until ok holds, and returns the
// record then; it fails when the process behind exited ends first.
func waitRecord(t *testing.T, w *world, id string, exited chan error, out string, ok func(recordState) bool) recordState {
	t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		if r := w.run("state", id); r.Code == 0 {
			var st recordState
			if json.Unmarshal([]byte(r.Stdout), &st) == nil && ok(st) {
				return readRecord(t, w, id)
			}
		}
		select {
		case err := <-exited:
			data, _ := os.ReadFile(out)
			t.Fatalf("nexcage run ended early (%v): %s", err, data)
		case <-deadline:
			t.Fatalf("timed out waiting for %s", id)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startHeldVerb starts nexcage with args and PCTWRAP_MODE=mode and
// returns once pctwrap holds pct, with nexcage, its exit channel, its
// output file and the held pct's pid.
func (w *undoWorld) startHeldVerb(mode string, args ...string) (*exec.Cmd, chan error, string, int) {
	return w.startHeldEnv("PCTWRAP_MODE="+mode, args...)
}

// startHeldEnv is startHeldVerb with the wrapper's mode given as env.
func (w *undoWorld) startHeldEnv(env string, args ...string) (*exec.Cmd, chan error, string, int) {
	t := w.t
	t.Helper()
	held := filepath.Join(w.wrapDir, "held")
	_ = os.Remove(held)
	_ = os.Remove(filepath.Join(w.wrapDir, "release"))
	cmd := exec.Command(w.nexcage, append([]string{"--root", w.root, "--config", w.config}, args...)...)
	cmd.Env = append(append(os.Environ(), w.env...), env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(90 * time.Second)
	for {
		if data, err := os.ReadFile(held); err == nil && len(data) > 0 {
			pct, _ := strconv.Atoi(string(data))
			return cmd, exited, out, pct
		}
		select {
		case err := <-exited:
			data, _ := os.ReadFile(out)
			t.Fatalf("nexcage %q ended before it was held (%s, %v): %s", args, env, err, data)
		case <-deadline:
			t.Fatalf("timed out waiting for nexcage %q to be held (%s)", args, env)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitExit waits for nexcage to end and checks it exited 128+sig,
// saying it was interrupted.
func waitExit(t *testing.T, exited chan error, out string, sig syscall.Signal) {
	t.Helper()
	var err error
	select {
	case err = <-exited:
	case <-time.After(120 * time.Second):
		t.Fatal("nexcage did not end after the interrupt")
	}
	data, _ := os.ReadFile(out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+int(sig) {
		t.Errorf("nexcage ended with %v, want exit %d: %s", err, 128+int(sig), data)
	}
	if !strings.Contains(string(data), "interrupted by") {
		t.Errorf("no interrupt in the message: %s", data)
	}
}

// TestUndoOnInterruptedRunAndDelete: `run` and `delete` turn
// SIGINT/SIGTERM into a cancel too. A foreground run interrupted while pct
// create is held undoes its create (exit 130, nothing left), and so does a
// detached run on the runc route interrupted before `runc run`. A
// delete interrupted while pct destroy is held stops there (pct gets
// SIGTERM, exit 143) and keeps the record, so that delete --force frees
// the rest.
func TestUndoOnInterruptedRunAndDelete(t *testing.T) {
	world := newUndoWorld(t)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	t.Run("run", func(t *testing.T) {
		w := world.sub(t)
		cmd, exited, out, pct := w.startHeldVerb("after-create", "run", "--bundle", b, "intr-run")
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		waitExit(t, exited, out, syscall.SIGINT)
		testutil.WaitGone(t, pct, 60*time.Second)
		w.assertClean("after the interrupted run")
	})
	t.Run("run-detach-runc", func(t *testing.T) {
		w := world.sub(t)
		cmd, exited, out, _ := w.startHeldEnv("RUNCWRAP_MODE=before-run", "run", "--detach", "--bundle", b, "runc-intr-run")
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitExit(t, exited, out, syscall.SIGTERM)
		w.assertClean("after the interrupted detached run")
	})
	t.Run("delete", func(t *testing.T) {
		w := world.sub(t)
		w.must("create", "--bundle", b, "intr-delete")
		sup, _ := strconv.Atoi(w.record("intr-delete")["supervisor"])
		cmd, exited, out, pct := w.startHeldVerb("before-destroy", "delete", "--force", "intr-delete")
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitExit(t, exited, out, syscall.SIGTERM)
		testutil.WaitGone(t, pct, 60*time.Second)
		if ids := w.listIDs(); len(ids) != 1 {
			t.Errorf("after the interrupted delete, list shows %q; want the record kept", ids)
		}
		w.must("delete", "--force", "intr-delete")
		if sup > 0 {
			testutil.WaitGone(t, sup, 60*time.Second)
		}
		w.assertClean("after delete --force")
	})
}
