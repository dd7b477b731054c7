package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nexcage/nexcage/internal/errs"
)

// helperEnv makes the test binary act as a second process holding a lock.
const helperEnv = "NEXCAGE_STATE_TEST_LOCK_HELPER"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(lockHelper(v))
	}
	goleak.VerifyTestMain(m)
}

// lockHelper locks <root>/<id>, says "locked", and holds the lock until
// its stdin is closed.
func lockHelper(arg string) int {
	root, id := arg, os.Getenv(helperEnv+"_ID")
	s, err := NewStore(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := s.Lock(context.Background(), id)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := l.Unlock(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sample(id string) *Container {
	return &Container{
		OCIVersion: "1.0.2", ID: id, Status: Created, Pid: 42, Bundle: "/b/" + id,
		Created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Owner: "root",
		Backend: "runc", Data: map[string]string{"vmid": "101"},
	}
}

func TestValidateID(t *testing.T) {
	good := []string{"a", "c1", "A-b_c.d+e", "...", ".a", "a..b", "0", strings.Repeat("x", MaxIDLen)}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	bad := []string{"", ".", "..", "../x", "/", "a/b", "/abs", "a b", "a\nb", "a\x00b", "@locks",
		"é", "a:b", "a*", "~", strings.Repeat("x", MaxIDLen+1)}
	for _, id := range bad {
		err := ValidateID(id)
		if err == nil {
			t.Errorf("ValidateID(%q) = nil, want error", id)
			continue
		}
		if errs.KindOf(err) != errs.KindUsage || !strings.Contains(err.Error(), "invalid container ID format") {
			t.Errorf("ValidateID(%q) = %v (kind %v)", id, err, errs.KindOf(err))
		}
	}
}

func TestNewStore(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "a", "b")
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("root mode = %v, %v; want 0700", fi.Mode(), err)
	}
	if s.root != root {
		t.Errorf("root = %q, want %q", s.root, root)
	}
	if got, want := s.BackendRoot("runc"), filepath.Join(root, "@runc"); got != want {
		t.Errorf("BackendRoot = %q, want %q", got, want)
	}

	// An existing root keeps its mode.
	existing := filepath.Join(dir, "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(existing); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(existing); fi.Mode().Perm() != 0o755 {
		t.Errorf("existing root mode changed to %v", fi.Mode())
	}

	// A relative root is made absolute against the working directory.
	t.Chdir(dir)
	s, err = NewStore("rel")
	if err != nil {
		t.Fatal(err)
	}
	if s.root != filepath.Join(dir, "rel") {
		t.Errorf("relative root = %q", s.root)
	}

	// A file as root is a usage error.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(file); errs.KindOf(err) != errs.KindUsage {
		t.Errorf("NewStore(file) = %v, want usage error", err)
	}
	if _, err := NewStore(""); errs.KindOf(err) != errs.KindUsage {
		t.Errorf("NewStore(\"\") = %v, want usage error", err)
	}
}

