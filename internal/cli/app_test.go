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

// TestFeatures: features answers for the backend that would run: the
// default route (default_container_type), --runtime, or the route of
// --id. runc/crun's own output is passed through (a fake runtime here);
// the Proxmox backend claims the five hooks it runs and no seccomp.
func TestFeatures(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-runc")
	script := "#!/bin/sh\n[ \"$1\" = features ] && echo '{\"ociVersionMin\":\"1.0.0\",\"hooks\":[\"prestart\"],\"annotations\":{\"own\":\"1\"}}'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "nexcage.json")
	if err := os.WriteFile(cfg, []byte(`{"runtimes": {"runc": {"path": "`+fake+`"}, "crun": {"path": "`+filepath.Join(dir, "missing-crun")+`"}},
"container_config": {"default_container_type": "runc"},
"runtime": {"routing": [{"pattern": "px-.*", "runtime": "lxc"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	type out struct {
		OCIVersionMin string
		Hooks         *[]string
		Linux         struct {
			Seccomp *struct{ Enabled *bool }
		}
		Annotations map[string]string
	}
	get := func(args ...string) out {
		t.Helper()
		code, stdout, stderr := runApp(t, append([]string{"--config", cfg}, args...)...)
		if code != 0 {
			t.Fatalf("features %q: exit %d: %s", args, code, stderr)
		}
		var o out
		if err := json.Unmarshal([]byte(stdout), &o); err != nil {
			t.Fatalf("features %q: %v\n%s", args, err, stdout)
		}
		return o
	}
	// Default route: runc, its own answer passed through.
	o := get("features")
	if o.Annotations["org.nexcage.backend"] != "runc" || o.Annotations["own"] != "1" || o.Hooks == nil || len(*o.Hooks) != 1 ||
		!strings.Contains(o.Annotations["org.nexcage.features.source"], fake) || !strings.Contains(o.Annotations["org.nexcage.route"], "default_container_type") {
		t.Errorf("default route: %+v", o)
	}
	// --runtime lxc and --id of a Proxmox-routed id: the Proxmox backend.
	for _, args := range [][]string{{"--runtime", "lxc", "features"}, {"features", "--id", "px-1"}} {
		o := get(args...)
		if o.Annotations["org.nexcage.backend"] != "proxmox-lxc" || o.Hooks == nil || len(*o.Hooks) != 5 ||
			o.Linux.Seccomp == nil || o.Linux.Seccomp.Enabled == nil || *o.Linux.Seccomp.Enabled || o.OCIVersionMin == "" {
			t.Errorf("%q: %+v", args, o)
		}
	}
	// A runtime that cannot answer is an error, not an invented answer.
	code, stdout, stderr := runApp(t, "--config", cfg, "--runtime", "crun", "features")
	if code == 0 || stdout != "" || !strings.Contains(stderr, "missing-crun not found") {
		t.Errorf("features for a missing crun: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestRouteBundleKubernetes: `route --bundle` decides with the bundle's
// CRI annotations (the id defaults to the directory's name), a pod's
// container follows its sandbox, and a nexcage-<runtime> program name
// forces its backend.
func TestRouteBundleKubernetes(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "nexcage.json")
	if err := os.WriteFile(cfg, []byte(`{"runtime": {"routing": [
		{"pod_namespace": "kube-system", "container_type": "sandbox", "runtime": "crun"},
		{"pattern": ".*", "runtime": "runc"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	const sb = "5b0c6f3e0a9d4c1b8e7f6a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291"
	bundle := func(id string, ann map[string]string) string {
		dir := filepath.Join(t.TempDir(), id)
		if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := runApp(t, "--config", cfg, "--root", root, "spec", "--bundle", dir); code != 0 {
			t.Fatalf("spec: %s", stderr)
		}
		var spec map[string]any
		data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		if err := json.Unmarshal(data, &spec); err != nil {
			t.Fatal(err)
		}
		spec["annotations"] = ann
		data, _ = json.Marshal(spec)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	pod := map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": sb,
		"io.kubernetes.cri.sandbox-namespace": "kube-system", "io.kubernetes.cri.sandbox-name": "coredns-1"}
	sbDir := bundle(sb, pod)
	app := map[string]string{}
	for k, v := range pod {
		app[k] = v
	}
	app["io.kubernetes.cri.container-type"] = "container"
	app["io.kubernetes.cri.container-name"] = "coredns"
	appDir := bundle("c0ffee", app)

	rule := `rule 0 (pod_namespace "kube-system", container_type "sandbox")`
	if code, out, stderr := runApp(t, "--config", cfg, "--root", root, "route", "--bundle", sbDir); code != 0 || out != sb+" -> crun ("+rule+")\n" {
		t.Fatalf("route --bundle of the sandbox: %d %q %q", code, out, stderr)
	}
	if code, out, stderr := runApp(t, "--config", cfg, "--root", root, "route", "--bundle", appDir, "-f", "json"); code != 0 ||
		!strings.Contains(out, `"backend": "crun"`) || !strings.Contains(out, `"id": "c0ffee"`) || !strings.Contains(out, "its pod's sandbox "+sb) {
		t.Fatalf("route --bundle of its container: %d %q %q", code, out, stderr)
	}
	// Without --bundle only the id counts.
	if code, out, _ := runApp(t, "--config", cfg, "--root", root, "route", sb); code != 0 || out != sb+" -> runc (rule 1 \".*\")\n" {
		t.Fatalf("route by id: %d %q", code, out)
	}
	var stdout, stderr bytes.Buffer
	a := &App{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Program: "nexcage-proxmox"}
	if code := a.Main(context.Background(), []string{"--config", cfg, "--root", root, "route", "--bundle", appDir}); code != 0 ||
		stdout.String() != `c0ffee -> proxmox-lxc (called as "nexcage-proxmox")`+"\n" {
		t.Fatalf("route as nexcage-proxmox: %d %q %q", code, stdout.String(), stderr.String())
	}
}

// TestFeaturesFollowsProgramName: called as nexcage-proxmox, features
// answers for the Proxmox backend although the rules route to runc.
func TestFeaturesFollowsProgramName(t *testing.T) {
	var stdout, stderr bytes.Buffer
	a := &App{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Program: "nexcage-proxmox"}
	if code := a.Main(context.Background(), []string{"--config", emptyConfig(t), "--root", t.TempDir(), "features"}); code != 0 {
		t.Fatalf("features: %d %s", code, stderr.String())
	}
	var doc struct{ Annotations map[string]string }
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Annotations["org.nexcage.backend"] != "proxmox-lxc" || doc.Annotations["org.nexcage.route"] != `called as "nexcage-proxmox"` {
		t.Fatalf("features annotations: %v", doc.Annotations)
	}
}
