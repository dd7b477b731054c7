package conformance

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Excluded are the tests left out of the figures, each with the reason
// and how it is known. Every one of them fails with runc itself on this
// project's machines (the runc column shows it).
var Excluded = map[string]string{
	"linux_cgroups_blkio":            "the machine lacks it: the kernel's blkio controller (BFQ only) has no `blkio.weight`/`blkio.leaf_weight`; runc fails `openat2 .../blkio.leaf_weight: no such file or directory`",
	"linux_cgroups_relative_blkio":   "the machine lacks it: as linux_cgroups_blkio (no `blkio.weight`/`blkio.leaf_weight` files)",
	"linux_cgroups_hugetlb":          "the machine lacks it: no hugetlb cgroup controller is mounted (`ls /sys/fs/cgroup`); runc: `cannot set hugetlb limit: container could not join or create cgroup`",
	"linux_cgroups_relative_hugetlb": "the machine lacks it: no hugetlb cgroup controller",
	"linux_cgroups_network":          "the machine lacks it: no net_cls/net_prio cgroup controller is mounted; runc: `cannot set net_cls limit`",
	"linux_cgroups_relative_network": "the machine lacks it: no net_cls/net_prio cgroup controller",
	"linux_mount_label":              "the machine lacks it: the kernel has no SELinux (no `/sys/kernel/security/lsm`), so the `context=` mount option is `invalid argument` for runc too",
	"linux_process_apparmor_profile": "the machine lacks it: no AppArmor in the kernel; runc: `apparmor failed to apply profile: write /proc/self/attr/exec: invalid argument`",
}

// notes explain failures the reason column alone does not: keyed by
// "<variant>/<test>", "<variant>/*" or "*/<test>"; "<variant>" may end in
// "*" (a prefix).
var notes = map[string]string{
	"nexcage-crun/*": "crun 1.8.1 (Debian 12) refuses the suite's `ociVersion` 1.3.0 (`unknown version specified`; it accepts 1.0.x only); nexcage passes the bundle through unchanged",
	"crun/*":         "crun 1.8.1 refuses `ociVersion` 1.3.0 (`unknown version specified`)",
	// The hook tests (checked against the suite's source at SuiteVersion).
	"*/prestart":             "the test asserts the pre-1.0.2 runtime-spec: its PostCreate fails when the prestart hook already ran at `create`, but runtime-spec 1.3.0 (config.md \"Prestart\", runtime.md lifecycle step 3, and the suite's own bundles declare 1.3.0) says prestart hooks run in `create`, as runc and nexcage do",
	"*/hooks":                "the test cannot pass: it compares the hooks' output with `pre-start1 called\\npre-start2 called\\npost-start1\\n…` while its own hooks write `post-start1 called`, so a runtime that runs every hook in order gets `Hooks MUST be called in the listed order`",
	"*/prestart_fail":        "the judge cannot pass it: a runtime that fails `create` as the test asks makes the suite's own lifecycle helper print `failed to create the container` on the test's stderr",
	"nexcage-pve*/poststart": "the hooks run (hooks_stdin, poststart_fail pass); the test reads the output of the container's process (`/output`) from the bundle's rootfs, but a Proxmox container runs on its own copy of the rootfs (the packed template), so the process's write never reaches the bundle",
	"nexcage-pve*/poststop":  "the hooks run (hooks_stdin, poststop_fail pass); the test reads the output of the container's process (`/output`) from the bundle's rootfs, but a Proxmox container runs on its own copy of the rootfs (the packed template), so the process's write never reaches the bundle",
	// What a Proxmox container cannot do (checked against pve-container's
	// raw-key allow-list and update_lxc_config).
	"nexcage-pve*/linux_ns_itype":              "the test leaves out every namespace (mount and pid included) and checks the container shares the host's; LXC always creates the container's own, and Proxmox keeps no `lxc.namespace.*` key (not in pve-container's allow-list), so nexcage refuses a spec without a network namespace by name",
	"nexcage-pve*/linux_ns_path":               "the test asks the container to join namespaces of processes it started (`linux.namespaces[].path`); Proxmox keeps no `lxc.namespace.share.*` key, so a Proxmox container cannot join them and nexcage refuses by name",
	"nexcage-pve*/linux_cgroups_cpus":          "the test reads the limits from the cgroup at `linux.cgroupsPath` (`/cgrouptest`) with periods of 100000 and 500000 µs; Proxmox puts the container in its own cgroup (`lxc/<vmid>`, pvesim: LXC's `lxc.payload.<vmid>`) and sets the CPU limit as `cpulimit` with a fixed 100000 µs period (pve-container `change_cpu_quota(int(100000 * $value), 100000)`), so neither the path nor a 500000 µs period can be honoured",
	"nexcage-pve9.1-unpriv/linux_uid_mappings": "the test maps host ids 1000-3999; with `proxmox.unprivileged` (nexcage's default) a container's ids stay in the node's unprivileged range 100000-165535, so the mapping is refused by name; privileged containers (the `nexcage-pve9.1`/`8.4` runs) apply it as runc does",
}

