package proxmox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/goleak"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
)

func helperInput(dir string, args []string) Input {
	return Input{
		ID: "c1", Storage: "local", Bridge: "vmbr0", InitHelperDir: dir,
		Spec: &specs.Spec{
			Process: &specs.Process{Args: args, Cwd: "/"},
			Root:    &specs.Root{Path: "rootfs"},
			Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}},
		},
	}
}

func TestTranslateInitHelper(t *testing.T) {
	// Arguments lxc.init.cmd could not carry need no script: the helper
	// gets them over its socket.
	req, err := Translate(helperInput("/var/lib/lxc/.nexcage/c1-abc", []string{"sh", "-c", "echo 'a b'; exit 3"}))
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]string{}
	for _, r := range req.Raw {
		raw[r.Key] = r.Value
	}
	if want := inithelper.Binary + " " + inithelper.InitVerb + " " + inithelper.Socket; raw["lxc.init.cmd"] != want {
		t.Errorf("lxc.init.cmd = %q, want %q", raw["lxc.init.cmd"], want)
	}
	if want := "/var/lib/lxc/.nexcage/c1-abc .nexcage none bind,ro,create=dir 0 0"; raw["lxc.mount.entry"] != want {
		t.Errorf("lxc.mount.entry = %q, want %q", raw["lxc.mount.entry"], want)
	}
	if req.Process == nil || strings.Join(req.Process.Args, "|") != "sh|-c|echo 'a b'; exit 3" {
		t.Errorf("process for the helper = %+v", req.Process)
	}
	found := false
	for _, m := range req.MountTargets {
		found = found || m.Path == inithelper.MountPoint
	}
	if !found {
		t.Errorf("mount targets %v lack %s", req.MountTargets, inithelper.MountPoint)
	}
}

func TestTranslateInitHelperRefusesBadDir(t *testing.T) {
	for _, dir := range []string{"relative/dir", "/with blank/x", "/with\nnewline", `/back\slash`} {
		_, err := Translate(helperInput(dir, []string{"true"}))
		if errs.KindOf(err) != errs.KindInvalidConfig {
			t.Errorf("dir %q: err = %v, want an invalid config error", dir, err)
		}
	}
	if _, err := Translate(helperInput("/ok", []string{"a\x00b"})); err == nil || !strings.Contains(err.Error(), "process.args[0]") {
		t.Errorf("NUL in args: %v", err)
	}
}

func TestParseExecArgs(t *testing.T) {
	f, err := parseExecArgs("c1", []string{"--process", "/b/p.json", "--detach", "--pid-file=/b/e.pid", "c1"})
	if err != nil || f.process != "/b/p.json" || !f.detach || f.pidFile != "/b/e.pid" || len(f.command) != 0 {
		t.Fatalf("shim form: %+v %v", f, err)
	}
	f, err = parseExecArgs("c1", []string{"-e", "A=1", "--cwd", "/tmp", "-u", "5:6", "c1", "sh", "-c", "echo -n x"})
	if err != nil || f.cwd != "/tmp" || f.user != "5:6" || f.env[0] != "A=1" || strings.Join(f.command, "|") != "sh|-c|echo -n x" {
		t.Fatalf("cli form: %+v %v", f, err)
	}
	for _, bad := range [][]string{{"--tty", "c1", "sh"}, {"--console-socket", "/s", "c1"}, {"--cap", "CAP_X", "c1"}, {"--process"}} {
		if _, err := parseExecArgs("c1", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestStartSupervisedEarlyReturnLeaksNothing: when startSupervised gives up
// early (here the supervisor reports an error) while the supervisor still
// writes report lines, the supervisor is killed and the reader of its
// reports ends (it used to block for ever on a line nobody took).
func TestStartSupervisedEarlyReturnLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newFakeNode(t, "", "")
	dir := t.TempDir()
	sup := filepath.Join(dir, "chatty-supervisor")
	script := "#!/bin/sh\necho " + supervisor.ReportError + " boom >&3\nfor i in 1 2 3 4 5 6 7 8; do echo noise >&3; done\nexec sleep 600\n"
	if err := os.WriteFile(sup, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f.backend.SelfExe = sup
	c := &state.Container{ID: "early", Data: map[string]string{DataHelperDir: filepath.Join(dir, "helper")}}
	for i := 0; i < 3; i++ {
		err := f.backend.startSupervised(context.Background(), c, 100, runtime.CreateOptions{}, &inithelper.Process{Args: []string{"x"}}, nil, nil, unprivBase, unprivBase)
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("startSupervised: %v, want the supervisor's error", err)
		}
		f.backend.supervisors.Delete(c.ID)
	}
}
