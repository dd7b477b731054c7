package ocirun

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCreateArgs(t *testing.T) {
	got := CreateArgs(runtime.CreateOptions{Bundle: "/b", PidFile: "/p", ConsoleSocket: "/s", NoPivot: true, NoNewKeyring: true, PreserveFDs: 2})
	want := []string{"--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s", "--no-pivot", "--no-new-keyring", "--preserve-fds", "2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	if got := CreateArgs(runtime.CreateOptions{Bundle: "/b"}); !reflect.DeepEqual(got, []string{"--bundle", "/b"}) {
		t.Fatalf("minimal: %q", got)
	}
}

func TestGlobals(t *testing.T) {
	b := &Backend{o: Options{Root: "/r/@runc", Log: "/l.json", LogFormat: "json", Debug: true, SystemdCgroup: true, Rootless: "false"}}
	got := b.globals(b.o.Log, b.o.LogFormat)
	want := []string{"--root", "/r/@runc", "--log", "/l.json", "--log-format", "json", "--debug", "--systemd-cgroup", "--rootless=false"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	b = &Backend{o: Options{Root: "/r/@crun"}}
	if got := b.globals("", ""); !reflect.DeepEqual(got, []string{"--root", "/r/@crun"}) {
		t.Fatalf("no log: %q", got)
	}
}

func TestLastMessage(t *testing.T) {
	cases := map[string]string{
		"container does not exist": "container does not exist",
		`time="2026-01-01T00:00:00Z" level=error msg="container \"x\" does not exist"` + "\n": `container "x" does not exist`,
		"warning: a\nerror opening file `/r/x/status`: No such file or directory\n":           "error opening file `/r/x/status`: No such file or directory",
		"": "",
	}
	for in, want := range cases {
		if got := lastMessage(in); got != want {
			t.Errorf("lastMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLastLogError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.json")
	old := `{"level":"error","msg":"old failure","time":"t"}` + "\n"
	newer := `{"level":"info","msg":"x","time":"t"}` + "\n" +
		`{"msg":"cgroups in hybrid mode not supported","level":"error","time":"t"}` + "\n" +
		`time="t" level=error msg="text \"line\""` + "\n" +
		`{"level":"warning","msg":"later warning","time":"t"}` + "\n"
	if err := os.WriteFile(p, []byte(old+newer), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := LastLogError(p, int64(len(old))); got != `text "line"` {
		t.Fatalf("got %q", got)
	}
	if err := os.WriteFile(p, []byte(old+`{"level":"info","msg":"fine"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := LastLogError(p, int64(len(old))); got != "" {
		t.Fatalf("an error before offset was reported: %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Options{Name: "runc", Path: "/nonexistent/runc", Root: t.TempDir()})
	if errs.KindOf(err) != errs.KindBackend || !strings.Contains(err.Error(), "runtimes.runc.path") {
		t.Fatalf("missing binary: %v", err)
	}
	_, err = New(Options{Name: "crun", Path: "/bin/true", Root: t.TempDir(), CgroupWorkaround: "sometimes"})
	if errs.KindOf(err) != errs.KindInvalidConfig {
		t.Fatalf("bad workaround: %v", err)
	}
}

// TestUntrustedBinaryRefused: a runtimes.<name>.path another user could
// have planted (here: in a world-writable directory) is refused by New
// and BinaryVersion (nexcage version) without being run.
func TestUntrustedBinaryRefused(t *testing.T) {
	evil, open, marker := testutil.PlantedProgram(t, "runc", "")
	check := func(how string, err error) {
		t.Helper()
		if errs.KindOf(err) != errs.KindInvalidConfig {
			t.Fatalf("%s: kind %v: %v", how, errs.KindOf(err), err)
		}
		for _, w := range []string{"runtimes.runc.path " + evil, "refusing to run it", "directory " + open + " is writable by group and others", "chmod go-w " + open} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", how, err, w)
			}
		}
	}
	_, err := New(Options{Name: "runc", Path: evil, Root: t.TempDir()})
	check("New", err)
	_, _, err = BinaryVersion(context.Background(), "runc", evil)
	check("BinaryVersion", err)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the untrusted runtime ran")
	}
}

func TestHybridDetectionOnPlainDir(t *testing.T) {
	if HybridWithV2Controllers(t.TempDir()) {
		t.Fatal("a plain directory is not a hybrid cgroup root")
	}
}

func TestWorkaroundModes(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		want       bool
	}{{"runc", WorkaroundAlways, true}, {"runc", WorkaroundAuto, false}, {"crun", WorkaroundAlways, true}, {"crun", WorkaroundNever, false}} {
		b, err := New(Options{Name: tc.name, Path: "/bin/true", Root: t.TempDir(), CgroupWorkaround: tc.mode})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.useWorkaround(); got != tc.want {
			t.Errorf("%s/%s: %v", tc.name, tc.mode, got)
		}
	}
}

// fakeRuntime writes a test double for runc: a /bin/sh script.
func fakeRuntime(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fakerunc")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRefreshParsesList(t *testing.T) {
	bin := fakeRuntime(t, `echo '[{"id":"a","pid":42,"status":"running"},{"id":"b","pid":7,"status":"stopped"}]'`)
	b, err := New(Options{Name: "runc", Path: bin, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cs := []*state.Container{{ID: "a"}, {ID: "b", Pid: 7}, {ID: "gone", Status: state.Running, Pid: 9}}
	if err := b.Refresh(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	if cs[0].Status != state.Running || cs[0].Pid != 42 || cs[1].Status != state.Stopped || cs[1].Pid != 0 ||
		cs[2].Status != state.Stopped || cs[2].Pid != 0 {
		t.Fatalf("refresh: %+v %+v %+v", cs[0], cs[1], cs[2])
	}
	null := fakeRuntime(t, `echo null`)
	b, _ = New(Options{Name: "runc", Path: null, Root: t.TempDir()})
	if err := b.Refresh(context.Background(), cs[:2]); err != nil || cs[0].Status != state.Stopped || cs[1].Status != state.Stopped {
		t.Fatalf("runc's null list: %v %+v %+v", err, cs[0], cs[1])
	}
}

// callLog returns a fake runtime that appends its argv from the verb on
// (without the global flags) to a log, runs script with that argv, and a
// reader of that log.
func callLog(t *testing.T, script string) (bin string, calls func() []string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "calls")
	bin = fakeRuntime(t, `while [ "${1#-}" != "$1" ]; do case $1 in --root|--log|--log-format) shift 2 ;; *) shift ;; esac; done
echo "$*" >> `+log+"\n"+script)
	return bin, func() []string {
		data, err := os.ReadFile(log)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
}

func TestRefreshOfOneContainerIsOneStateCall(t *testing.T) {
	bin, calls := callLog(t, `case "$1:$2" in
state:run1) echo '{"ociVersion":"1.0.2","id":"run1","pid":42,"status":"running"}' ;;
state:dead) echo '{"ociVersion":"1.0.2","id":"dead","pid":42,"status":"stopped"}' ;;
state:gone) echo 'container does not exist' >&2; exit 1 ;;
*) echo 'permission denied' >&2; exit 1 ;;
esac`)
	b, err := New(Options{Name: "runc", Path: bin, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := &state.Container{ID: "run1", Status: state.Created}
	if err := b.Refresh(ctx, []*state.Container{c}); err != nil || c.Status != state.Running || c.Pid != 42 {
		t.Fatalf("refresh: %v %+v", err, c)
	}
	c = &state.Container{ID: "dead", Status: state.Running, Pid: 42}
	if err := b.Refresh(ctx, []*state.Container{c}); err != nil || c.Status != state.Stopped || c.Pid != 0 {
		t.Fatalf("refresh of a stopped container: %v %+v", err, c)
	}
	c = &state.Container{ID: "gone", Status: state.Running, Pid: 9}
	if err := b.Refresh(ctx, []*state.Container{c}); err != nil || c.Status != state.Stopped || c.Pid != 0 {
		t.Fatalf("refresh of a container the runtime lost: %v %+v", err, c)
	}
	c = &state.Container{ID: "other", Status: state.Running, Pid: 9}
	if err := b.Refresh(ctx, []*state.Container{c}); errs.KindOf(err) != errs.KindBackend || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("refresh error: %v", err)
	}
	if got := calls(); !reflect.DeepEqual(got, []string{"state run1", "state dead", "state gone", "state other"}) {
		t.Fatalf("calls: %q", got)
	}
}

// pidWriter is a fake runtime whose create and run write 4242 to the
// --pid-file, like runc (digits, no newline).
const pidWriter = `while [ $# -gt 0 ]; do [ "$1" = --pid-file ] && printf 4242 > "$2"; shift; done`

func TestCreatePidFromPidFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	bin, calls := callLog(t, pidWriter)
	b, err := New(Options{Name: "runc", Path: bin, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	c := &state.Container{ID: "c1", Status: state.Creating}
	if err := b.Create(ctx, c, runtime.CreateOptions{Bundle: "/b"}); err != nil {
		t.Fatal(err)
	}
	if c.Status != state.Created || c.Pid != 4242 {
		t.Fatalf("after create: %+v", c)
	}
	got := calls()
	if len(got) != 1 || !strings.HasPrefix(got[0], "create --bundle /b --pid-file "+root+"/") || !strings.HasSuffix(got[0], " c1") {
		t.Fatalf("create must be one runtime call with a private pid file: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".pid-*")); len(left) != 0 {
		t.Fatalf("private pid file left: %v", left)
	}

	// The caller's pid file is passed through and read.
	mine := filepath.Join(t.TempDir(), "init.pid")
	c = &state.Container{ID: "c2", Status: state.Creating}
	if err := b.Create(ctx, c, runtime.CreateOptions{Bundle: "/b", PidFile: mine}); err != nil || c.Pid != 4242 {
		t.Fatalf("create with --pid-file: %v %+v", err, c)
	}
	if data, err := os.ReadFile(mine); err != nil || string(data) != "4242" {
		t.Fatalf("caller's pid file: %q %v", data, err)
	}
	if got := calls(); len(got) != 2 || got[1] != "create --bundle /b --pid-file "+mine+" c2" {
		t.Fatalf("calls: %q", got)
	}
}

func TestCreateWithoutPidFileAsksTheRuntime(t *testing.T) {
	// A runtime that ignores --pid-file: the pid comes from `state`.
	bin, calls := callLog(t, `[ "$1" = state ] && echo '{"id":"c1","pid":77,"status":"created"}'; exit 0`)
	b, _ := New(Options{Name: "runc", Path: bin, Root: t.TempDir()})
	c := &state.Container{ID: "c1", Status: state.Creating}
	if err := b.Create(context.Background(), c, runtime.CreateOptions{Bundle: "/b"}); err != nil || c.Pid != 77 || c.Status != state.Created {
		t.Fatalf("create: %v %+v", err, c)
	}
	if got := calls(); len(got) != 2 || got[1] != "state c1" {
		t.Fatalf("calls: %q", got)
	}
}

func TestStartKillDeleteAreOneCallEach(t *testing.T) {
	bin, calls := callLog(t, "")
	b, _ := New(Options{Name: "runc", Path: bin, Root: t.TempDir()})
	if !b.EnforcesLifecycle() {
		t.Fatal("runc enforces the lifecycle itself")
	}
	ctx := context.Background()
	c := &state.Container{ID: "c1", Status: state.Created, Pid: 4242}
	if err := b.Start(ctx, c); err != nil || c.Status != state.Running || c.Pid != 4242 {
		t.Fatalf("start: %v %+v", err, c)
	}
	if err := b.Kill(ctx, c, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Kill(ctx, c, syscall.SIGTERM, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	want := []string{"start c1", "kill c1 9", "kill --all c1 15", "delete --force c1"}
	if got := calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls: %q, want %q", got, want)
	}
}

func TestCapturedErrorKeepsRuntimeWords(t *testing.T) {
	bin := fakeRuntime(t, `printf 'container not running' >&2; exit 1`)
	b, _ := New(Options{Name: "runc", Path: bin, Root: t.TempDir()})
	err := b.Kill(context.Background(), &state.Container{ID: "c1"}, syscall.SIGKILL, false)
	if errs.KindOf(err) != errs.KindBackend || err.Error() != "runc kill c1: container not running" {
		t.Fatalf("got %v", err)
	}
	// delete of a container the runtime lost counts as done.
	gone := fakeRuntime(t, `echo 'container does not exist' >&2; exit 1`)
	b, _ = New(Options{Name: "runc", Path: gone, Root: t.TempDir()})
	if err := b.Delete(context.Background(), &state.Container{ID: "c1"}, true); err != nil {
		t.Fatalf("delete of a gone container: %v", err)
	}
}

func TestRunDistinguishesRuntimeFailureFromExitCode(t *testing.T) {
	// The fake logs an error to --log (argv: --root R --log L --log-format json run ...).
	failing := fakeRuntime(t, `[ "$3" = --log ] && echo '{"level":"error","msg":"unknown version specified","time":"t"}' >> "$4"; exit 1`)
	b, _ := New(Options{Name: "crun", Path: failing, Root: t.TempDir(), CgroupWorkaround: WorkaroundNever})
	c := &state.Container{ID: "c1"}
	_, err := b.Run(context.Background(), c, runtime.CreateOptions{Bundle: "/b"}, false)
	if errs.KindOf(err) != errs.KindBackend || !strings.Contains(err.Error(), "unknown version specified") {
		t.Fatalf("runtime failure: %v", err)
	}
	exit7 := fakeRuntime(t, `exit 7`)
	b, _ = New(Options{Name: "crun", Path: exit7, Root: t.TempDir(), CgroupWorkaround: WorkaroundNever})
	code, err := b.Run(context.Background(), c, runtime.CreateOptions{Bundle: "/b"}, false)
	if err != nil || code != 7 {
		t.Fatalf("container exit code: %d %v", code, err)
	}
}

func TestHelperRefusesHostNamespace(t *testing.T) {
	// Called in the test process, which shares its parent's mount
	// namespace: the helper must refuse before touching any mount.
	if code := HelperMain([]string{"/bin/true"}); code != 1 {
		t.Fatalf("helper in the host namespace returned %d", code)
	}
	if code := HelperMain([]string{"relative/crun"}); code != 2 {
		t.Fatalf("helper with a relative path returned %d", code)
	}
	if !HybridWithV2Controllers(CgroupRoot) {
		// Nothing to check on non-hybrid hosts; the mount is still there
		// on hybrid ones.
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(CgroupRoot, "unified"), &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatal("the host's cgroup2 mount was touched")
	}
}

// TestCreateKeepsTemporaryFilesInTheStateDir: the private --pid-file and
// --log of a create or run live in the container's state directory (which
// goes with its record, also by delete --force after a crash), never in
// the runtime's root where a killed create would leave them for ever.
func TestCreateKeepsTemporaryFilesInTheStateDir(t *testing.T) {
	root, stateDir := t.TempDir(), t.TempDir()
	seen := filepath.Join(t.TempDir(), "argv")
	bin := fakeRuntime(t, `printf '%s\n' "$@" >> `+seen+`
`+pidWriter)
	b, err := New(Options{Name: "runc", Path: bin, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	c := &state.Container{ID: "c1", Status: state.Creating}
	if err := b.Create(context.Background(), c, runtime.CreateOptions{Bundle: "/b", StateDir: stateDir}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), &state.Container{ID: "c2"}, runtime.CreateOptions{Bundle: "/b", StateDir: stateDir}, true); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Split(string(data), "\n")
	found := 0
	for i, a := range argv {
		if (a == "--pid-file" || a == "--log") && i+1 < len(argv) {
			found++
			if filepath.Dir(argv[i+1]) != stateDir {
				t.Errorf("%s %s is not in the state directory %s", a, argv[i+1], stateDir)
			}
		}
	}
	if found != 4 {
		t.Errorf("argv %q: want --pid-file and --log for create and run", argv)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("written to the runtime root: %v", ents)
	}
	if ents, _ := os.ReadDir(stateDir); len(ents) != 0 {
		t.Errorf("temporary files left in the state directory: %v", ents)
	}
}