// reasonNotes explain a failure by what its reason contains.
// cut, when set, shortens the reason after its first occurrence (the rest
// is a long tool output the note summarises).
var reasonNotes = []struct{ contains, note, cut string }{
	{"unknown version specified", "crun 1.8.1 accepts `ociVersion` 1.0.x only; the suite writes 1.3.0", ""},
}

func noteFor(variant, test string) string {
	for _, k := range []string{variant + "/" + test, variant + "/*", "*/" + test} {
		if n, ok := notes[k]; ok {
			return n
		}
	}
	for k, n := range notes {
		v, t, _ := strings.Cut(k, "/")
		if strings.HasSuffix(v, "*") && strings.HasPrefix(variant, strings.TrimSuffix(v, "*")) && (t == test || t == "*") {
			return n
		}
	}
	return ""
}

// findings is the hand-written part of CONFORMANCE.md: what the figures
// mean and what stops each backend (update it with the figures).
//
//go:embed findings.md
var findings string

// Machine facts for the report header.
func machine(nexcage string) [][2]string {
	run := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			return "not available"
		}
		l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return l
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	cg, _ := filepath.Glob("/sys/fs/cgroup/*")
	for i := range cg {
		cg[i] = filepath.Base(cg[i])
	}
	return [][2]string{
		{"kernel", strings.TrimSpace(string(kernel))},
		{"cgroups", "/sys/fs/cgroup: " + strings.Join(cg, " ")},
		{"runc", run("runc", "--version")},
		{"crun", run("crun", "--version")},
		{"lxc", run("lxc-start", "--version")},
		{"nexcage", run(nexcage, "--version")},
		{"node id delegation", "`" + SuiteIDRanges + "` added to /etc/subuid and /etc/subgid in the harness's private mount namespace (bind-mounted copies; the host's files are unchanged), as a Proxmox admin adds it for a custom idmap: the suite's linux_uid_mappings maps host ids 1000-3999"},
	}
}

// WriteFiles writes the Markdown report to md and the passing tests to
// expected.
func WriteFiles(rep *Report, md, expected string) error {
	if err := os.WriteFile(md, []byte(Markdown(rep)), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(expected), 0o755); err != nil {
		return err
	}
	return os.WriteFile(expected, []byte(expectedText(rep)), 0o644)
}

func (rep *Report) suiteVersion() string {
	if rep.Suite != nil {
		return rep.Suite.Version
	}
	return SuiteVersion
}

// tally is a variant's figures.
type tally struct{ core, coreOf, pass, counted, fail, skip, nc int }

func tallyOf(vr VariantResults) tally {
	var t tally
	for _, r := range vr.Results {
		if _, ex := Excluded[r.Test]; ex {
			continue
		}
		if IsCore(r.Test) {
			t.coreOf++
			if r.Status == Pass {
				t.core++
			}
		}
		switch r.Status {
		case Pass:
			t.pass++
		case Fail:
			t.fail++
		case Skip:
			t.skip++
		case NotCounted:
			t.nc++
		}
		if r.Status != NotCounted {
			t.counted++
		}
	}
	return t
}

