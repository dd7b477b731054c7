package proxmox

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
	"github.com/nexcage/nexcage/internal/template"
	"github.com/nexcage/nexcage/internal/testutil"
)

// fakeNode is a minimal /etc/pve plus a scripted pct that logs its argv.
// Its create refuses VMIDs listed in taken (as if another node had them)
// and writes a .conf for the others; a VMID listed in badconf gets a
// directory instead of a .conf file, so appending raw lines fails.
//
// The backend's nexcage (SelfExe, the init helper's binary and the
// supervisor) is a scripted fake supervisor: it reports listening, waits
// for the fake pct start of its container, reports its own pid as the
// ready init helper's, and then stands in for the container until it is
// killed. <dir>/sup-mode makes it fail at a step instead (see
// TestCreateUndoesEachSupervisedStep), <dir>/start-fails makes pct start
// fail. So the unit tests run the real create path, supervised start
// and delete included, without LXC.
type fakeNode struct {
	dir, etc, log string
	backend       *Backend
}

func newFakeNode(t *testing.T, taken, badconf string) *fakeNode {
	t.Helper()
	dir := t.TempDir()
	f := &fakeNode{dir: dir, etc: filepath.Join(dir, "etc/pve"), log: filepath.Join(dir, "pct.log")}
	vz := filepath.Join(dir, "vz")
	for _, d := range []string{filepath.Join(f.etc, "nodes/pve/lxc"), filepath.Join(vz, "template/cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	storage := "dir: local\n\tpath " + vz + "\n\tcontent vztmpl,rootdir\n"
	if err := os.WriteFile(filepath.Join(f.etc, "storage.cfg"), []byte(storage), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
echo "$*" >> ` + f.log + `
conf=` + f.etc + `/nodes/pve/lxc/$2.conf
case "$1" in
create)
	for id in ` + taken + `; do
		if [ "$2" = "$id" ]; then echo "CT $2 already exists on node 'pve2'" >&2; exit 255; fi
	done
	for id in ` + badconf + `; do
		if [ "$2" = "$id" ]; then mkdir "$conf"; exit 0; fi
	done
	desc=; prev=
	for a in "$@"; do [ "$prev" = --description ] && desc=$a; prev=$a; done
	printf '#%s\nhostname: x\ntags: nexcage\n' "$desc" > "$conf"; exit 0;;
destroy)
	if [ -d "$conf" ]; then rmdir "$conf"; else rm "$conf"; fi; exit 0;;
start)
	if [ -e ` + dir + `/start-fails ]; then echo "startup for container '$2' failed" >&2; exit 255; fi
	touch ` + dir + `/started-$2; exit 0;;
esac
exit 0
`
	sup := `#!/bin/sh
[ "$1" = "` + supervisor.Verb + `" ] || exit 2
while [ $# -gt 0 ]; do
	case "$1" in --name) name=$2;; esac
	shift
done
mode=$(cat ` + dir + `/sup-mode 2>/dev/null)
case "$mode" in
error-listen) echo "` + supervisor.ReportError + ` cannot listen on the init socket" >&3; exit 1;;
exit-listen) exit 1;;
esac
echo ` + supervisor.ReportListening + ` >&3
while [ ! -e ` + dir + `/started-$name ]; do sleep 0.01; done
case "$mode" in
error-ready) echo "` + supervisor.ReportError + ` cannot run process.args: no such file" >&3; exit 1;;
exit-ready) exit 1;;
bad-ready) echo "` + supervisor.ReportReady + ` x" >&3; exec sleep 600;;
hang-ready) exec sleep 600;;
esac
echo "` + supervisor.ReportReady + ` $$" >&3
exec 3>&-
exec sleep 600
`
	self := filepath.Join(dir, "fake-nexcage")
	if err := os.WriteFile(self, []byte(sup), 0o755); err != nil {
		t.Fatal(err)
	}
	pct := filepath.Join(dir, "pct")
	if err := os.WriteFile(pct, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Proxmox.PctPath, cfg.Proxmox.EtcPve, cfg.Proxmox.Node = pct, f.etc, "pve"
	cfg.Proxmox.PveversionPath = writePveversion(t, dir, "9.1.4", "6.1.10")
	// Never the host's /var/lib/lxc: the VMID lock and helper files live there.
	cfg.Proxmox.LxcPath = filepath.Join(dir, "lxc")
	// Never the host's /run/lock/lxc either.
	cfg.Proxmox.LockDir = filepath.Join(dir, "lock")
	cfg.Proxmox.VMIDRange = [2]int{100, 105}
	cfg.Storage.ImagePath = filepath.Join(dir, "images")
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.SelfExe = self
	b.lxcInfo = "true" // the fake container stops at once
	b.StateDir = filepath.Join(dir, "state", "@proxmox-lxc")
	f.backend = b
	return f
}

func (f *fakeNode) calls(t *testing.T) []string {
	data, err := os.ReadFile(f.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func createOpts(t *testing.T, checkpoints *[]string) (*state.Container, runtime.CreateOptions) {
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1"}, nil)
	spec := mustLoadSpec(t, bundle)
	c := &state.Container{ID: "ct1", Status: state.Creating, Backend: config.BackendProxmox, Created: time.Now()}
	return c, runtime.CreateOptions{Bundle: bundle, Spec: spec, Checkpoint: func(c *state.Container) error {
		*checkpoints = append(*checkpoints, c.Data[DataVMID])
		return nil
	}}
}

func TestCreateRetriesTakenVMIDAndCheckpointsFirst(t *testing.T) {
	f := newFakeNode(t, "100 101", "")
	var cps []string
	c, opts := createOpts(t, &cps)
	if err := f.backend.Create(context.Background(), c, opts); err != nil {
		t.Fatal(err)
	}
	if c.Data[DataVMID] != "102" || c.Status != state.Created {
		t.Errorf("container = %+v", c)
	}
	// The helper directory and the packed template are checkpointed
	// before they are taken (no VMID yet), the VMID before each pct
	// create, and the supervisor's pid right after it starts.
	if strings.Join(cps, ",") != ",,100,101,102,102" {
		t.Errorf("checkpoints = %q", cps)
	}
	// create runs the container (pct start) with the init helper
	// waiting for `start`; its supervisor reported the helper ready.
	calls := f.calls(t)
	if len(calls) != 4 || !strings.HasPrefix(calls[2], "create 102 local:vztmpl/nexcage-") || calls[3] != "start 102" {
		t.Errorf("pct calls = %q", calls)
	}
	if c.Pid <= 0 || c.Data[DataSupervisor] != strconv.Itoa(c.Pid) || !supervised(c) {
		t.Errorf("supervised container = %+v", c)
	}
	conf, _ := os.ReadFile(filepath.Join(f.etc, "nodes/pve/lxc/102.conf"))
	if !strings.Contains(string(conf), "lxc.init.cmd: /.nexcage/nexcage __nexcage-init /.nexcage/init.sock\n") ||
		strings.Contains(string(conf), "lxc.environment") {
		t.Errorf("raw lines:\n%s", conf)
	}
	if p := helperProcessOf(t, c); strings.Join(p.Args, " ") != "sleep 1" || !strings.Contains(strings.Join(p.Env, " "), "TERM=xterm") {
		t.Errorf("process for the init helper = %+v", p)
	}
	// Delete destroys it and removes the packed template.
	if err := f.backend.Delete(context.Background(), c, false); err != nil {
		t.Fatal(err)
	}
	if got := f.calls(t); got[len(got)-1] != "destroy 102 --purge 1 --destroy-unreferenced-disks 1" {
		t.Errorf("last pct call = %q", got[len(got)-1])
	}
	if ents, _ := filepath.Glob(filepath.Join(f.dir, "vz/template/cache/nexcage-*")); len(ents) != 0 {
		t.Errorf("packed template left: %v", ents)
	}
	if left := filesUnder(t, f.backend.helperBase()); len(left) > 0 {
		t.Errorf("left in the helper base: %q", left)
	}
	if _, alive := procfs.StartTime(c.Pid); alive && c.Pid > 0 {
		t.Errorf("supervisor %d still runs after delete", c.Pid)
	}
}

// helperProcessOf reads the process create handed to c's supervisor.
func helperProcessOf(t *testing.T, c *state.Container) *inithelper.Process {
	t.Helper()
	data, err := os.ReadFile(c.Data[DataHelperDir] + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var m inithelper.Message
	if err := json.Unmarshal(data, &m); err != nil || m.Process == nil {
		t.Fatalf("process description %s: %v", data, err)
	}
	return m.Process
}

func TestCreateRollsBackWhenRawLinesFail(t *testing.T) {
	f := newFakeNode(t, "", "100")
	var cps []string
	c, opts := createOpts(t, &cps)
	err := f.backend.Create(context.Background(), c, opts)
	if errs.KindOf(err) != errs.KindBackend || !strings.Contains(err.Error(), "ct1") {
		t.Fatalf("err = %v", err)
	}
	calls := f.calls(t)
	if len(calls) != 2 || calls[1] != "destroy 100 --purge 1 --force 1 --destroy-unreferenced-disks 1" {
		t.Errorf("pct calls = %q, want create then destroy", calls)
	}
	if ents, _ := filepath.Glob(filepath.Join(f.dir, "vz/template/cache/nexcage-*")); len(ents) != 0 {
		t.Errorf("packed template left after rollback: %v", ents)
	}
}

func TestCreateNoFreeVMID(t *testing.T) {
	f := newFakeNode(t, "", "")
	if err := os.WriteFile(filepath.Join(f.etc, ".vmlist"),
		[]byte(`{"version":1,"ids":{"100":{},"101":{},"102":{},"103":{},"104":{},"105":{}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var cps []string
	c, opts := createOpts(t, &cps)
	err := f.backend.Create(context.Background(), c, opts)
	if errs.KindOf(err) != errs.KindAlreadyExists || !strings.Contains(err.Error(), "vmid_range") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(f.log); !os.IsNotExist(err) {
		t.Error("pct was called although no VMID was free")
	}
}

func TestRefreshAndKill(t *testing.T) {
	f := newFakeNode(t, "", "")
	os.WriteFile(filepath.Join(f.etc, "nodes/pve/lxc/100.conf"), []byte("hostname: x\n"), 0o644)
	self := os.Getpid()
	st, ok := procfs.StartTime(self)
	if !ok {
		t.Fatal("no start time for self")
	}
	running := &state.Container{ID: "a", Status: state.Running, Pid: self, Data: map[string]string{DataVMID: "100", DataStartTime: st}}
	reused := &state.Container{ID: "b", Status: state.Running, Pid: self, Data: map[string]string{DataVMID: "100", DataStartTime: "1"}}
	vanished := &state.Container{ID: "c", Status: state.Created, Data: map[string]string{DataVMID: "101"}}
	created := &state.Container{ID: "d", Status: state.Created, Data: map[string]string{DataVMID: "100"}}
	if err := f.backend.Refresh(context.Background(), []*state.Container{running, reused, vanished, created}); err != nil {
		t.Fatal(err)
	}
	if running.Status != state.Running || reused.Status != state.Stopped || reused.Pid != 0 ||
		vanished.Status != state.Stopped || vanished.Data[DataVanished] != "1" || created.Status != state.Created {
		t.Errorf("refresh: %+v %+v %+v %+v", running, reused, vanished, created)
	}
	// Kill on a stopped container is an OCI state error; pct is never used.
	if err := f.backend.Kill(context.Background(), reused, syscall.SIGTERM, false); errs.KindOf(err) != errs.KindState {
		t.Errorf("kill stopped: %v", err)
	}
	if err := f.backend.Kill(context.Background(), running, 0, false); err != nil {
		t.Errorf("kill 0 to a live pid: %v", err)
	}
	if _, err := os.Stat(f.log); !os.IsNotExist(err) {
		t.Error("refresh/kill called pct")
	}
	// The test runs in the host's pid namespace: kill --all and ps must
	// refuse it (it would be every process of the host), and signal
	// nothing.
	if pids, err := pidsInNamespace(self); !errors.Is(err, errHostPidNS) {
		t.Errorf("pidsInNamespace(host pid) = %v, %v; want errHostPidNS", pids, err)
	}
	if err := f.backend.Kill(context.Background(), running, 0, true); errs.KindOf(err) != errs.KindState || !strings.Contains(err.Error(), "host's pid namespace") {
		t.Errorf("kill --all with a host pid: %v; want a state error naming the host's pid namespace", err)
	}
}

// TestOwnHelperDir: the helper directory goes to the container's root as
// the translator computes it: host 0:0 for a privileged container,
// 100000 for Proxmox's idmap, the mapped ids for a bundle's own mapping.
func TestOwnHelperDir(t *testing.T) {
	for _, c := range []struct {
		name     string
		unpriv   bool
		uid, gid []specs.LinuxIDMapping
		want     [2]uint32
	}{
		{"privileged", false, nil, nil, [2]uint32{0, 0}},
		{"unprivileged", true, nil, nil, [2]uint32{unprivBase, unprivBase}},
		{"own mapping", false, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 3000, Size: 10}}, [2]uint32{1000, 3000}},
	} {
		in := baseInput(t)
		in.Unprivileged = c.unpriv
		in.Spec.Linux.UIDMappings, in.Spec.Linux.GIDMappings = c.uid, c.gid
		req, err := Translate(in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		dir := filepath.Join(t.TempDir(), "h")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := ownHelperDir("x", dir, req.RootUID, req.RootGID); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o700 || st.Uid != c.want[0] || st.Gid != c.want[1] {
			t.Errorf("%s: mode %o owner %d:%d, want 700 %d:%d", c.name, fi.Mode().Perm(), st.Uid, st.Gid, c.want[0], c.want[1])
		}
	}
}

