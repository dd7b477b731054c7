package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
)

// run runs the app with buffers and returns exit code, stdout, stderr.
func runApp(t *testing.T, argv ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	code := a.Main(context.Background(), argv)
	return code, out.String(), errOut.String()
}

func emptyConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nexcage.json")
	if err := os.WriteFile(p, []byte(`{"runtime": {"routing": [{"pattern": ".*", "runtime": "runc"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJSONLogOnError(t *testing.T) {
	root := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "log.json")
	code, stdout, stderr := runApp(t, "--config", emptyConfig(t), "--root", root, "--log", logFile, "--log-format", "json", "start", "missing")
	if code != errs.KindNotFound.ExitCode() {
		t.Fatalf("exit code %d, want %d (stderr %q)", code, errs.KindNotFound.ExitCode(), stderr)
	}
	if stdout != "" {
		t.Fatalf("stdout must stay empty, got %q", stdout)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "nexcage: ") || !strings.Contains(lines[0], "does not exist") {
		t.Fatalf("stderr: %q", stderr)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	logLines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var last map[string]any
	for _, l := range logLines {
		last = nil
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		for _, k := range []string{"level", "msg", "time"} {
			if _, ok := last[k]; !ok {
				t.Fatalf("log line without %q: %q", k, l)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, last["time"].(string)); err != nil {
			t.Fatalf("time not RFC 3339: %q", l)
		}
	}
	if last["level"] != "error" || !strings.Contains(last["msg"].(string), "does not exist") {
		t.Fatalf("last log line: %v", last)
	}
}

func TestDebugLogLevels(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "log.txt")
	code, stdout, _ := runApp(t, "--config", emptyConfig(t), "--root", t.TempDir(), "--log", logFile, "--debug", "route", "c1")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if stdout != "c1 -> runc (rule 0 \".*\")\n" && !strings.HasPrefix(stdout, "c1 -> runc") {
		t.Fatalf("stdout %q", stdout)
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "level=debug") {
		t.Fatalf("--debug log has no debug line: %q", data)
	}
}

func TestBadLogFormat(t *testing.T) {
	code, stdout, stderr := runApp(t, "--log-format", "xml", "features")
	if code != errs.KindUsage.ExitCode() || stdout != "" || !strings.Contains(stderr, "log format") {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
}

func TestSpec(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runApp(t, "spec", "--bundle", dir)
	if code != 0 || stdout != "" {
		t.Fatalf("spec: %d %q %q", code, stdout, stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil || s["ociVersion"] == nil {
		t.Fatalf("config.json: %v %s", err, data)
	}
	code, _, stderr = runApp(t, "spec", "-b", dir)
	if code != errs.KindAlreadyExists.ExitCode() || !strings.Contains(stderr, "exists. Remove it first") {
		t.Fatalf("second spec: %d %q", code, stderr)
	}
}

func TestFeatures(t *testing.T) {
	code, stdout, _ := runApp(t, "features")
	if code != 0 {
		t.Fatal(code)
	}
	var f struct {
		OCIVersionMin, OCIVersionMax string
		Linux                        struct{ Namespaces []string }
	}
	if err := json.Unmarshal([]byte(stdout), &f); err != nil || f.OCIVersionMax == "" || len(f.Linux.Namespaces) == 0 {
		t.Fatalf("features: %v %s", err, stdout)
	}
}