// Markdown is CONFORMANCE.md.
func Markdown(rep *Report) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# OCI conformance: the runtime-tools validation suite\n\n")
	p("Written by `%s` on %s in %s; do not edit by hand (the\n", rep.Command, rep.Started.Format("2006-01-02 15:04 UTC"), rep.Duration)
	p("explanations come from `conformance/report.go`). `conformance/expected.txt`\n")
	p("lists the passes; `make conformance-check` (part of `make test`) fails when\n")
	p("one of them stops passing. How it works: [conformance/README.md](conformance/README.md).\n\n")
	p("Suite: `%s@%s` (master at 5e639034dcdc, 2025-12-05: the tag v0.9.0,\n", SuiteModule, rep.suiteVersion())
	p("the only release, predates Go modules and no longer compiles against\n")
	p("runtime-spec v1.3.0; this commit pins its dependencies and builds with Go 1.26).\n")
	p("Its bundles declare `ociVersion` 1.3.0. Every test runs with `RUNTIME` set to the\n")
	p("runtime below, from a directory holding `runtimetest` and the suite's busybox rootfs.\n\n")
	p("| machine | |\n|---|---|\n")
	for _, m := range rep.Machine {
		p("| %s | %s |\n", m[0], cell(m[1]))
	}
	p("\n## Summary\n\n")
	p("| runtime | core tests passed | all counted tests passed | failed | skipped by the suite | not counted |\n|---|---|---|---|---|---|\n")
	for _, vr := range rep.Variants {
		if vr.Err != "" {
			p("| %s | not run: %s | | | | |\n", vr.Variant.Title, cell(vr.Err))
			continue
		}
		t := tallyOf(vr)
		p("| %s (`%s`) | **%d / %d** | %d / %d | %d | %d | %d |\n", vr.Variant.Title, vr.Variant.Name, t.core, t.coreOf, t.pass, t.counted, t.fail, t.skip, t.nc)
	}
	p("\nThe core tests are the 22 issue 15 names (the ones runc 1.1.5 passes on these\n")
	p("machines). \"All counted\" leaves out the %d excluded tests (below) and the tests\n", len(Excluded))
	p("that are not counted.\n\n")
	p("%s\n", strings.TrimSpace(findings))
	p("\n## How a test is judged\n\n")
	p("- **pass**: the test program exits 0, prints a TAP plan `1..N` with N test lines,\n")
	p("  no `not ok`, and at least one `ok` that is not a `# SKIP` (the asserts column\n")
	p("  counts those `ok` lines; for the tests that run `runtimetest` in the container\n")
	p("  they are runtimetest's own checks).\n")
	p("- A `1..0` plan (the hook and lifecycle tests return their failure instead of\n")
	p("  asserting it) passes only when no diagnostic carries an `error` and nothing is\n")
	p("  written to stderr (poststop only prints `WARNING: The poststop hook invoke fails`\n")
	p("  there when the hook never ran).\n")
	p("- **not counted**: the test also passes against a runtime that fails every\n")
	p("  command (`fail-all`, run first as a calibration): it only asserts refusals, so\n")
	p("  its pass proves nothing.")
	var ncs []string
	for t, r := range rep.Calibration {
		if r.Status == Pass {
			ncs = append(ncs, "`"+t+"`")
		}
	}
	sort.Strings(ncs)
	if len(ncs) > 0 {
		p(" In this run: %s.", strings.Join(ncs, ", "))
	}
	p("\n- **skip**: every assertion is a `# SKIP` (the suite decided the test does not apply).\n\n")

	matrix := func(title string, core bool) {
		p("## %s\n\n| test |", title)
		for _, vr := range rep.Variants {
			p(" %s |", vr.Variant.Name)
		}
		p("\n|---|")
		for range rep.Variants {
			p("---|")
		}
		p("\n")
		for _, t := range allTests(rep) {
			if IsCore(t) != core {
				continue
			}
			name := t
			if _, ex := Excluded[t]; ex {
				name += " (excluded)"
			}
			p("| %s |", name)
			for _, vr := range rep.Variants {
				p(" %s |", short(find(vr, t)))
			}
			p("\n")
		}
		p("\n")
	}
	matrix("Core tests (pass: asserts)", true)
	matrix("Other tests of the suite (pass: asserts)", false)

	p("## Excluded tests\n\n| test | why |\n|---|---|\n")
	var ex []string
	for t := range Excluded {
		ex = append(ex, t)
	}
	sort.Strings(ex)
	for _, t := range ex {
		p("| %s | %s |\n", t, cell(Excluded[t]))
	}
	p("\nThe other tests that fail with runc itself are not excluded: they are listed\n")
	p("with runc's failure in the runc table, and count against every runtime alike.\n\n")

	for _, vr := range rep.Variants {
		p("## %s (`%s`)\n\n", vr.Variant.Title, vr.Variant.Name)
		if vr.Err != "" {
			p("Not run: %s\n\n", cell(vr.Err))
			continue
		}
		p("| test | result | asserts | why it fails |\n|---|---|---|---|\n")
		for _, core := range []bool{true, false} {
			for _, r := range vr.Results {
				if IsCore(r.Test) != core {
					continue
				}
				name := r.Test
				if core {
					name = "**" + name + "**"
				}
				why := tidy(r.Reason, filepath.Join(rep.WorkDir, vr.Variant.Name))
				if vr.Variant.Backend != "" {
					why = exitKindRe.ReplaceAllStringFunc(why, nameExit)
				}
				if r.Status == Pass {
					why = ""
				}
				if r.Status != Pass {
					if n := noteFor(vr.Variant.Name, r.Test); n != "" {
						why = n + ". " + why
					} else {
						for _, rn := range reasonNotes {
							if strings.Contains(r.Reason, rn.contains) {
								if i := strings.Index(why, rn.cut); rn.cut != "" && i >= 0 {
									why = why[:i+len(rn.cut)] + " …"
								}
								why = rn.note + ". " + why
								break
							}
						}
					}
				}
				if _, ex := Excluded[r.Test]; ex {
					why = "excluded. " + why
				}
				if len(r.Leftover) > 0 {
					why += fmt.Sprintf(" (left behind, removed by the runner: %s)", strings.Join(leftKinds(r.Leftover), ", "))
				}
				p("| %s | %s | %d | %s |\n", name, r.Status, r.Asserts, cell(why))
			}
		}
		p("\n")
	}
	return b.String()
}