// TestPidsInNamespace lists a process in a pid namespace of its own.
func TestPidsInNamespace(t *testing.T) {
	cmd := exec.Command(testutil.BusyboxPath, "sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pids, err := pidsInNamespace(cmd.Process.Pid)
	if err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("pidsInNamespace = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
}

func TestApplyImageConfig(t *testing.T) {
	in := baseInput(t)
	in.Spec.Process = nil
	ic := &template.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"run"}, Env: []string{"A=1"}, WorkingDir: "/app", User: "1000:100"}
	if err := applyImageConfig(in.Spec, ic); err != nil {
		t.Fatal(err)
	}
	in.KeepTemplateInit = true
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	// The image's process runs through the init helper like a bundle's.
	checkNoDroppedKeys(t, r)
	if p := r.Process; p == nil || strings.Join(p.Args, " ") != "/entry run" || strings.Join(p.Env, " ") != "A=1" ||
		p.Cwd != "/app" || p.UID != 1000 || p.GID != 100 {
		t.Errorf("process for the init helper = %+v", r.Process)
	}
	if err := applyImageConfig(in.Spec, &template.ImageConfig{Cmd: []string{"x"}, User: "nginx"}); errs.KindOf(err) != errs.KindUnsupported {
		t.Errorf("named user: %v", err)
	}
	// Without a process, a template keeps its own init.
	in2 := baseInput(t)
	in2.Spec.Process = nil
	in2.KeepTemplateInit, in2.InitHelperDir = true, ""
	r2, err := Translate(in2)
	if err != nil || strings.Contains(strings.Join(rawLines(r2), "\n"), "lxc.init.cmd") {
		t.Errorf("template init: %v %v", rawLines(r2), err)
	}
}

