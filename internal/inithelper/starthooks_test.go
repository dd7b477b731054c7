package inithelper

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestStartContainerHooks: the init helper runs the startContainer hooks
// in order with the state start wrote on stdin; the first failure stops
// them and is returned (start fails).
func TestStartContainerHooks(t *testing.T) {
	dir := t.TempDir()
	old := stateFile
	t.Cleanup(func() { stateFile = old })
	stateFile = filepath.Join(dir, "state.json")
	if err := runStartContainerHooks(nil); err != nil {
		t.Fatalf("no hooks: %v", err)
	}
	st := specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreated, Pid: 7, Bundle: "/b"}
	data, _ := json.Marshal(st)
	if err := os.WriteFile(stateFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	hook := func(script string) specs.Hook { return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", script}} }
	list := []specs.Hook{hook("cat > " + filepath.Join(dir, "stdin") + "; echo one >> " + out), hook("echo two >> " + out)}
	if err := runStartContainerHooks(list); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "one\ntwo\n" {
		t.Fatalf("hooks ran as %q", got)
	}
	var got specs.State
	raw, _ := os.ReadFile(filepath.Join(dir, "stdin"))
	if err := json.Unmarshal(raw, &got); err != nil || got.ID != "c1" || got.Pid != 7 || got.Status != specs.StateCreated {
		t.Fatalf("stdin %q (%v), want the state start wrote", raw, err)
	}
	err := runStartContainerHooks([]specs.Hook{hook("exit 4"), hook("echo three >> " + out)})
	if err == nil || !strings.Contains(err.Error(), "startContainer hook #0") || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("err = %v, want the failing hook named", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "one\ntwo\n" {
		t.Fatalf("a hook after the failing one ran: %q", got)
	}
	// No state (start did not write it): an error, never hooks without it.
	stateFile = filepath.Join(dir, "missing")
	if err := runStartContainerHooks(list); err == nil {
		t.Fatal("hooks ran without the state")
	}
}
