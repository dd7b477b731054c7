package proxmox

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCreateSetsOOMScoreAdjFromTheHost: create writes process.oomScoreAdj
// to the init's /proc/<pid>/oom_score_adj from the host (the fake node's
// init is its supervisor process). Lowering it needs CAP_SYS_RESOURCE,
// which root on a Proxmox host has (an unprivileged container's root does
// not); where this test runs without it, create must fail naming the
// field instead of running with another score.
func TestCreateSetsOOMScoreAdjFromTheHost(t *testing.T) {
	for _, v := range []int{500, -500} {
		f := newFakeNode(t, "", "")
		var cps []string
		c, opts := createOpts(t, &cps)
		adj := v
		opts.Spec.Process.OOMScoreAdj = &adj
		err := f.backend.Create(context.Background(), c, opts)
		if v < 0 && !hasCapSysResource(t) {
			if err == nil || !strings.Contains(err.Error(), "process.oomScoreAdj -500") {
				t.Errorf("lowering without CAP_SYS_RESOURCE: %v, want create to fail naming the field", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile("/proc/" + strconv.Itoa(c.Pid) + "/oom_score_adj")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(data)); got != strconv.Itoa(v) {
			t.Errorf("oom_score_adj of the init = %s, want %d", got, v)
		}
		if err := f.backend.Delete(context.Background(), c, true); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetOOMScoreAdj(t *testing.T) {
	old := procDir
	t.Cleanup(func() { procDir = old })
	procDir = t.TempDir()
	if err := setOOMScoreAdj("c1", 42, nil); err != nil {
		t.Fatalf("unset: %v", err)
	}
	for _, who := range []string{"42", "self"} {
		if err := os.Mkdir(procDir+"/"+who, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	v := -300
	if err := setOOMScoreAdj("c1", 42, &v); err != nil {
		t.Fatal(err)
	}
	if err := setOOMScoreAdj("c1", 0, &v); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"42", "self"} {
		if got, _ := os.ReadFile(procDir + "/" + who + "/oom_score_adj"); string(got) != "-300" {
			t.Errorf("%s: %q, want -300", who, got)
		}
	}
	if err := setOOMScoreAdj("c1", 7, &v); err == nil || !strings.Contains(err.Error(), "process.oomScoreAdj -300") {
		t.Errorf("a pid without the file: %v", err)
	}
}

// hasCapSysResource tells whether this process has CAP_SYS_RESOURCE (24)
// in its effective set.
func hasCapSysResource(t *testing.T) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<24) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