func mustLoadSpec(t *testing.T, dir string) *specs.Spec {
	t.Helper()
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b.Spec
}

// TestDeleteUnfinishedCreate: delete --force of a container whose create
// was killed (status creating, VMID recorded) clears the stale `create`
// lock and destroys the CT only when the CT is ours by its reference (or
// a bare `lock: create` config); a CT of someone else at that VMID is left
// alone, whatever its hostname and tags, and only our record goes.
func TestDeleteUnfinishedCreate(t *testing.T) {
	const ref = "0123456789abcdef0123456789abcdef"
	const other = "fedcba9876543210fedcba9876543210"
	destroy := "destroy 100 --purge 1 --destroy-unreferenced-disks 1"
	for _, tc := range []struct {
		name, conf string
		want       []string // pct calls
	}{
		{"bare create lock", "lock: create\n", []string{"unlock 100", destroy}},
		{"ours, locked", "#nexcage-ref=" + ref + "\nhostname: ct1\nlock: create\ntags: nexcage\n", []string{"unlock 100", destroy}},
		{"ours, finished", "#nexcage-ref=" + ref + "\nhostname: ct1\ntags: nexcage\n", []string{destroy}},
		{"someone else's, locked", "hostname: web\nlock: create\ntags: prod\n", nil},
		{"someone else's", "hostname: web\n", nil},
		{"same hostname and tag, no reference", "hostname: ct1\nlock: create\ntags: nexcage\n", nil},
		{"same hostname and tag, another reference", "#nexcage-ref=" + other + "\nhostname: ct1\ntags: nexcage\n", nil},
		{"create lock with a snapshot section", "lock: create\n\n[s]\nhostname: a\n", nil},
		{"never registered", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t, "", "")
			conf := filepath.Join(f.etc, "nodes/pve/lxc/100.conf")
			if tc.conf != "" {
				if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := &state.Container{ID: "ct1", Status: state.Creating, Data: map[string]string{DataVMID: "100", DataHostname: "ct1", DataOwnerRef: ref}}
			if err := f.backend.Delete(context.Background(), c, true); err != nil {
				t.Fatal(err)
			}
			var got []string
			if _, err := os.Stat(f.log); err == nil {
				got = f.calls(t)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("pct calls = %q, want %q", got, tc.want)
			}
			_, err := os.Stat(conf)
			if gone := os.IsNotExist(err); gone != (tc.want != nil || tc.conf == "") {
				t.Errorf("config removed = %v", gone)
			}
		})
	}
}

