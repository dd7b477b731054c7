package pve

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
)

// fakePct writes an executable script standing in for pct; the test
// controls what it prints and how it exits.
func fakePct(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pct")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCreateArgs(t *testing.T) {
	args, err := CreateArgs(101, "local:vztmpl/x.tar.zst", []Option{{"hostname", "a"}, {"mp0", "/src,mp=/dst"}, {"tags", "-x"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "create 101 local:vztmpl/x.tar.zst --hostname a --mp0 /src,mp=/dst --tags -x"
	if got := strings.Join(args, " "); got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
	bad := []struct {
		vmid int
		tmpl string
		opts []Option
	}{
		{99, "local:vztmpl/x.tar.zst", nil},
		{1000000000, "local:vztmpl/x.tar.zst", nil},
		{100, "--force", nil},
		{100, "", nil},
		{100, "a\nb", nil},
		{100, "t", []Option{{"Hostname x", "a"}}},
		{100, "t", []Option{{"hostname", "a\nb"}}},
	}
	for _, b := range bad {
		if _, err := CreateArgs(b.vmid, b.tmpl, b.opts); err == nil {
			t.Errorf("CreateArgs(%d, %q, %v) accepted", b.vmid, b.tmpl, b.opts)
		}
	}
}

func TestPctPassesArgvAndParsesErrors(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	p := &Pct{Path: fakePct(t, `for a in "$@"; do printf '%s\n' "$a"; done > `+argsFile+`
echo "unable to create CT 100 - can't find file 'local:vztmpl/x.tar.zst'" >&2
exit 255`)}
	err := p.Create(context.Background(), 100, "local:vztmpl/x.tar.zst", []Option{{"hostname", "a b; rm -rf /"}})
	if errs.KindOf(err) != errs.KindTemplate {
		t.Fatalf("err = %v (kind %v), want template", err, errs.KindOf(err))
	}
	data, _ := os.ReadFile(argsFile)
	if got := string(data); got != "create\n100\nlocal:vztmpl/x.tar.zst\n--hostname\na b; rm -rf /\n" {
		t.Errorf("pct got argv %q", got)
	}
	var pe *PctError
	if !asPctError(err, &pe) || pe.ExitCode != 255 || pe.Verb != "create" || pe.VMID != 100 {
		t.Errorf("PctError = %+v", pe)
	}
}

func asPctError(err error, pe **PctError) bool {
	e, ok := err.(*errs.Error)
	if !ok {
		return false
	}
	*pe, ok = e.Err.(*PctError)
	return ok
}

func TestPctRetriesLocks(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	// Fails twice with a lock error, then succeeds.
	p := &Pct{Path: fakePct(t, `n=$(cat `+count+` 2>/dev/null || echo 0); n=$((n+1)); echo $n > `+count+`
if [ $n -le 2 ]; then echo "CT is locked (create)" >&2; exit 255; fi
exit 0`), Retries: 3, RetryDelay: time.Millisecond}
	if err := p.Start(context.Background(), 100); err != nil {
		t.Fatalf("Start: %v", err)
	}
	data, _ := os.ReadFile(count)
	if strings.TrimSpace(string(data)) != "3" {
		t.Errorf("pct ran %s times, want 3", data)
	}
	// Bounded: with one retry, it fails with KindLocked after two runs.
	os.Remove(count)
	p.Retries = 1
	if err := p.Start(context.Background(), 100); errs.KindOf(err) != errs.KindLocked {
		t.Fatalf("err = %v, want locked", err)
	}
	data, _ = os.ReadFile(count)
	if strings.TrimSpace(string(data)) != "2" {
		t.Errorf("pct ran %s times, want 2", data)
	}
}

func TestPctTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	// pct starts a child that would outlive it; the timeout must kill both.
	p := &Pct{Path: fakePct(t, `sleep 300 & echo $! > `+pidFile+`
wait`), Timeout: 300 * time.Millisecond, KillGrace: time.Second}
	err := p.Destroy(context.Background(), 100, DestroyOptions{Purge: true})
	if errs.KindOf(err) != errs.KindTimeout {
		t.Fatalf("err = %v (kind %v), want timeout", err, errs.KindOf(err))
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(data)) {
		pid = pid*10 + int(c-'0')
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		// The child may linger as a zombie of the killed shell briefly;
		// it is gone once reparented and reaped.
		if st, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(data)) + "/stat"); strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d of pct still alive after timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPctMissingBinary(t *testing.T) {
	p := &Pct{Path: filepath.Join(t.TempDir(), "nope")}
	err := p.Start(context.Background(), 100)
	if errs.KindOf(err) != errs.KindBackend || !strings.Contains(err.Error(), "proxmox.pct_path") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseList(t *testing.T) {
	out := "VMID       Status     Lock         Name                \n" +
		"100        running                 web1                \n" +
		"101        stopped    snapshot-delete db                  \n"
	got := ParseList(out)
	if len(got) != 2 || got[0] != (ListEntry{100, "running", "", "web1"}) || got[1] != (ListEntry{101, "stopped", "snapshot-delete", "db"}) {
		t.Errorf("ParseList = %+v", got)
	}
	if len(ParseList("")) != 0 {
		t.Error("empty output must give no rows")
	}
}

func TestPctStatus(t *testing.T) {
	p := &Pct{Path: fakePct(t, `echo "status: running"`)}
	st, err := p.Status(context.Background(), 100)
	if err != nil || st != "running" {
		t.Fatalf("Status = %q, %v", st, err)
	}
}

func TestPctUnlockArgv(t *testing.T) {
	argsFile := filepath.Join(t.TempDir(), "args")
	p := &Pct{Path: fakePct(t, `for a in "$@"; do printf '%s\n' "$a"; done > `+argsFile)}
	if err := p.Unlock(context.Background(), 123); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(argsFile); string(data) != "unlock\n123\n" {
		t.Errorf("pct got argv %q", data)
	}
	if err := p.Unlock(context.Background(), 5); err == nil {
		t.Error("Unlock of VMID 5 accepted")
	}
}

// TestPctTimeoutTermsFirst: on a timeout pct gets SIGTERM and time to end
// (it forwards SIGTERM to its worker, which rolls back); it is not killed
// while it winds down within the grace period.
func TestPctTimeoutTermsFirst(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	ready := filepath.Join(dir, "ready")
	// Traps SIGTERM, then takes a moment to "roll back" and exits 0.
	p := &Pct{Path: fakePct(t, `trap 'echo term > `+got+`; sleep 0.3; echo rolled-back >> `+got+`; exit 0' TERM
touch `+ready+`
while :; do sleep 0.05; done`), Timeout: 500 * time.Millisecond, KillGrace: 30 * time.Second}
	err := p.Destroy(context.Background(), 100, DestroyOptions{})
	if errs.KindOf(err) != errs.KindTimeout {
		t.Fatalf("err = %v, want timeout", err)
	}
	data, _ := os.ReadFile(got)
	if string(data) != "term\nrolled-back\n" {
		t.Errorf("pct saw %q, want SIGTERM and time to roll back", data)
	}
}

// TestPctCancelKillsAfterGrace: a cancelled call sends SIGTERM; a pct
// that ignores it is killed (with its group) after the grace period.
func TestPctCancelKillsAfterGrace(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	got := filepath.Join(dir, "got")
	p := &Pct{Path: fakePct(t, `trap 'echo term >> `+got+`' TERM
touch `+ready+`
while :; do sleep 0.05; done`), KillGrace: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Destroy(ctx, 100, DestroyOptions{}) }()
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("pct ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v, want interrupted", err)
	}
	if data, _ := os.ReadFile(got); !strings.HasPrefix(string(data), "term") {
		t.Errorf("pct did not get SIGTERM before SIGKILL: %q", data)
	}
}

func TestPctDestroyArgv(t *testing.T) {
	argsFile := filepath.Join(t.TempDir(), "args")
	p := &Pct{Path: fakePct(t, `echo "$*" > `+argsFile)}
	if err := p.Destroy(context.Background(), 123, DestroyOptions{Purge: true, Force: true, UnreferencedDisks: true}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(argsFile); string(data) != "destroy 123 --purge 1 --force 1 --destroy-unreferenced-disks 1\n" {
		t.Errorf("pct got argv %q", data)
	}
}

// TestPctRefusesUntrustedBinary: a pct_path in a directory others can
// write is refused before it runs (nexcage runs pct as root), as an
// invalid-config error naming the key, the directory and the fix.
func TestPctRefusesUntrustedBinary(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	p := fakePct(t, "touch "+marker)
	dir := filepath.Dir(p)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	err := (&Pct{Path: p}).Start(context.Background(), 100)
	if errs.KindOf(err) != errs.KindInvalidConfig {
		t.Fatalf("kind %v: %v", errs.KindOf(err), err)
	}
	for _, w := range []string{"proxmox.pct_path " + p, "directory " + dir + " is writable", "chmod go-w " + dir} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the untrusted pct ran")
	}
	// The same program in a trusted place runs.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (&Pct{Path: p}).Start(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the trusted pct did not run")
	}
}
