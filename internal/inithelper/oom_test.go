package inithelper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetOOMScoreAdj(t *testing.T) {
	dir := t.TempDir()
	old := oomScoreAdjPath
	t.Cleanup(func() { oomScoreAdjPath = old })
	oomScoreAdjPath = filepath.Join(dir, "oom_score_adj")
	if err := os.WriteFile(oomScoreAdjPath, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setOOMScoreAdj(nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(oomScoreAdjPath); string(got) != "0\n" {
		t.Fatalf("unset oomScoreAdj wrote %q", got)
	}
	v := 500
	if err := setOOMScoreAdj(&v); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(oomScoreAdjPath); string(got) != "500" {
		t.Fatalf("oom_score_adj = %q, want 500", got)
	}
	// A write that fails names the field and the value.
	oomScoreAdjPath = dir
	if err := setOOMScoreAdj(&v); err == nil || !strings.Contains(err.Error(), "process.oomScoreAdj 500") {
		t.Fatalf("err = %v, want one naming process.oomScoreAdj 500", err)
	}
}

// TestPrepareSetsOOMScoreAdj: the helper's Prepare applies it (to
// itself, before exec: the process inherits it).
func TestPrepareSetsOOMScoreAdj(t *testing.T) {
	dir := t.TempDir()
	old := oomScoreAdjPath
	t.Cleanup(func() { oomScoreAdjPath = old })
	oomScoreAdjPath = filepath.Join(dir, "oom_score_adj")
	v := 300
	if _, err := Prepare(&Process{Args: []string{"/bin/true"}, OOMScoreAdj: &v}, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(oomScoreAdjPath); string(got) != "300" {
		t.Fatalf("oom_score_adj = %q, want 300", got)
	}
}