// TestOwnershipByReferenceNotHostname: two ids that map to one hostname
// ("web-1" and "web_1" both become "web-1"). One's create was killed
// after it recorded a VMID that the other's CT then got; delete --force of
// the killed one never destroys the other's CT. Neither does a plain
// delete of a finished container whose CT was replaced under its VMID.
func TestOwnershipByReferenceNotHostname(t *testing.T) {
	f := newFakeNode(t, "", "")
	if SanitizeHostname("web-1") != SanitizeHostname("web_1") {
		t.Fatalf("test premise: %q != %q", SanitizeHostname("web-1"), SanitizeHostname("web_1"))
	}
	var cps []string
	b, opts := createOpts(t, &cps)
	b.ID = "web_1"
	if err := f.backend.Create(context.Background(), b, opts); err != nil {
		t.Fatal(err)
	}
	vmid := b.Data[DataVMID]
	conf := filepath.Join(f.etc, "nodes/pve/lxc", vmid+".conf")
	before, err := os.ReadFile(conf)
	if err != nil || !strings.Contains(string(before), "#nexcage-ref="+b.Data[DataOwnerRef]+"\n") {
		t.Fatalf("config of web_1 lacks its reference (%v):\n%s", err, before)
	}
	// web-1: killed during create, its record names the same VMID and
	// hostname, with a reference of its own.
	a := &state.Container{ID: "web-1", Status: state.Creating, Data: map[string]string{
		DataVMID: vmid, DataHostname: b.Data[DataHostname], DataOwnerRef: newOwnerRef()}}
	calls := len(f.calls(t))
	if err := f.backend.Delete(context.Background(), a, true); err != nil {
		t.Fatal(err)
	}
	// A finished record whose CT was replaced: also left alone.
	a2 := &state.Container{ID: "web-1", Status: state.Stopped, Data: map[string]string{
		DataVMID: vmid, DataHostname: b.Data[DataHostname], DataOwnerRef: newOwnerRef()}}
	if err := f.backend.Delete(context.Background(), a2, false); err != nil {
		t.Fatal(err)
	}
	if got := f.calls(t); len(got) != calls {
		t.Errorf("pct called for the other container's CT: %q", got[calls:])
	}
	if after, _ := os.ReadFile(conf); string(after) != string(before) {
		t.Errorf("web_1's config changed:\n%s", after)
	}
	if err := f.backend.Delete(context.Background(), b, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("web_1's own delete left its config: %v", err)
	}
}

