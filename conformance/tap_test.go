package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	diag := func(body string) string { return "  ---\n  " + body + "\n  ...\n" }
	cases := []struct {
		name           string
		exit           int
		stdout, stderr string
		status         Status
		asserts        int
		reason         string // substring
	}{
		{"all ok", 0, "TAP version 13\nok 1 - a\nok 2 - b\nok 3 - c\n1..3\n", "", Pass, 3, ""},
		{"plan first", 0, "1..2\nok 1\nok 2\n", "", Pass, 2, ""},
		{"not ok with nexcage's error", 0, "ok 1 - a\nnot ok 2 - create MUST work\n" +
			diag(`{"error": "exit status 7", "stderr": "time=x level=info msg=y\nnexcage: container c: rootfs /b changed\n"}`) + "1..2\n",
			"", Fail, 1, "1 of 2 not ok, first: create MUST work: nexcage: container c: rootfs /b changed"},
		{"runtimetest's TAP nested in a diagnostic is not top level", 0,
			"ok 1 - x\n" + diag(`{"stdout": "not ok 1 - inner\n"}`) + "1..1\n", "", Pass, 1, ""},
		{"1..0 with an error diagnostic", 0, "TAP version 13\n" + diag(`{"error": "Hooks MUST be called in the listed order\nRefer to: x"}`) + "1..0\n",
			"", Fail, 0, "Hooks MUST be called in the listed order"},
		{"1..0 with a warning on stderr", 0, "1..0\n", "WARNING: The poststop hook invoke fails\n", Fail, 0, "WARNING: The poststop hook"},
		{"1..0 clean", 0, "TAP version 13\n1..0\n", "", Pass, 0, ""},
		{"no plan", 0, "ok 1\n", "", Fail, 1, "no TAP plan"},
		{"incomplete plan", 0, "1..5\nok 1\nok 2\n", "", Fail, 2, "incomplete plan: 2 of 5"},
		{"two documents", 0, "TAP version 13\nok 1\nok 2\n1..2\nTAP version 13\n1..0\n", "", Pass, 2, ""},
		{"two documents, the second without a plan", 0, "TAP version 13\nok 1\n1..1\nTAP version 13\nok 1\n", "", Fail, 2, "no TAP plan"},
		{"two documents, the first incomplete", 0, "TAP version 13\nok 1\n1..2\nTAP version 13\nok 1\n1..1\n", "", Fail, 2, "incomplete plan"},
		{"not ok with only the exit status, the runtime's words on stderr", 0, "not ok 1 - exit status 8\n1..1\n",
			"failed to create the container\ntime=t level=info msg=x\nnexcage: container c: pct start 100 failed\n", Fail, 0, "first: exit status 8: nexcage: container c: pct start 100 failed"},
		{"a warning on stderr is not the reason", 0, "not ok 1 - check masked paths\n1..1\n",
			"time=t level=warning msg=\"seccomp ignored\"\n", Fail, 0, "first: check masked paths"},
		{"everything skipped", 0, "1..1\nok 1 # skip no such controller\n", "", Skip, 0, "skipped"},
		{"exit 1 with runc's error", 1, "", "failed to create the container\n" +
			`time="2026" level=error msg="runc create failed: no \"x\" file"` + "\nexit status 1\n", Fail, 0, `exit 1: runc create failed: no "x" file`},
		{"exit 1 with nexcage's error", 1, "", "failed to create the container\ntime=t level=warning msg=w\nnexcage: container c: refused (hint)\n", Fail, 0, "exit 1: nexcage: container c: refused (hint)"},
		{"exit 1, only the suite's words", 1, "", "failed to create the container\nexit status 1\n", Fail, 0, "exit 1: exit status 1"},
	}
	for _, c := range cases {
		st, n, why := Judge(c.exit, []byte(c.stdout), []byte(c.stderr))
		if st != c.status || n != c.asserts || !strings.Contains(why, c.reason) || (c.reason == "" && why != "") {
			t.Errorf("%s: Judge = %s, %d, %q; want %s, %d, %q", c.name, st, n, why, c.status, c.asserts, c.reason)
		}
	}
}

func TestExpectedRoundTrip(t *testing.T) {
	rep := &Report{Variants: []VariantResults{
		{Variant: Variants[0], Results: []Result{{Test: "create", Status: Pass, Asserts: 4}, {Test: "state", Status: Fail}, {Test: "linux_ns_path_type", Status: NotCounted}}},
		{Variant: Variants[2], Results: []Result{{Test: "default", Status: Pass}}},
	}}
	path := filepath.Join(t.TempDir(), "expected.txt")
	if err := os.WriteFile(path, []byte(expectedText(rep)), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := ReadExpected(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(want["nexcage-runc"], ",") != "create" || strings.Join(want["nexcage-pve9.1"], ",") != "default" || len(want) != 2 {
		t.Fatalf("expected = %v (only counted passes belong there)", want)
	}
	if bad := Regressions(rep, want); len(bad) != 0 {
		t.Errorf("no regression in the same run, got %v", bad)
	}
	rep.Variants[0].Results[0].Status = Fail
	rep.Variants[0].Results[0].Reason = "broken"
	rep.Variants[1].Results = nil
	bad := Regressions(rep, want)
	if len(bad) != 2 || !strings.Contains(bad[0], "nexcage-runc create: fail: broken") || !strings.Contains(bad[1], "nexcage-pve9.1 default: not run") {
		t.Errorf("regressions = %q", bad)
	}
	if err := os.WriteFile(path, []byte("nexcage-runc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadExpected(path); err == nil {
		t.Error("a malformed line was accepted")
	}
	if err := os.WriteFile(path, []byte("nosuch create\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadExpected(path); err == nil {
		t.Error("an unknown variant was accepted")
	}
}

func TestNoteFor(t *testing.T) {
	if noteFor("nexcage-crun", "create") == "" {
		t.Error("the crun note is missing")
	}
	if n := noteFor("nexcage-runc", "create"); n != "" {
		t.Errorf("unexpected note %q", n)
	}
}

func TestCoreTests(t *testing.T) {
	if len(CoreTests) != 22 {
		t.Errorf("%d core tests, issue 15 names 22", len(CoreTests))
	}
	for _, c := range CoreTests {
		if _, ex := Excluded[c]; ex {
			t.Errorf("core test %s is excluded", c)
		}
	}
}

func TestTidyAndExitKinds(t *testing.T) {
	got := tidy("nexcage: container 6f152216-6b67-438f-9aa3-88616a00c5e9: rootfs /w/nexcage-pve9.1/tmp/ocitest3493707089 changed; see /w/nexcage-pve9.1/root", "/w/nexcage-pve9.1")
	if want := "nexcage: container <id>: rootfs <bundle> changed; see <run>/root"; got != want {
		t.Errorf("tidy = %q, want %q", got, want)
	}
	if got := exitKindRe.ReplaceAllStringFunc("1 of 1 not ok, first: exit status 8", nameExit); got != "1 of 1 not ok, first: exit status 8 (nexcage: backend failed)" {
		t.Errorf("exit kind = %q", got)
	}
}

func TestLeftKinds(t *testing.T) {
	got := strings.Join(leftKinds([]string{"6f152216-6b67-438f-9aa3-88616a00c5e9", "mount /a", "mount /b", "vmid 100", "cgroup /x"}), ", ")
	if want := "1 container(s), 2 mount(s), 1 vmid(s), 1 cgroup(s)"; got != want {
		t.Errorf("leftKinds = %q, want %q", got, want)
	}
}
