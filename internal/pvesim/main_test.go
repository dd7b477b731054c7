package pvesim

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func runMain(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func TestMainRefusesWithoutRoot(t *testing.T) {
	for _, root := range []string{"", "/", "/tmp/.."} {
		t.Setenv("PVESIM_ROOT", root)
		_, stderr, code := runMain(t, "pct", "list")
		if code != exitUsage || !strings.Contains(stderr, "PVESIM_ROOT") {
			t.Errorf("root %q: %d %q", root, code, stderr)
		}
	}
}

func TestMainDispatchAndLog(t *testing.T) {
	n, root := initNode(t)
	logPath := filepath.Join(t.TempDir(), "calls.log")
	t.Setenv("PVESIM_ROOT", root)
	t.Setenv("PVESIM_LOG", logPath)
	t.Setenv("PVESIM_LATENCY_MS", "1")
	if err := os.WriteFile(n.ConfPath(100), []byte("hostname: a\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	// By argv[0] (a symlink named pct), and as `pvesim pct`.
	for _, argv := range [][]string{{"/usr/sbin/pct", "config", "100"}, {"pvesim", "pct", "config", "100"}} {
		stdout, stderr, code := runMain(t, argv...)
		if code != 0 || stdout != "hostname: a\n" {
			t.Errorf("%v: %d %q %q", argv, code, stdout, stderr)
		}
	}
	if _, _, code := runMain(t, "pvesim", "pct", "status", "abc"); code != 255 {
		t.Errorf("bad vmid exit %d", code)
	}
	if _, stderr, code := runMain(t, "pvesim", "frob"); code != exitUsage || !strings.Contains(stderr, "unknown tool 'frob'") {
		t.Errorf("unknown tool: %d %q", code, stderr)
	}
	// PVESIM_NODE selects the node: the other node sees no containers.
	t.Setenv("PVESIM_NODE", "pve2")
	if stdout, stderr, code := runMain(t, "pct", "list"); code != 0 || stdout != "" {
		t.Errorf("pve2 list: %d %q %q", code, stdout, stderr)
	}
	t.Setenv("PVESIM_NODE", "")
	// Parallel invocations each append one whole JSON line.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			Main([]string{"pct", "config", "100"}, strings.NewReader(""), &out, &errb)
		}()
	}
	wg.Wait()
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 24 {
		t.Fatalf("%d log lines:\n%s", len(lines), data)
	}
	for _, l := range lines {
		var e struct {
			Tool string   `json:"tool"`
			Argv []string `json:"argv"`
			Exit *int     `json:"exit"`
			Ms   *int64   `json:"ms"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Tool != "pct" || e.Exit == nil || e.Ms == nil || len(e.Argv) == 0 {
			t.Errorf("log line %q: %v", l, err)
		}
	}
	if !strings.HasPrefix(lines[0], `{"tool":"pct","argv":["config","100"],"exit":0,"ms":`) ||
		!strings.HasPrefix(lines[2], `{"tool":"pct","argv":["status","abc"],"exit":255,`) {
		t.Errorf("log:\n%s", data)
	}
}

// pct refuses to run for anyone but root, as Proxmox's CLI does.
func TestPctRequiresRoot(t *testing.T) {
	// t.TempDir's parent is private; nobody must reach the binary.
	dir, err := os.MkdirTemp("", "pvesim-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pct")
	build := exec.Command("go", "build", "-o", bin, "github.com/nexcage/nexcage/cmd/pvesim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	root := filepath.Join(dir, "root")
	cmd := exec.Command(bin, "list")
	cmd.Env = []string{"PVESIM_ROOT=" + root}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 255 || errb.String() != "please run as root\n" {
		t.Fatalf("as nobody: %v %q", err, errb.String())
	}
}