// TestDeleteUnfinishedWaitsForConfigLock: while a create still holds
// Proxmox's config lock of the VMID, delete --force waits for it and,
// after its bound, fails with a lock error and destroys nothing.
func TestDeleteUnfinishedWaitsForConfigLock(t *testing.T) {
	f := newFakeNode(t, "", "")
	f.backend.pct.Timeout, f.backend.pct.KillGrace = 100*time.Millisecond, 100*time.Millisecond
	f.backend.ConfigLockWait = 100 * time.Millisecond
	conf := filepath.Join(f.etc, "nodes/pve/lxc/100.conf")
	if err := os.WriteFile(conf, []byte("lock: create\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	held := holdConfigLock(t, f.backend, 100)
	c := &state.Container{ID: "ct1", Status: state.Creating, Data: map[string]string{DataVMID: "100", DataOwnerRef: newOwnerRef()}}
	err := f.backend.Delete(context.Background(), c, true)
	if errs.KindOf(err) != errs.KindLocked || !strings.Contains(err.Error(), "pve-config-100.lock") {
		t.Fatalf("err = %v, want a lock timeout", err)
	}
	if _, err := os.Stat(f.log); !os.IsNotExist(err) {
		t.Errorf("pct called while a create held the lock: %q", f.calls(t))
	}
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := f.backend.Delete(context.Background(), c, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("config left after the lock was free: %v", err)
	}
}

func holdConfigLock(t *testing.T, b *Backend, vmid int) *flock.Flock {
	t.Helper()
	if err := os.MkdirAll(b.lockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := flock.New(pve.ConfigLockPath(b.lockDir, vmid))
	if err := l.Lock(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Unlock() })
	return l
}

// TestCreateWaitsForConfigLock: the raw lines are added under Proxmox's
// config lock; while someone else holds it, create waits its bound, then
// fails with a lock error and rolls back.
func TestCreateWaitsForConfigLock(t *testing.T) {
	f := newFakeNode(t, "", "")
	f.backend.ConfigLockWait = 200 * time.Millisecond
	holdConfigLock(t, f.backend, 100)
	var cps []string
	c, opts := createOpts(t, &cps)
	err := f.backend.Create(context.Background(), c, opts)
	if errs.KindOf(err) != errs.KindLocked || !strings.Contains(err.Error(), "pve-config-100.lock") {
		t.Fatalf("err = %v, want a lock timeout", err)
	}
	if calls := f.calls(t); calls[len(calls)-1] != "destroy 100 --purge 1 --force 1 --destroy-unreferenced-disks 1" {
		t.Errorf("pct calls = %q, want a rollback", calls)
	}
}

// TestUnmountLeftRootfs: only what is mounted at <lxc_path>/<vmid>/rootfs
// and below goes; the rootfs of another VMID stays mounted.
func TestUnmountLeftRootfs(t *testing.T) {
	f := newFakeNode(t, "", "")
	mine := filepath.Join(f.backend.lxcPath, "100", "rootfs")
	nested := filepath.Join(mine, "data")
	other := filepath.Join(f.backend.lxcPath, "1000", "rootfs")
	for _, d := range []string{mine, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(p string) {
		t.Helper()
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("cannot mount tmpfs (the tests run as root): %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	}
	mount(mine)
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(nested)
	mount(other)
	if err := f.backend.unmountLeftRootfs(100); err != nil {
		t.Fatal(err)
	}
	mounted := func(p string) bool {
		ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
		if err != nil {
			t.Fatal(err)
		}
		return len(ms) > 0
	}
	if mounted(mine) || mounted(nested) {
		t.Error("rootfs of 100 still mounted")
	}
	if !mounted(other) {
		t.Error("rootfs of 1000 was unmounted too")
	}
}

// TestHelperCopyGoesWithLastUser: containers share one copy of the
// helper binary (hard links); it is removed with the last container that
// uses it, on delete and on a failed create's rollback alike, so nothing
// stays in the helper base.
func TestHelperCopyGoesWithLastUser(t *testing.T) {
	f := newFakeNode(t, "", "")
	b := f.backend
	b.SelfExe = testutil.BusyboxPath // a static binary
	a := &state.Container{ID: "a", Data: map[string]string{}}
	c := &state.Container{ID: "c", Data: map[string]string{}}
	for _, x := range []*state.Container{a, c} {
		if _, err := b.prepareHelper(x, nil); err != nil {
			t.Fatal(err)
		}
	}
	copies, _ := filepath.Glob(filepath.Join(b.helperBase(), helperCopyPattern))
	if len(copies) != 1 {
		t.Fatalf("shared copies = %q, want one", copies)
	}
	b.cleanupHelper(a)
	if _, err := os.Stat(copies[0]); err != nil {
		t.Fatalf("shared copy removed while c uses it: %v", err)
	}
	// c holds its own link: the shared copy going does not affect it,
	// and the next create makes a new one.
	if err := os.Remove(copies[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Data[DataHelperDir], "nexcage")); err != nil {
		t.Fatalf("c's helper: %v", err)
	}
	d := &state.Container{ID: "d", Data: map[string]string{}}
	if _, err := b.prepareHelper(d, nil); err != nil {
		t.Fatal(err)
	}
	b.cleanupHelper(c)
	b.cleanupHelper(d)
	if left := filesUnder(t, b.helperBase()); len(left) > 0 {
		t.Errorf("left in the helper base: %q", left)
	}
}

// TestHelperRefusesDynamicBinary: a dynamically linked nexcage cannot be
// the init helper; create says so and leaves nothing behind.
func TestHelperRefusesDynamicBinary(t *testing.T) {
	f := newFakeNode(t, "", "")
	b := f.backend
	b.SelfExe = "/bin/ls" // dynamically linked on Debian
	_, err := b.prepareHelper(&state.Container{ID: "a", Data: map[string]string{}}, nil)
	if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), "not a static binary") {
		t.Fatalf("err = %v", err)
	}
	if left := filesUnder(t, b.helperBase()); len(left) > 0 {
		t.Errorf("left in the helper base: %q", left)
	}
}

func filesUnder(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestVMIDLockReleasedOnRegistration: the node's VMID lock is held while
// pct create runs only until the VMID shows up in .vmlist (pct registers
// it first), so other creates on the node wait for that, not for the
// whole create; it is released (and its file removed) when pct ends too.
func TestVMIDLockReleasedOnRegistration(t *testing.T) {
	f := newFakeNode(t, "", "")
	release := filepath.Join(f.dir, "release")
	script := `#!/bin/sh
printf '{"version":2,"ids":{"%s":{"node":"pve","type":"lxc","version":1}}}' "$2" > ` + f.etc + `/.vmlist
while [ ! -e ` + release + ` ]; do sleep 0.01; done
exit 0
`
	if err := os.WriteFile(f.backend.pct.Path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nl, err := f.backend.vmidLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.backend.pctCreateRegistering(ctx, 100, "local:vztmpl/x.tar.zst", nil, nl) }()
	// pct still runs (it waits for release), yet the lock is free again.
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	second, err := f.backend.vmidLock(lctx)
	if err != nil {
		t.Fatalf("VMID lock not released after registration: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("pct create finished before it was released: %v", err)
	default:
	}
	if err := second.UnlockRemove(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if left := filesUnder(t, f.backend.helperBase()); len(left) > 0 {
		t.Errorf("left in the helper base: %q", left)
	}
}

// TestCreateAndExecCarryTheWholeProcess runs the real create path (fake
// pct, fake supervisor) with a bundle whose process asks for every field:
// the init helper gets all of it and the config none of it; then exec,
// through a fake lxc-attach, hands the process to the exec helper on fd 3,
// never on the command line, starting from the container's process as
// runc does.
func TestCreateAndExecCarryTheWholeProcess(t *testing.T) {
	f := newFakeNode(t, "", "")
	attach := filepath.Join(f.dir, "lxc-attach")
	script := `#!/bin/sh
echo "$*" > ` + f.dir + `/attach.argv
cat <&3 > ` + f.dir + `/attach.process
exit 7
`
	if err := os.WriteFile(attach, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f.backend.lxcAttach = attach
	var cps []string
	c, opts := createOpts(t, &cps)
	umask := uint32(0o027)
	p := opts.Spec.Process
	p.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1001}, Umask: &umask}
	p.Cwd, p.NoNewPrivileges = "/app", true
	p.Env = append(p.Env, "SECRET=s3cr3t")
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 777, Hard: 888}}
	p.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}}
	opts.Spec.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	if err := f.backend.Create(context.Background(), c, opts); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.backend.Delete(context.Background(), c, true); err != nil {
			t.Error(err)
		}
	}()
	// Only the container's root (unprivileged by default: host uid and
	// gid 100000) may reach the init socket; nobody may list the base.
	checkMode := func(p string, mode os.FileMode, uid, gid uint32) {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != mode || st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
		}
	}
	checkMode(c.Data[DataHelperDir], 0o700, unprivBase, unprivBase)
	checkMode(filepath.Join(c.Data[DataHelperDir], "nexcage"), 0o755, 0, 0)
	checkMode(f.backend.helperBase(), helperBaseMode, 0, 0)
	conf, _ := os.ReadFile(filepath.Join(f.etc, "nodes/pve/lxc/100.conf"))
	for _, k := range droppedRawKeys {
		if strings.Contains(string(conf), k) {
			t.Errorf("config has %s:\n%s", k, conf)
		}
	}
	hp := helperProcessOf(t, c)
	if hp.UID != 1000 || hp.Cwd != "/app" || !hp.NoNewPrivileges || hp.Umask == nil || *hp.Umask != 0o027 ||
		len(hp.Rlimits) != 1 || hp.Capabilities == nil || hp.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("process for the init helper = %+v", hp)
	}

	// exec without --process: the container's process with the command
	// and --env added; --user overrides the user.
	var out strings.Builder
	code, err := f.backend.Passthrough(context.Background(), c, "exec",
		[]string{"--env", "EXTRA=1", "--user", "5:6", c.ID, "sh", "-c", "echo hi"}, runtime.Stdio{Stdout: &out, Stderr: &out})
	if err != nil || code != 7 {
		t.Fatalf("exec = %d, %v", code, err)
	}
	argv, _ := os.ReadFile(filepath.Join(f.dir, "attach.argv"))
	if strings.Contains(string(argv), "s3cr3t") || strings.Contains(string(argv), "echo hi") ||
		!strings.HasSuffix(strings.TrimSpace(string(argv)), "-- "+inithelper.Binary+" "+inithelper.ExecVerb) {
		t.Errorf("lxc-attach argv = %q", argv)
	}
	var ep inithelper.Process
	data, _ := os.ReadFile(filepath.Join(f.dir, "attach.process"))
	if err := json.Unmarshal(data, &ep); err != nil {
		t.Fatalf("process on fd 3: %q: %v", data, err)
	}
	if strings.Join(ep.Args, "|") != "sh|-c|echo hi" || ep.UID != 5 || ep.GID != 6 || ep.Cwd != "/app" || !ep.NoNewPrivileges ||
		ep.Capabilities == nil || len(ep.Rlimits) != 1 || ep.Sysctl != nil || ep.ContainerBounding == "" ||
		!strings.Contains(strings.Join(ep.Env, " "), "SECRET=s3cr3t") || !strings.HasSuffix(strings.Join(ep.Env, " "), "EXTRA=1") {
		t.Errorf("exec process = %+v", ep)
	}
}

