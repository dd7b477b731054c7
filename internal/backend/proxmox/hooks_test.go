package proxmox

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// markHook is a hook (root's /bin/sh: trusted) that saves its stdin to
// <dir>/<name>.json and appends its name to the fake pct's log, so the
// log shows hooks and pct calls in the order they ran.
func markHook(f *fakeNode, name string) specs.Hook {
	return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c",
		"cat > " + filepath.Join(f.dir, name+".json") + "; echo hook-" + name + " >> " + f.log}}
}

func readHookState(t *testing.T, f *fakeNode, name string) specs.State {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, name+".json"))
	if err != nil {
		t.Fatalf("the %s hook did not run: %v", name, err)
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("the %s hook's stdin %q is not the state: %v", name, data, err)
	}
	return st
}

func wantCalls(t *testing.T, f *fakeNode, want ...string) {
	t.Helper()
	calls := f.calls(t)
	if len(calls) != len(want) {
		t.Fatalf("calls = %q, want %q", calls, want)
	}
	for i := range want {
		if !strings.HasPrefix(calls[i], want[i]) {
			t.Fatalf("call %d = %q, want %q (all: %q)", i, calls[i], want[i], calls)
		}
	}
}

// TestHooksAtTheirLifecyclePoints: create runs prestart then
// createRuntime once the CT runs and waits for start (state "created",
// the init's pid), and records poststart and poststop; poststart gets
// "running" and a failing poststart hook does not stop the next;
// delete runs poststop after the CT is destroyed ("stopped"), once.
func TestHooksAtTheirLifecyclePoints(t *testing.T) {
	f := newFakeNode(t, "", "")
	var cps []string
	c, opts := createOpts(t, &cps)
	c.Bundle = opts.Bundle
	c.Annotations = map[string]string{"a": "b"}
	opts.Spec.Hooks = &specs.Hooks{
		CreateRuntime:  []specs.Hook{markHook(f, "createRuntime")},
		StartContainer: []specs.Hook{{Path: "/in/the/container"}},
		Poststart:      []specs.Hook{{Path: "/bin/false", Args: []string{"false"}}, markHook(f, "poststart")},
		Poststop:       []specs.Hook{markHook(f, "poststop")},
	}
	//lint:ignore SA1019 the deprecated prestart hooks are still run
	opts.Spec.Hooks.Prestart = []specs.Hook{markHook(f, "prestart")}
	if err := f.backend.Create(context.Background(), c, opts); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create 100", "start 100", "hook-prestart", "hook-createRuntime")
	for _, name := range []string{"prestart", "createRuntime"} {
		st := readHookState(t, f, name)
		if st.Status != specs.StateCreated || st.Pid != c.Pid || st.Pid <= 0 || st.ID != "ct1" || st.Bundle != opts.Bundle || st.Annotations["a"] != "b" {
			t.Errorf("%s hook got %+v, want created, pid %d, the id, bundle and annotations", name, st, c.Pid)
		}
	}
	if c.Data[DataHooks] == "" || strings.Contains(c.Data[DataHooks], "createRuntime") || strings.Contains(c.Data[DataHooks], "/in/the/container") {
		t.Errorf("recorded hooks %q, want poststart, poststop and the number of startContainer hooks only", c.Data[DataHooks])
	}
	// The startContainer hooks go to the init helper with the process;
	// start writes their state into the helper directory.
	var m inithelper.Message
	if data, err := os.ReadFile(f.backend.helperPaths(c.Data[DataHelperDir]).process); err != nil || json.Unmarshal(data, &m) != nil ||
		len(m.StartContainer) != 1 || m.StartContainer[0].Path != "/in/the/container" {
		t.Errorf("the init helper's message has startContainer %+v, want the spec's (%v)", m.StartContainer, err)
	}
	if err := f.backend.writeStartState(c); err != nil {
		t.Fatal(err)
	}
	var ss specs.State
	if data, err := os.ReadFile(filepath.Join(c.Data[DataHelperDir], inithelper.StateFileName)); err != nil || json.Unmarshal(data, &ss) != nil ||
		ss.Status != specs.StateCreated || ss.Pid != c.Pid || ss.ID != "ct1" {
		t.Errorf("state for the startContainer hooks %+v (%v), want created with the init's pid", ss, err)
	}

	// start's part (the supervisor's release is the e2e test's).
	c.Status = state.Running
	f.backend.runPoststart(context.Background(), c)
	if st := readHookState(t, f, "poststart"); st.Status != specs.StateRunning || st.Pid != c.Pid {
		t.Errorf("poststart hook got %+v, want running with pid %d", st, c.Pid)
	}

	c.Status = state.Created
	if err := f.backend.Delete(context.Background(), c, true); err != nil {
		t.Fatal(err)
	}
	calls := f.calls(t)
	if last := calls[len(calls)-1]; last != "hook-poststop" || !strings.HasPrefix(calls[len(calls)-2], "destroy 100") {
		t.Fatalf("calls = %q, want destroy then the poststop hook", calls)
	}
	if st := readHookState(t, f, "poststop"); st.Status != specs.StateStopped || st.Pid != 0 || st.ID != "ct1" {
		t.Errorf("poststop hook got %+v, want stopped, pid 0", st)
	}
	if _, ok := c.Data[DataHooks]; ok {
		t.Error("the hooks stay recorded after poststop ran")
	}
}

