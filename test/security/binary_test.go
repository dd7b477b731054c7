package security

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.RunMain(m)) }

// world is a nexcage with a pvesim node: ids matching ^runc- go to runc,
// the rest to the Proxmox backend.
type world struct {
	t       *testing.T
	nexcage string
	sim     string // PVESIM_ROOT
	root    string // --root
	config  string
	env     []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, nexcage: testutil.NexcageBin(t)}
	sim := testutil.PvesimBin(t)
	// An unprivileged container's root must traverse the test's temp root
	// to reach its rootfs, as on a real host.
	base := testutil.ContainerTempDir(t)
	w.sim, w.root = filepath.Join(base, "pve"), filepath.Join(base, "state", "root")
	bin := filepath.Join(base, "bin")
	for _, d := range []string{bin, w.sim} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
		if err := os.Symlink(sim, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	w.env = []string{"PVESIM_ROOT=" + w.sim, "PVESIM_LOCK_TIMEOUT_MS=500"}
	cmd := exec.Command(sim, "init")
	cmd.Env = append(os.Environ(), w.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pvesim init: %v\n%s", err, out)
	}
	cfg := fmt.Sprintf(`{"proxmox": {"pct_path": %q, "pveam_path": %q, "pvesh_path": %q, "pveversion_path": %q, "etc_pve": %q, "lxc_path": %q, "lock_dir": %q, "node": "pve", "timeout": 60},
"storage": {"image_path": %q},
"runtime": {"routing": [{"pattern": "^runc-.*$", "runtime": "runc"}, {"pattern": ".*", "runtime": "lxc"}]}}`,
		filepath.Join(bin, "pct"), filepath.Join(bin, "pveam"), filepath.Join(bin, "pvesh"), filepath.Join(bin, "pveversion"),
		filepath.Join(w.sim, "etc/pve"), filepath.Join(w.sim, "var/lib/lxc"), filepath.Join(w.sim, "run/lock/lxc"), filepath.Join(w.sim, "nexcage-images"))
	w.config = filepath.Join(base, "nexcage.json")
	if err := os.WriteFile(w.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) run(args ...string) testutil.Result {
	w.t.Helper()
	return testutil.Run(w.t, w.nexcage, w.env, append([]string{"--root", w.root, "--config", w.config}, args...)...)
}

func (w *world) must(args ...string) testutil.Result {
	w.t.Helper()
	r := w.run(args...)
	if r.Code != 0 {
		w.t.Fatalf("nexcage %s: exit %d: %s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r
}

// cleanup deletes id at the end of the test.
func (w *world) cleanup(id string) {
	w.t.Cleanup(func() {
		if r := w.run("delete", "--force", id); r.Code != 0 {
			w.t.Errorf("cleanup of %s: exit %d: %s", id, r.Code, r.Stderr)
		}
	})
}

// TestStatePermissions creates containers on both backends with umask 0
// and checks that everything nexcage writes under --root is private:
// directories 0700, files 0600. The runtimes' own directories (@runc,
// @crun) are checked to be 0700 but not walked: what runc keeps inside is
// runc's business, and nobody else can reach it.
func TestStatePermissions(t *testing.T) {
	w := newWorld(t)
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	px := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	w.must("create", "--bundle", px, "perm-px")
	w.cleanup("perm-px")
	rc := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	w.must("create", "--bundle", rc, "runc-perm")
	w.cleanup("runc-perm")

	checked := 0
	err := filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(w.root, p)
		mode := fi.Mode().Perm()
		checked++
		switch {
		case d.IsDir():
			if mode != 0o700 {
				t.Errorf("directory %s has mode %o, want 700", rel, mode)
			}
			if rel == "@runc" || rel == "@crun" {
				return filepath.SkipDir
			}
		case fi.Mode().IsRegular():
			if mode != 0o600 {
				t.Errorf("file %s has mode %o, want 600", rel, mode)
			}
		default:
			t.Errorf("%s is neither a file nor a directory (%v)", rel, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// nexcage keeps no record of a runc container it passed through
	// (issue 16): runc's state directory is its only trace.
	for _, want := range []string{"perm-px/state.json", "@runc/runc-perm"} {
		if _, err := os.Stat(filepath.Join(w.root, want)); err != nil {
			t.Errorf("expected %s: %v", want, err)
		}
	}
	t.Logf("checked %d paths under --root", checked)
}

// TestIDsCannotLeaveRoot tries ids that would name paths outside --root
// with every verb; each is refused as a usage error and nothing appears
// beside --root or at the absolute path.
func TestIDsCannotLeaveRoot(t *testing.T) {
	w := newWorld(t)
	b := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	parent := filepath.Dir(w.root)
	outside := filepath.Join(t.TempDir(), "abs-target")
	ids := []string{"../escape", "..", ".", "a/../../escape", "/" + strings.TrimPrefix(outside, "/"), "escape/..", "@locks", "@runc", "a\nb"}
	for _, id := range ids {
		for _, args := range [][]string{
			{"create", "--bundle", b, id}, {"run", "-d", "--bundle", b, id}, {"state", id}, {"start", id},
			{"kill", id, "KILL"}, {"delete", id}, {"delete", "--force", id},
		} {
			r := w.run(args...)
			if r.Code != 2 || !strings.Contains(r.Stderr, "invalid container ID format") {
				t.Errorf("nexcage %q: exit %d, stderr %q; want exit 2 and \"invalid container ID format\"", args, r.Code, r.Stderr)
			}
		}
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != filepath.Base(w.root) {
			t.Errorf("created beside --root: %s", e.Name())
		}
	}
	if _, err := os.Lstat(outside); err == nil {
		t.Errorf("created at the absolute id path %s", outside)
	}
	if ents, _ := os.ReadDir(w.root); len(ents) > 1 || (len(ents) == 1 && ents[0].Name() != "@locks") {
		t.Errorf("left under --root: %v", ents)
	}
}

// TestNoConfigInjection creates a Proxmox container whose process args,
// env and annotations carry newlines and Proxmox syntax, where the
// backend can carry them safely (over the init helper's socket), and checks the
// written <vmid>.conf line by line: no injected hook, no extra key, every
// raw key one Proxmox accepts.
func TestNoConfigInjection(t *testing.T) {
	w := newWorld(t)
	evil := "lxc.hook.pre-start: /bin/sh -c 'touch /tmp/pwned'"
	b := testutil.BusyboxBundle(t, "", []string{"sh", "-c", "true\n" + evil, "x,mp0=/,mp=/host"}, func(s *specs.Spec) {
		s.Process.Env = append(s.Process.Env, "EVIL=a;b,c=d")
	})
	w.must("create", "--bundle", b, "inject")
	w.cleanup("inject")
	data, err := os.ReadFile(filepath.Join(w.root, "inject", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	vmid, err := strconv.Atoi(st.Data["vmid"])
	if err != nil {
		t.Fatalf("no vmid in state: %s", data)
	}
	conf, err := os.ReadFile(filepath.Join(w.sim, "etc/pve/nodes/pve/lxc", strconv.Itoa(vmid)+".conf"))
	if err != nil {
		t.Fatal(err)
	}
	c, warns, err := pve.ParseConfig(conf)
	if err != nil || len(warns) > 0 {
		t.Fatalf("written .conf: %v %q\n%s", err, warns, conf)
	}
	if strings.Contains(string(conf), "hook") || strings.Contains(string(conf), "pwned") {
		t.Errorf("injected text reached the .conf:\n%s", conf)
	}
	for k := range c.Options {
		if strings.HasPrefix(k, "mp") {
			t.Errorf("a mount point appeared from process args: %s: %s", k, c.Options[k])
		}
	}
	for _, r := range c.Raw {
		if err := pve.CheckRawKey(r.Key); err != nil {
			t.Errorf("raw key %s: %v", r.Key, err)
		}
	}
	t.Logf("written .conf:\n%s", conf)
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Errorf("/tmp/pwned exists")
	}
}