// TestCreateFromTemplateWithProcessUsesHelper: a bundle that names a
// template (annotation) but has a process runs it through the init
// helper too: the helper directory is bind-mounted into any rootfs.
func TestCreateFromTemplateWithProcessUsesHelper(t *testing.T) {
	f := newFakeNode(t, "", "")
	tmpl := "debian-12-standard_12.7-1_amd64.tar.gz"
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, d := range []string{"./bin/", "./etc/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "vz/template/cache", tmpl), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var cps []string
	c, opts := createOpts(t, &cps)
	opts.Spec.Annotations = map[string]string{AnnotationTemplate: "local:vztmpl/" + tmpl}
	if err := f.backend.Create(context.Background(), c, opts); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.backend.Delete(context.Background(), c, true); err != nil {
			t.Error(err)
		}
	}()
	calls := f.calls(t)
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "create 100 local:vztmpl/"+tmpl) || calls[1] != "start 100" {
		t.Errorf("pct calls = %q", calls)
	}
	conf, _ := os.ReadFile(filepath.Join(f.etc, "nodes/pve/lxc/100.conf"))
	if !supervised(c) || !strings.Contains(string(conf), "lxc.init.cmd: /.nexcage/nexcage __nexcage-init") ||
		!strings.Contains(string(conf), "lxc.mount.entry: "+c.Data[DataHelperDir]+" .nexcage none bind,ro,create=dir 0 0") {
		t.Errorf("not run through the helper: %+v\n%s", c.Data, conf)
	}
}

