package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/goleak"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sh is a hook running script with /bin/sh (root's file: trusted).
func sh(script string, env ...string) specs.Hook {
	return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: env}
}

func testState() specs.State {
	return specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreated, Pid: 42, Bundle: "/b",
		Annotations: map[string]string{"k": "v"}}
}

func TestRunInOrderWithStateOnStdin(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := &Runner{}
	list := []specs.Hook{
		sh("echo one >> " + out),
		sh("cat > " + filepath.Join(dir, "stdin") + "; echo two >> " + out),
		sh("echo three >> " + out),
	}
	if err := r.Run(context.Background(), Prestart, list, testState()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != "one\ntwo\nthree\n" {
		t.Fatalf("hooks ran as %q, want one two three in order", got)
	}
	data, err := os.ReadFile(filepath.Join(dir, "stdin"))
	if err != nil {
		t.Fatal(err)
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("stdin %q is not the state JSON: %v", data, err)
	}
	if st.ID != "c1" || st.Pid != 42 || st.Status != specs.StateCreated || st.Bundle != "/b" || st.Annotations["k"] != "v" || st.Version != specs.Version {
		t.Fatalf("state on stdin: %+v", st)
	}
}

func TestArgsAndEnv(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := &Runner{}
	// argv[0] is the hook's args[0]; the env is exactly the hook's env.
	h := specs.Hook{Path: "/bin/sh", Args: []string{"my-hook", "-c", `echo "$0 $FOO ${HOME:-nohome}" > ` + out}, Env: []string{"FOO=bar"}}
	if err := r.Run(context.Background(), Poststart, []specs.Hook{h}, testState()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != "my-hook bar nohome\n" {
		t.Fatalf("hook saw %q, want argv[0] my-hook, FOO=bar and no HOME", got)
	}
}

func TestFailureStopsTheList(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := &Runner{}
	list := []specs.Hook{sh("echo first >> " + out), sh("echo oops >&2; exit 3"), sh("echo after >> " + out)}
	err := r.Run(context.Background(), CreateRuntime, list, testState())
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want a *Failure", err)
	}
	if f.Index != 1 || f.Kind != CreateRuntime || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("failure %v: want hook #1, exit status 3 and its output", err)
	}
	if errs.KindOf(err) != errs.KindBackend {
		t.Fatalf("kind %v, want backend", errs.KindOf(err))
	}
	got, _ := os.ReadFile(out)
	if string(got) != "first\n" {
		t.Fatalf("output %q: the hooks after the failing one must not run", got)
	}
}

func TestRunAllContinuesAfterAFailure(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := &Runner{}
	list := []specs.Hook{{Path: "/bin/false", Args: []string{"false"}}, sh("echo after >> " + out)}
	failed := r.RunAll(context.Background(), Poststop, list, testState())
	if len(failed) != 1 {
		t.Fatalf("failures %v, want the one of /bin/false", failed)
	}
	got, _ := os.ReadFile(out)
	if string(got) != "after\n" {
		t.Fatalf("output %q: the hook after the failing one must run", got)
	}
}

func TestTimeoutKillsTheHookAndItsChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	r := &Runner{}
	one := 1
	h := sh("sleep 100 & echo $! > " + pidFile + "; wait")
	h.Timeout = &one
	err := r.Run(context.Background(), Prestart, []specs.Hook{h}, testState())
	if errs.KindOf(err) != errs.KindTimeout || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	data, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	// The hook's child was killed with it (its process group): it goes
	// (or is a zombie waiting for init) within a bounded time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook's child %d still runs after the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadTimeoutRefused(t *testing.T) {
	zero := 0
	h := sh("true")
	h.Timeout = &zero
	err := (&Runner{}).Run(context.Background(), Prestart, []specs.Hook{h}, testState())
	if errs.KindOf(err) != errs.KindInvalidBundle {
		t.Fatalf("err = %v, want invalid-bundle for timeout 0", err)
	}
}

func TestUntrustedPathNotRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	// A script others may write to: never run.
	script := filepath.Join(dir, "hook")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(script, 0o757); err != nil {
		t.Fatal(err)
	}
	r := &Runner{}
	list := []specs.Hook{{Path: script}}
	if err := r.CheckAll(&specs.Hooks{Poststop: list}); errs.KindOf(err) != errs.KindInvalidBundle || !strings.Contains(err.Error(), "hooks.poststop[0]") {
		t.Fatalf("CheckAll = %v, want the hook refused by name", err)
	}
	if err := r.Run(context.Background(), Poststop, list, testState()); errs.KindOf(err) != errs.KindInvalidBundle {
		t.Fatalf("Run = %v, want the hook refused", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("an untrusted hook ran")
	}
	// The same script, root's and not writable by others, runs.
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background(), Poststop, list, testState()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal("the trusted hook did not run")
	}
}

func TestListsInLifecycleOrder(t *testing.T) {
	h := &specs.Hooks{Poststop: []specs.Hook{sh("a")}, CreateRuntime: []specs.Hook{sh("b")}}
	//lint:ignore SA1019 the deprecated prestart hooks are still run
	h.Prestart = []specs.Hook{sh("c")}
	var kinds []string
	for _, l := range Lists(h) {
		kinds = append(kinds, l.Kind)
	}
	if strings.Join(kinds, ",") != "prestart,createRuntime,poststop" {
		t.Fatalf("Lists gave %v", kinds)
	}
}

func TestOutputBounded(t *testing.T) {
	err := (&Runner{}).Run(context.Background(), Prestart, []specs.Hook{sh("head -c 100000 /dev/zero | tr '\\0' x; exit 1")}, testState())
	if err == nil || len(err.Error()) > maxOutput+500 {
		t.Fatalf("error of %d bytes, want the output bounded", len(err.Error()))
	}
}