func TestSaveLoad(t *testing.T) {
	s := newStore(t)
	c := sample("c1")
	if err := s.Save(c); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "c1" || got.Pid != 42 || got.Data["vmid"] != "101" || !got.Created.Equal(c.Created) || got.Backend != "runc" {
		t.Errorf("Load = %+v", got)
	}
	dfi, _ := os.Stat(filepath.Join(s.root, "c1"))
	ffi, _ := os.Stat(filepath.Join(s.root, "c1", StateFile))
	if dfi.Mode().Perm() != 0o700 || ffi.Mode().Perm() != 0o600 {
		t.Errorf("modes dir %v file %v, want 0700/0600", dfi.Mode(), ffi.Mode())
	}

	// Overwrite, after someone widened the file: the save narrows it
	// again (renameio.WriteFile alone would keep 0644).
	if err := os.Chmod(filepath.Join(s.root, "c1", StateFile), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Status = Running
	if err := s.Save(c); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load("c1"); got.Status != Running {
		t.Errorf("status after overwrite = %q", got.Status)
	}
	if ffi, _ := os.Stat(filepath.Join(s.root, "c1", StateFile)); ffi.Mode().Perm() != 0o600 {
		t.Errorf("mode after a save over a widened file = %v, want 0600", ffi.Mode())
	}
	// No temp files left in the container dir.
	ents, _ := os.ReadDir(filepath.Join(s.root, "c1"))
	if len(ents) != 1 {
		t.Errorf("container dir holds %d entries, want only %s", len(ents), StateFile)
	}

	ok, err := s.Exists("c1")
	if err != nil || !ok {
		t.Errorf("Exists(c1) = %v, %v", ok, err)
	}
	ok, err = s.Exists("nope")
	if err != nil || ok {
		t.Errorf("Exists(nope) = %v, %v", ok, err)
	}

	_, err = s.Load("nope")
	if errs.KindOf(err) != errs.KindNotFound || !strings.Contains(err.Error(), "container nope does not exist") {
		t.Errorf("Load(nope) = %v", err)
	}

	if err := s.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("c1"); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
	if _, err := s.Load("c1"); errs.KindOf(err) != errs.KindNotFound {
		t.Errorf("Load after Remove = %v", err)
	}
	if err := s.Save(nil); err == nil {
		t.Error("Save(nil) succeeded")
	}
}

func TestLoadCorrupt(t *testing.T) {
	s := newStore(t)
	write := func(id, content string) {
		t.Helper()
		dir := filepath.Join(s.root, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if content != "\x00none" {
			if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := map[string]string{
		"empty":     "",
		"garbage":   "not json at all",
		"torn":      `{"ociVersion":"1.0.2","id":"torn","stat`,
		"wrongtype": `{"id":"wrongtype","pid":"x"}`,
		"otherid":   `{"id":"someone-else"}`,
		"missing":   "\x00none",
	}
	for id, content := range cases {
		write(id, content)
	}
	for id := range cases {
		_, err := s.Load(id)
		if errs.KindOf(err) != errs.KindState {
			t.Errorf("Load(%s) = %v (kind %v), want invalid-state", id, err, errs.KindOf(err))
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, filepath.Join(s.root, id, StateFile)) || !strings.Contains(msg, "nexcage delete --force "+id) {
			t.Errorf("Load(%s) error lacks file or hint: %s", id, msg)
		}
	}
	// A damaged entry does not break List; it shows as unknown.
	if err := s.Save(sample("good")); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(cases)+1 {
		t.Fatalf("List returned %d entries, want %d", len(list), len(cases)+1)
	}
	for _, c := range list {
		want := Unknown
		if c.ID == "good" {
			want = Created
		}
		if c.Status != want {
			t.Errorf("List entry %s status %q, want %q", c.ID, c.Status, want)
		}
	}
}

// TestNoEscape checks that no id can make the store touch anything
// outside its root.
func TestNoEscape(t *testing.T) {
	parent := t.TempDir()
	s, err := NewStore(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"../x", "/", "a/b", "..", ".", "", "../../etc", "x/../../y", "@locks", "@runc"} {
		check := func(op string, err error) {
			t.Helper()
			if errs.KindOf(err) != errs.KindUsage || !strings.Contains(err.Error(), "invalid container ID format") {
				t.Errorf("%s(%q) = %v, want invalid container ID format", op, id, err)
			}
		}
		_, err := s.Load(id)
		check("Load", err)
		check("Save", s.Save(&Container{ID: id}))
		_, err = s.Exists(id)
		check("Exists", err)
		check("Remove", s.Remove(id))
		_, err = s.Lock(ctx, id)
		check("Lock", err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 || ents[0].Name() != "root" {
		t.Errorf("parent of root now holds %v", ents)
	}
	ents, _ = os.ReadDir(s.root)
	if len(ents) != 0 {
		t.Errorf("root holds %v after only invalid ids", ents)
	}
}

func TestList(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"b", "a", "c"} {
		if err := s.Save(sample(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Backend dirs, lock dir and stray files are not containers.
	for _, d := range []string{"@runc", "@crun", "@locks"} {
		if err := os.MkdirAll(filepath.Join(s.root, d, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.root, "stray-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Errorf("List ids = %v, want a,b,c", ids)
	}
}

func TestListMany(t *testing.T) {
	s := newStore(t)
	const n = 5000
	for i := range n {
		id := fmt.Sprintf("c%05d", i)
		dir := filepath.Join(s.root, id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf(`{"ociVersion":"1.0.2","id":%q,"status":"running","pid":%d,"backend":"runc"}`, id, i+1)
		if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	list, err := s.List()
	t.Logf("List of %d took %v", n, time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("List returned %d, want %d", len(list), n)
	}
	for i, c := range list {
		if c.ID != fmt.Sprintf("c%05d", i) || c.Pid != i+1 || c.Status != Running {
			t.Fatalf("entry %d = %+v", i, c)
		}
	}
}

func TestLockSerialises(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		inside int
		max    int
		total  int
	)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				l, err := s.Lock(ctx, "same")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside > max {
					max = inside
				}
				total++
				mu.Unlock()
				// Give others a chance to break in if the lock were broken.
				if err := s.Save(sample("same")); err != nil {
					t.Error(err)
				}
				mu.Lock()
				inside--
				mu.Unlock()
				if err := l.Unlock(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if max != 1 || total != 160 {
		t.Errorf("max holders at once = %d (want 1), total = %d (want 160)", max, total)
	}
}

func TestLockTimeout(t *testing.T) {
	s := newStore(t)
	l, err := s.Lock(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = s.Lock(ctx, "c1")
	if errs.KindOf(err) != errs.KindLocked || !strings.Contains(err.Error(), "container c1 is locked by another nexcage process") {
		t.Fatalf("second Lock = %v, want locked error", err)
	}
	// Another id is independent.
	l2, err := s.Lock(context.Background(), "c2")
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Unlock(); err != nil {
		t.Errorf("second Unlock = %v, want nil", err)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	s := newStore(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+s.root, helperEnv+"_ID=c1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "c1"); errs.KindOf(err) != errs.KindLocked {
		t.Fatalf("Lock while helper holds it = %v, want locked", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	l, err := s.Lock(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func lockFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.root, "@locks"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestNoLockFileAfterRemove: after delete (Remove then Unlock) no lock
// file remains, and one that was never created leaves none either.
func TestNoLockFileAfterRemove(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	l, err := s.Lock(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(sample("c1")); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if got := lockFiles(t, s); len(got) != 1 {
		t.Errorf("lock files after create = %v, want one", got)
	}
	l, err = s.Lock(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	// A lookup of a missing container leaves nothing behind either.
	l, err = s.Lock(ctx, "never")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if got := lockFiles(t, s); len(got) != 0 {
		t.Errorf("lock files after delete = %v, want none", got)
	}
}

// TestUnlockRemovesACreatesLog: the private log a create left beside the
// lock (a crash) goes with the lock file once the id has no record; with a
// record it stays until then.
func TestUnlockRemovesACreatesLog(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	l, err := s.Lock(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.CreateLogPath("c1"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.CreateLogPath("c1")); !os.IsNotExist(err) {
		t.Fatalf("create log left after unlock: %v", err)
	}
	if got := lockFiles(t, s); len(got) != 0 {
		t.Errorf("lock files = %v, want none", got)
	}
}

// TestLockSurvivesUnlink: waiters blocked on a lock file that its holder
// deletes must not end up holding the lock at the same time as a newcomer.
func TestLockSurvivesUnlink(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for round := range 20 {
		l, err := s.Lock(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			inside int
			max    int
		)
		for range 4 {
			wg.Go(func() {
				wl, err := s.Lock(ctx, "c1")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				max = maxInt(max, inside)
				mu.Unlock()
				// Each holder creates and deletes the container, so every
				// Unlock unlinks the lock file under the other waiters.
				if err := s.Save(sample("c1")); err != nil {
					t.Error(err)
				}
				if err := s.Remove("c1"); err != nil {
					t.Error(err)
				}
				mu.Lock()
				inside--
				mu.Unlock()
				if err := wl.Unlock(); err != nil {
					t.Error(err)
				}
			})
		}
		if err := s.Remove("c1"); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if max != 1 {
			t.Fatalf("round %d: %d holders at once", round, max)
		}
	}
	if got := lockFiles(t, s); len(got) != 0 {
		t.Errorf("lock files left: %v", got)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func TestParallelSaveLoad(t *testing.T) {
	s := newStore(t)
	if err := s.Save(sample("c1")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		c := sample("c1")
		for i := range 200 {
			c.Pid = i
			c.Status = []string{Created, Running, Stopped}[i%3]
			if err := s.Save(c); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				c, err := s.Load("c1")
				if err != nil {
					t.Errorf("Load during Save: %v", err)
					return
				}
				if c.ID != "c1" {
					t.Errorf("Load got id %q", c.ID)
					return
				}
				if _, err := s.List(); err != nil {
					t.Errorf("List during Save: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestNewStoreRefusesUntrusted: a state root another user owns or can
// write, or one below a directory they own, is refused (nothing is
// created there); a root below a sticky directory such as /tmp is fine.
func TestNewStoreRefusesUntrusted(t *testing.T) {
	const other = 54321
	dir := t.TempDir()
	mk := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	home := mk("home", 0o755, other)
	open := mk("open", 0o777, 0)
	owned := mk("owned", 0o700, other)
	tmp := mk("tmp", 0o777|os.ModeSticky, 0)
	for _, tc := range []struct{ root, want string }{
		{filepath.Join(home, "state"), "directory " + home + " is owned by uid 54321"},
		{filepath.Join(open, "state"), "directory " + open + " is writable by group and others (mode 0777) and not sticky"},
		{owned, "directory " + owned + " is owned by uid 54321"},
		{open, "directory " + open + " is writable"},
	} {
		_, err := NewStore(tc.root)
		if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), "state root "+tc.root) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStore(%s) = %v, want invalid-config naming %q", tc.root, err, tc.want)
		}
	}
	for _, p := range []string{filepath.Join(home, "state"), filepath.Join(open, "state")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	if _, err := NewStore(filepath.Join(tmp, "state", "root")); err != nil {
		t.Errorf("root below a sticky directory: %v", err)
	}
}