// TestPersistBeforeAcquire: at every checkpoint of a create, each
// resource that exists (packed template, its reference file, the CT
// config) was already named by an earlier checkpoint, so a crash at any
// point leaves a record that names everything delete --force must free.
func TestPersistBeforeAcquire(t *testing.T) {
	f := newFakeNode(t, "100", "")
	cache := filepath.Join(f.dir, "vz/template/cache")
	var saved []map[string]string // the records checkpointed so far
	named := func(key, val string) bool {
		for _, d := range saved {
			if d[key] == val {
				return true
			}
		}
		return false
	}
	check := func(when string) {
		t.Helper()
		tmpls, _ := filepath.Glob(filepath.Join(cache, "nexcage-*"))
		for _, p := range tmpls {
			if strings.HasSuffix(p, ".json") {
				continue
			}
			if !named(DataOSTemplate, "local:vztmpl/"+filepath.Base(p)) {
				t.Errorf("%s: template %s exists but no earlier checkpoint names it", when, filepath.Base(p))
			}
		}
		refs, _ := filepath.Glob(filepath.Join(cache, ".nexcage/*.refs/*"))
		for _, p := range refs {
			if !named(DataTemplateRef, filepath.Base(p)) {
				t.Errorf("%s: template reference %s exists but no earlier checkpoint names it", when, filepath.Base(p))
			}
		}
		confs, _ := filepath.Glob(filepath.Join(f.etc, "nodes/pve/lxc/*.conf"))
		for _, p := range confs {
			if !named(DataVMID, strings.TrimSuffix(filepath.Base(p), ".conf")) {
				t.Errorf("%s: CT config %s exists but no earlier checkpoint names its VMID", when, filepath.Base(p))
			}
		}
	}
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1"}, nil)
	c := &state.Container{ID: "ct1", Status: state.Creating, Backend: config.BackendProxmox, Created: time.Now()}
	opts := runtime.CreateOptions{Bundle: bundle, Spec: mustLoadSpec(t, bundle), Checkpoint: func(c *state.Container) error {
		check(fmt.Sprintf("checkpoint %d", len(saved)+1))
		saved = append(saved, maps.Clone(c.Data))
		return nil
	}}
	if err := f.backend.Create(context.Background(), c, opts); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.backend.Delete(context.Background(), c, true); err != nil {
			t.Error(err)
		}
	}()
	check("after create")
	if len(saved) < 3 {
		t.Errorf("only %d checkpoints", len(saved))
	}
}

