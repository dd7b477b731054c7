package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeleteForceDamagedState: a container whose state.json is corrupt is
// listed as unknown, refused by a plain delete (exit 10, hint --force) and
// removed by delete --force, which warns where backend leftovers may be.
//
// nexcage keeps a record of a runc container only when the full command
// line created it (the passthrough writes none, issue 16): with
// runtime.log_path set every verb goes there.
func TestDeleteForceDamagedState(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "nexcage.log")
	n := NewNexcage(t, WriteConfig(t, `{"runtime": {"log_path": "`+logPath+`", "routing": [{"pattern": ".*", "runtime": "runc"}]}}`))
	id := "runc-damaged"
	bundle := outBundleNoOut(t)
	runcRoot := filepath.Join(n.Root(), "@runc")
	// The record goes away, the runc container does not: remove it as the
	// warning tells the admin to.
	t.Cleanup(func() {
		if out, err := exec.Command("runc", "--root", runcRoot, "delete", "--force", id).CombinedOutput(); err != nil {
			t.Errorf("runc delete --force %s: %v: %s", id, err, out)
		}
	})
	n.Must("create", "--bundle", bundle, id)
	if err := os.WriteFile(filepath.Join(n.Root(), id, "state.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := n.Must("list"); !strings.Contains(r.Stdout, "unknown") {
		t.Fatalf("damaged container not listed as unknown: %s", r)
	}
	n.Fails(10, "delete --force "+id, "state", id)
	n.Fails(10, "is damaged", "delete", id)
	if !exists(filepath.Join(n.Root(), id)) {
		t.Fatal("plain delete removed the damaged record")
	}
	r := n.Must("delete", "--force", id)
	if r.Stdout != "" {
		t.Fatalf("delete wrote to stdout: %q", r.Stdout)
	}
	// Warnings go to the log file (runtime.log_path) instead of stderr.
	logged, err := os.ReadFile(logPath)
	if err != nil || !strings.Contains(string(logged), "backend resources may remain") || !strings.Contains(string(logged), runcRoot) {
		t.Fatalf("delete --force did not warn where leftovers may be (%v): %s\nlog: %s", err, r, logged)
	}
	n.Fails(3, "does not exist", "state", id)
	if exists(filepath.Join(n.Root(), id)) {
		t.Fatal("record left after delete --force")
	}
}

// outBundleNoOut is a busybox bundle that just sleeps.
func outBundleNoOut(t *testing.T) string {
	t.Helper()
	b, _ := outBundle(t, "while true; do sleep 1; done")
	return b
}
