package testutil

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/procfs"
)

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	_, ok := procfs.StartTime(pid)
	return ok
}

// WaitGone polls until pid is gone; a process still there after timeout
// fails the test.
func WaitGone(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MountsUnder lists the mount points of this mount namespace below dir.
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// ListIDs returns the ids in the output of `nexcage list --format json`.
func ListIDs(t testing.TB, stdout string) []string {
	t.Helper()
	var states []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(stdout), &states); err != nil {
		t.Fatalf("list: %v: %q", err, stdout)
	}
	var ids []string
	for _, s := range states {
		ids = append(ids, s.ID)
	}
	return ids
}

// PlantedProgram writes an executable script named name into a
// world-writable directory below a temp dir, as another local user could
// plant it. Running it creates the file ran; the test checks nexcage
// refused it without running it. It returns the program, its directory
// and ran.
func PlantedProgram(t testing.TB, name, script string) (prog, dir, ran string) {
	t.Helper()
	base := t.TempDir()
	ran = filepath.Join(base, "ran")
	dir = filepath.Join(base, "open")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	prog = filepath.Join(dir, name)
	if err := os.WriteFile(prog, []byte("#!/bin/sh\ntouch "+ran+"\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, dir, ran
}