// TestCreateInterruptedUndoes: a create whose context is cancelled while
// pct create runs (SIGINT/SIGTERM to nexcage) sends pct SIGTERM, then
// removes what pct left (it is ours by its reference) and every other
// resource: nothing stays.
func TestCreateInterruptedUndoes(t *testing.T) {
	f := newFakeNode(t, "", "")
	started := filepath.Join(f.dir, "started")
	// A pct create that writes its config, announces itself, and ignores
	// SIGTERM's rollback (as a worker killed at the wrong moment would).
	script := `#!/bin/sh
echo "$*" >> ` + f.log + `
conf=` + f.etc + `/nodes/pve/lxc/$2.conf
case "$1" in
create)
	desc=; prev=
	for a in "$@"; do [ "$prev" = --description ] && desc=$a; prev=$a; done
	printf '#%s\nhostname: x\n' "$desc" > "$conf"
	trap 'exit 1' TERM
	touch ` + started + `
	while :; do sleep 0.05; done;;
destroy)
	rm -f "$conf"; exit 0;;
esac
exit 0
`
	if err := os.WriteFile(f.backend.pct.Path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cancelWhenExists(ctx, cancel, started)
	var cps []string
	c, opts := createOpts(t, &cps)
	err := f.backend.Create(ctx, c, opts)
	if err == nil || errors.Is(err, runtime.ErrCleanupIncomplete) {
		t.Fatalf("err = %v, want an interrupted create, fully undone", err)
	}
	calls := f.calls(t)
	if calls[len(calls)-1] != "destroy 100 --purge 1 --destroy-unreferenced-disks 1" {
		t.Errorf("pct calls = %q, want the CT destroyed", calls)
	}
	if left := filesUnder(t, filepath.Join(f.etc, "nodes")); len(left) > 0 {
		t.Errorf("configs left: %q", left)
	}
	if ents, _ := filepath.Glob(filepath.Join(f.dir, "vz/template/cache/nexcage-*")); len(ents) != 0 {
		t.Errorf("packed template left: %v", ents)
	}
	if c.Data[DataVMID] != "" {
		t.Errorf("VMID still recorded after a complete undo: %v", c.Data)
	}
}

// TestDeleteUnfinishedWithoutForce: a plain delete of an interrupted
// create whose CT still holds the create lock changes nothing and says to
// use --force.
func TestDeleteUnfinishedWithoutForce(t *testing.T) {
	f := newFakeNode(t, "", "")
	conf := filepath.Join(f.etc, "nodes/pve/lxc/100.conf")
	if err := os.WriteFile(conf, []byte("lock: create\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &state.Container{ID: "ct1", Status: state.Creating, Data: map[string]string{DataVMID: "100", DataOwnerRef: newOwnerRef()}}
	err := f.backend.Delete(context.Background(), c, false)
	if errs.KindOf(err) != errs.KindLocked || !strings.Contains(err.Error(), "delete --force ct1") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(f.log); !os.IsNotExist(err) {
		t.Errorf("pct called: %q", f.calls(t))
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("config: %v", err)
	}
}

// TestExecOutputRefusesUntrusted: lxc-info (and every program execOutput
// runs as root) found in a directory another user can write is refused
// without being run.
func TestExecOutputRefusesUntrusted(t *testing.T) {
	evil, open, ran := testutil.PlantedProgram(t, "lxc-info", "")
	_, err := execOutput(context.Background(), evil, "-s")
	if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), open) {
		t.Fatalf("err = %v (kind %v)", err, errs.KindOf(err))
	}
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("the planted lxc-info ran")
	}
}
