package procfs

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestStartTimeSelf(t *testing.T) {
	st, ok := StartTime(os.Getpid())
	if !ok || st == "" {
		t.Fatalf("StartTime(self) = %q, %v", st, ok)
	}
	if again, _ := StartTime(os.Getpid()); again != st {
		t.Fatalf("StartTime changed for the same process: %q then %q", st, again)
	}
	if _, ok := StartTime(-1); ok {
		t.Fatal("StartTime(-1) reported a process")
	}
}

func TestStartTimeZombie(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	stat := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"
	for { // the child is not reaped until Wait: poll until it is a zombie
		data, err := os.ReadFile(stat)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			break
		}
	}
	if _, ok := StartTime(cmd.Process.Pid); ok {
		t.Error("StartTime reported a zombie as alive")
	}
}

// TestPidsListsSelfAndParent: the listing has this process and its parent
// and nothing that is not a pid.
func TestPidsListsSelfAndParent(t *testing.T) {
	pids, err := Pids()
	if err != nil {
		t.Fatal(err)
	}
	found := map[int]bool{}
	for _, p := range pids {
		if p <= 0 {
			t.Fatalf("Pids has %d", p)
		}
		found[p] = true
	}
	if !found[os.Getpid()] || !found[os.Getppid()] {
		t.Fatalf("Pids lacks self %d or parent %d: %v", os.Getpid(), os.Getppid(), pids)
	}
}