// TestCreateHookFailureUndoesThenRunsPoststop: a failing prestart hook
// fails create (naming the hook), stops the hooks after it, destroys the
// CT, then runs the poststop hooks (the lifecycle continues at delete).
func TestCreateHookFailureUndoesThenRunsPoststop(t *testing.T) {
	f := newFakeNode(t, "", "")
	var cps []string
	c, opts := createOpts(t, &cps)
	opts.Spec.Hooks = &specs.Hooks{
		CreateRuntime: []specs.Hook{markHook(f, "createRuntime")},
		Poststop:      []specs.Hook{markHook(f, "poststop")},
	}
	//lint:ignore SA1019 the deprecated prestart hooks are still run
	opts.Spec.Hooks.Prestart = []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no network >&2; exit 1"}}}
	err := f.backend.Create(context.Background(), c, opts)
	if err == nil || !strings.Contains(err.Error(), "prestart hook #0") || !strings.Contains(err.Error(), "no network") {
		t.Fatalf("err = %v, want the prestart hook's failure with its output", err)
	}
	if errs.KindOf(err) != errs.KindBackend || errors.Is(err, runtime.ErrCleanupIncomplete) {
		t.Errorf("err = %v (kind %v), want a complete undo of kind backend", err, errs.KindOf(err))
	}
	wantCalls(t, f, "create 100", "start 100", "destroy 100", "hook-poststop")
	if left := filesUnder(t, f.backend.helperBase()); len(left) > 0 {
		t.Errorf("left in the helper base: %q", left)
	}
}

// TestUntrustedHookRefusedBeforeAnything: a hook path others may write
// to is refused, by name, before any CT exists.
func TestUntrustedHookRefusedBeforeAnything(t *testing.T) {
	f := newFakeNode(t, "", "")
	dir := filepath.Join(f.dir, "open")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "hook")
	writeTestFile(t, hook, "#!/bin/sh\ntouch "+filepath.Join(f.dir, "ran")+"\n")
	if err := os.Chmod(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	var cps []string
	c, opts := createOpts(t, &cps)
	opts.Spec.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: hook}}}
	err := f.backend.Create(context.Background(), c, opts)
	if errs.KindOf(err) != errs.KindInvalidBundle || !strings.Contains(err.Error(), "hooks.poststop[0]") {
		t.Fatalf("err = %v, want the hook refused by name", err)
	}
	if calls := f.calls(t); len(calls) != 1 || calls[0] != "" {
		t.Errorf("pct ran: %q", calls)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "ran")); err == nil {
		t.Error("the untrusted hook ran")
	}
}

// TestStartWaitCoversStartContainerHooks: start waits 30 s plus each
// startContainer hook's timeout (5 minutes for one without).
func TestStartWaitCoversStartContainerHooks(t *testing.T) {
	ten := 10
	r := recordedHooks{StartContainerWait: startContainerWait([]specs.Hook{{Path: "/a", Timeout: &ten}, {Path: "/b"}})}
	if got, want := r.startWait(), 30*time.Second+10*time.Second+startContainerBound; got != want {
		t.Errorf("startWait = %v, want %v", got, want)
	}
	if got := (recordedHooks{}).startWait(); got != 30*time.Second {
		t.Errorf("startWait without hooks = %v, want 30s", got)
	}
}
