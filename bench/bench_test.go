package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestQuickRun runs every section in smoke mode and checks that each
// produced figures and that the report names the machine and command.
// It asserts no time: figures on a loaded CI host mean nothing.
func TestQuickRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the benchmark runs containers and must run as root")
	}
	nx, pv := os.Getenv("NEXCAGE_BIN"), os.Getenv("PVESIM_BIN")
	if nx == "" || pv == "" {
		var err error
		if nx, pv, err = Build(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	// An unprivileged container's root (an unmapped host uid) must be
	// able to traverse the temp dirs to reach its rootfs.
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Run(Options{Nexcage: nx, Pvesim: pv, Quick: true, TempDir: tmp, Command: "go test ./bench"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sections) != 7 {
		t.Fatalf("%d sections, want 7", len(rep.Sections))
	}
	for i, s := range rep.Sections {
		if s.Num != i+1 || s.Err != nil {
			t.Errorf("section %d (%d): %v", i+1, s.Num, s.Err)
		}
		if s.Figures() == 0 {
			t.Errorf("section %d %q produced no figures", s.Num, s.Title)
		}
		for _, tb := range s.Tables {
			for _, row := range tb.Rows {
				if len(row) != len(tb.Header) {
					t.Errorf("section %d: row %q does not match header %q", s.Num, row, tb.Header)
				}
				for _, c := range row {
					// A peak RSS of 0 means busybox time gave nothing.
					if c == "0 KiB" {
						t.Errorf("section %d: empty figure in row %q", s.Num, row)
					}
				}
			}
		}
	}
	for _, want := range []int{1, 3, 5, 7} {
		found := false
		for _, tg := range rep.Targets {
			found = found || tg.Section == want
		}
		if !found {
			t.Errorf("no target reported for section %d", want)
		}
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go test ./bench", "nproc", "Kernel", "CPU", "runc", "crun", "lxc", "## 7. "} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize(nil)
	if s.N != 0 {
		t.Fatalf("empty: %+v", s)
	}
	s = summarize([]time.Duration{5, 1, 3})
	if s.Median != 3 || s.Min != 1 || s.Max != 5 || s.N != 3 {
		t.Fatalf("odd: %+v", s)
	}
	if m := summarize([]time.Duration{4, 1, 3, 2}).Median; m != 2 {
		t.Fatalf("even median %v, want 2 (mean of 2 and 3, truncated)", m)
	}
	if medianInt([]int64{9, 1, 5}) != 5 {
		t.Fatal("medianInt")
	}
}
