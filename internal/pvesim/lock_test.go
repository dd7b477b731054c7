package pvesim

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdLock takes vmid's config lock as another pct would, until the test ends
// or release is called.
func holdLock(t *testing.T, n *Node, vmid int) (release func()) {
	t.Helper()
	fl, _, err := flockWithin(context.Background(), n.LockPath(vmid), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = fl.Unlock() }) }
	t.Cleanup(release)
	return release
}

// Every writer of <vmid>.conf waits for the config lock and fails with
// lock_file_full's texts; task verbs print the wait on stdout (the
// worker's output), the others on stderr.
func TestPctLockTimeout(t *testing.T) {
	n, _ := initNode(t)
	if err := os.WriteFile(n.ConfPath(120), []byte("memory: 64\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ConfPath(122), []byte("lock: backup\nmemory: 64\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PVESIM_LOCK_TIMEOUT_MS", "100")
	holdLock(t, n, 120)
	holdLock(t, n, 121)
	holdLock(t, n, 122)
	const timeout120 = "can't lock file '/run/lock/lxc/pve-config-120.lock' - got timeout\n"
	cases := []struct {
		args           []string
		stdout, stderr string
	}{
		{[]string{"set", "120", "--memory", "128"}, "", "trying to acquire lock..." + timeout120},
		{[]string{"unlock", "122"}, "", "trying to acquire lock...can't lock file '/run/lock/lxc/pve-config-122.lock' - got timeout\n"},
		{[]string{"destroy", "120"}, "trying to acquire lock...", timeout120},
		{[]string{"start", "120"}, "", "trying to acquire lock..." + timeout120},
		// create_and_lock_config (before the worker) fails under create's prefix.
		{[]string{"create", "121", debianTmpl}, "",
			"trying to acquire lock...unable to create CT 121 - can't lock file '/run/lock/lxc/pve-config-121.lock' - got timeout\n"},
		// check_vmid_unused comes first and needs no lock.
		{[]string{"create", "120", debianTmpl}, "", "CT 120 already exists on node 'pve'\n"},
	}
	for _, tc := range cases {
		stdout, stderr, code := pct(t, n, tc.args...)
		if code != 255 || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("%v: %d stdout %q stderr %q\nwant stdout %q stderr %q", tc.args, code, stdout, stderr, tc.stdout, tc.stderr)
		}
	}
	// Nothing was written while the lock was held.
	if data, _ := os.ReadFile(n.ConfPath(120)); string(data) != "memory: 64\n" {
		t.Errorf("120.conf changed: %q", data)
	}
	if _, err := os.Stat(n.ConfPath(121)); err == nil {
		t.Error("create wrote 121.conf without the lock")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A writer that had to wait prints " OK" once it has the lock and then
// re-reads the config it writes.
func TestPctLockWaitThenOK(t *testing.T) {
	n, _ := initNode(t)
	if err := os.WriteFile(n.ConfPath(120), []byte("memory: 64\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PVESIM_LOCK_TIMEOUT_MS", "60000")
	release := holdLock(t, n, 120)
	var errb syncBuffer
	m := *n
	m.Stdout, m.Stderr = &bytes.Buffer{}, &errb
	code := make(chan int, 1)
	go func() { code <- m.Pct([]string{"set", "120", "--cores", "2"}) }()
	for deadline := time.Now().Add(30 * time.Second); errb.String() != "trying to acquire lock..."; {
		if time.Now().After(deadline) {
			t.Fatalf("set did not wait for the lock: %q", errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Someone else writes the config while set waits: set must keep it.
	if err := os.WriteFile(n.ConfPath(120), []byte("memory: 64\nswap: 0\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	release()
	if c := <-code; c != 0 || errb.String() != "trying to acquire lock... OK\n" {
		t.Fatalf("set: %d %q", c, errb.String())
	}
	if data, _ := os.ReadFile(n.ConfPath(120)); string(data) != "cores: 2\nmemory: 64\nswap: 0\n" {
		t.Errorf("120.conf: %q", data)
	}
}

// check_lock: which verbs refuse a locked config, and the exceptions
// (`mounted` does not block start/stop; config/status/list/unlock work).
func TestPctLockedConfig(t *testing.T) {
	n, _ := initNode(t)
	write := func(lock string) {
		t.Helper()
		if err := os.WriteFile(n.ConfPath(130), []byte("lock: "+lock+"\nmemory: 64\nostype: debian\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("backup")
	for _, args := range [][]string{{"set", "130", "--cores", "1"}, {"start", "130"}, {"destroy", "130"}, {"destroy", "130", "--force", "1"}} {
		if _, stderr, code := pct(t, n, args...); code != 255 || stderr != "CT is locked (backup)\n" {
			t.Errorf("%v: %d %q", args, code, stderr)
		}
	}
	for _, args := range [][]string{{"config", "130"}, {"status", "130"}, {"list"}} {
		if _, stderr, code := pct(t, n, args...); code != 0 {
			t.Errorf("%v on locked: %d %q", args, code, stderr)
		}
	}
	// A `mounted` lock passes start's lock check (the start then fails for
	// want of a rootfs, after the check).
	write("mounted")
	if _, stderr, code := pct(t, n, "start", "130"); code != 255 || strings.Contains(stderr, "CT is locked") {
		t.Errorf("start with lock mounted: %d %q", code, stderr)
	}
	if _, stderr, code := pct(t, n, "set", "130", "--cores", "1"); code != 255 || stderr != "CT is locked (mounted)\n" {
		t.Errorf("set with lock mounted: %d %q", code, stderr)
	}
	// unlock removes the lock, and refuses when there is none.
	if _, stderr, code := pct(t, n, "unlock", "130"); code != 0 || stderr != "" {
		t.Fatalf("unlock: %d %q", code, stderr)
	}
	if data, _ := os.ReadFile(n.ConfPath(130)); string(data) != "memory: 64\nostype: debian\n" {
		t.Errorf("after unlock: %q", data)
	}
	if _, stderr, code := pct(t, n, "unlock", "130"); code != 255 || stderr != "no lock found trying to remove any lock\n" {
		t.Errorf("unlock without lock: %d %q", code, stderr)
	}
}