func allTests(rep *Report) []string {
	seen := map[string]bool{}
	var ts []string
	for _, vr := range rep.Variants {
		for _, r := range vr.Results {
			if !seen[r.Test] {
				seen[r.Test] = true
				ts = append(ts, r.Test)
			}
		}
	}
	sort.Strings(ts)
	return ts
}

func find(vr VariantResults, test string) *Result {
	for i := range vr.Results {
		if vr.Results[i].Test == test {
			return &vr.Results[i]
		}
	}
	return nil
}

func short(r *Result) string {
	switch {
	case r == nil:
		return "-"
	case r.Status == Pass:
		return fmt.Sprintf("pass: %d", r.Asserts)
	case r.Status == Fail:
		return "**fail**"
	}
	return string(r.Status)
}

// cell makes s fit in one Markdown table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// leftKinds counts what a test left behind by kind ("2 mounts").
func leftKinds(left []string) []string {
	n := map[string]int{}
	var kinds []string
	for _, l := range left {
		k, _, _ := strings.Cut(l, " ")
		switch k {
		case "mount", "cgroup", "vmid":
		default:
			k = "container" // a container id of the runtime
		}
		if n[k] == 0 {
			kinds = append(kinds, k)
		}
		n[k]++
	}
	var out []string
	for _, k := range kinds {
		out = append(out, fmt.Sprintf("%d %s(s)", n[k], k))
	}
	return out
}
