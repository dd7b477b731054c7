package cli

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestParse(t *testing.T) {
	bundleDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundleDir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	type want struct {
		verb, id                   string
		bundle, image, pidFile     string
		consoleSocket, runtimeName string
		root                       string
		rootSet                    bool
		log, logFormat             string
		sig                        syscall.Signal
		all, force, detach, quiet  bool
		format                     string
		preserve                   int
		noPivot                    bool
		pass                       []string
		timeout                    time.Duration
	}
	cases := []struct {
		name string
		argv []string
		want want
	}{
		{"containerd create", []string{"--root", "/run/containerd/runc/default", "--log", "/b/log.json", "--log-format", "json",
			"create", "--bundle", "/b", "--pid-file", "/b/init.pid", "c1"},
			want{verb: "create", id: "c1", bundle: "/b", pidFile: "/b/init.pid", root: "/run/containerd/runc/default", rootSet: true, log: "/b/log.json", logFormat: "json"}},
		{"containerd create with console and no-pivot", []string{"--root", "/r", "--log", "/b/log.json", "--log-format", "json", "--systemd-cgroup",
			"create", "--bundle", "/b", "--pid-file", "/b/init.pid", "--console-socket", "/tmp/pty.sock", "--no-pivot", "c1"},
			want{verb: "create", id: "c1", bundle: "/b", pidFile: "/b/init.pid", consoleSocket: "/tmp/pty.sock", noPivot: true, root: "/r", rootSet: true, log: "/b/log.json", logFormat: "json"}},
		{"create -b", []string{"create", "-b", "/b", "c1"}, want{verb: "create", id: "c1", bundle: "/b", root: DefaultRoot, logFormat: "text"}},
		{"create without bundle uses cwd", []string{"create", "c1"}, want{verb: "create", id: "c1", bundle: ".", root: DefaultRoot, logFormat: "text"}},
		{"create --preserve-fds", []string{"create", "--preserve-fds", "2", "-b", "/b", "c1"}, want{verb: "create", id: "c1", bundle: "/b", preserve: 2, root: DefaultRoot, logFormat: "text"}},
		{"globals after verb", []string{"create", "--root", "/r", "-b", "/b", "c1"}, want{verb: "create", id: "c1", bundle: "/b", root: "/r", rootSet: true, logFormat: "text"}},
		{"nexcage create template", []string{"create", "--name", "web1", "--image", "local:vztmpl/alpine.tar.zst"},
			want{verb: "create", id: "web1", image: "local:vztmpl/alpine.tar.zst", root: DefaultRoot, logFormat: "text"}},
		{"nexcage create bundle image", []string{"create", "--name", "app", "--image", bundleDir, "--runtime", "crun"},
			want{verb: "create", id: "app", bundle: bundleDir, runtimeName: "crun", root: DefaultRoot, logFormat: "text"}},
		{"global --runtime", []string{"--runtime", "runc", "create", "--name", "app", "--image", bundleDir},
			want{verb: "create", id: "app", bundle: bundleDir, runtimeName: "runc", root: DefaultRoot, logFormat: "text"}},
		{"run id", []string{"run", "-b", "/b", "c1"}, want{verb: "run", id: "c1", bundle: "/b", root: DefaultRoot, logFormat: "text"}},
		{"run -d", []string{"run", "-d", "--bundle", "/b", "c1"}, want{verb: "run", id: "c1", bundle: "/b", detach: true, root: DefaultRoot, logFormat: "text"}},
		{"nexcage run", []string{"run", "--name", "web1", "local:vztmpl/alpine.tar.zst"},
			want{verb: "run", id: "web1", image: "local:vztmpl/alpine.tar.zst", root: DefaultRoot, logFormat: "text"}},
		{"start", []string{"start", "c1"}, want{verb: "start", id: "c1", root: DefaultRoot, logFormat: "text"}},
		{"start --name", []string{"start", "--name", "c1"}, want{verb: "start", id: "c1", root: DefaultRoot, logFormat: "text"}},
		{"state", []string{"--root", "/r", "state", "c1"}, want{verb: "state", id: "c1", root: "/r", rootSet: true, logFormat: "text"}},
		{"kill default", []string{"kill", "c1"}, want{verb: "kill", id: "c1", sig: syscall.SIGTERM, root: DefaultRoot, logFormat: "text"}},
		{"kill -s SIGKILL foo", []string{"kill", "-s", "SIGKILL", "foo"}, want{verb: "kill", id: "foo", sig: syscall.SIGKILL, root: DefaultRoot, logFormat: "text"}},
		{"kill --signal", []string{"kill", "--signal", "hup", "--name", "foo"}, want{verb: "kill", id: "foo", sig: syscall.SIGHUP, root: DefaultRoot, logFormat: "text"}},
		{"kill foo 9", []string{"kill", "foo", "9"}, want{verb: "kill", id: "foo", sig: syscall.SIGKILL, root: DefaultRoot, logFormat: "text"}},
		{"kill foo KILL", []string{"kill", "foo", "KILL"}, want{verb: "kill", id: "foo", sig: syscall.SIGKILL, root: DefaultRoot, logFormat: "text"}},
		{"containerd kill --all", []string{"--root", "/r", "--log", "/l", "--log-format", "json", "kill", "--all", "c1", "15"},
			want{verb: "kill", id: "c1", sig: syscall.SIGTERM, all: true, root: "/r", rootSet: true, log: "/l", logFormat: "json"}},
		{"delete", []string{"delete", "c1"}, want{verb: "delete", id: "c1", root: DefaultRoot, logFormat: "text"}},
		{"delete --force", []string{"delete", "--force", "c1"}, want{verb: "delete", id: "c1", force: true, root: DefaultRoot, logFormat: "text"}},
		{"delete -f --name", []string{"delete", "-f", "--name", "c1"}, want{verb: "delete", id: "c1", force: true, root: DefaultRoot, logFormat: "text"}},
		{"stop", []string{"stop", "c1"}, want{verb: "stop", id: "c1", timeout: 10 * time.Second, root: DefaultRoot, logFormat: "text"}},
		{"stop -t", []string{"stop", "-t", "3", "--name", "c1"}, want{verb: "stop", id: "c1", timeout: 3 * time.Second, root: DefaultRoot, logFormat: "text"}},
		{"list", []string{"list"}, want{verb: "list", format: "table", root: DefaultRoot, logFormat: "text"}},
		{"list -f json -q", []string{"list", "-f", "json", "-q"}, want{verb: "list", format: "json", quiet: true, root: DefaultRoot, logFormat: "text"}},
		{"list --runtime", []string{"list", "--runtime", "lxc"}, want{verb: "list", format: "table", runtimeName: "lxc", root: DefaultRoot, logFormat: "text"}},
		{"route", []string{"route", "cilium-x"}, want{verb: "route", id: "cilium-x", format: "text", root: DefaultRoot, logFormat: "text"}},
		{"spec", []string{"spec", "-b", "/b"}, want{verb: "spec", root: DefaultRoot, logFormat: "text"}},
		{"features", []string{"features"}, want{verb: "features", root: DefaultRoot, logFormat: "text"}},
		{"version", []string{"version"}, want{verb: "version", root: DefaultRoot, logFormat: "text"}},
		{"containerd exec", []string{"--root", "/r", "--log", "/l", "--log-format", "json", "exec", "--process", "/tmp/p.json", "--pid-file", "/tmp/e.pid", "--detach", "c1"},
			want{verb: "exec", id: "c1", root: "/r", rootSet: true, log: "/l", logFormat: "json",
				pass: []string{"--process", "/tmp/p.json", "--pid-file", "/tmp/e.pid", "--detach", "c1"}}},
		{"exec command with flags", []string{"exec", "-e", "A=1", "c1", "sh", "-c", "echo --root"},
			want{verb: "exec", id: "c1", root: DefaultRoot, logFormat: "text", pass: []string{"-e", "A=1", "c1", "sh", "-c", "echo --root"}}},
		{"containerd ps", []string{"--root", "/r", "ps", "--format", "json", "c1"},
			want{verb: "ps", id: "c1", root: "/r", rootSet: true, logFormat: "text", pass: []string{"--format", "json", "c1"}}},
		{"update", []string{"update", "--resources", "-", "c1"},
			want{verb: "update", id: "c1", root: DefaultRoot, logFormat: "text", pass: []string{"--resources", "-", "c1"}}},
		{"pause", []string{"pause", "c1"}, want{verb: "pause", id: "c1", root: DefaultRoot, logFormat: "text", pass: []string{"c1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := Parse(tc.argv, io.Discard, io.Discard)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.argv, err)
			}
			o := inv.Create.Options
			got := want{
				verb: inv.Verb, id: inv.ID, bundle: o.Bundle, image: o.Image, pidFile: o.PidFile,
				consoleSocket: o.ConsoleSocket, runtimeName: inv.Globals.Runtime, root: inv.Globals.Root, rootSet: inv.Globals.RootSet,
				log: inv.Globals.Log, logFormat: inv.Globals.LogFormat, sig: inv.Signal, all: inv.All, force: inv.Force,
				detach: inv.Detach, quiet: inv.Quiet, format: inv.Format, preserve: o.PreserveFDs, noPivot: o.NoPivot,
				pass: inv.PassArgs, timeout: inv.Timeout,
			}
			if len(got.pass) == 0 {
				got.pass = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", tc.argv, got, tc.want)
			}
			if inv.Verb == "create" || inv.Verb == "run" {
				if inv.Create.ID != inv.ID || inv.Create.Runtime != inv.Globals.Runtime {
					t.Fatalf("create request not filled: %+v", inv.Create)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		argv []string
	}{
		{"unknown verb", []string{"frobnicate"}},
		{"unknown flag", []string{"create", "--frob", "c1"}},
		{"create without id", []string{"create", "-b", "/b"}},
		{"two ids", []string{"create", "--name", "a", "b"}},
		{"kill bad signal", []string{"kill", "c1", "NOPE"}},
		{"kill signal twice", []string{"kill", "-s", "TERM", "c1", "KILL"}},
		{"kill too many", []string{"kill", "c1", "9", "x"}},
		{"start extra", []string{"start", "a", "b"}},
		{"list bad format", []string{"list", "--format", "yaml"}},
		{"exec without id", []string{"exec", "--process", "/p.json"}},
		{"bundle and bundle image", []string{"create", "--name", "x", "--bundle", "/b", "--image", "."}},
	}
	// "." holds no config.json unless the test runs in a bundle; make sure.
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
	cases[len(cases)-1].argv[len(cases[len(cases)-1].argv)-1] = dir
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.argv, io.Discard, io.Discard)
			if err == nil {
				t.Fatalf("Parse(%q): want an error", tc.argv)
			}
			if k := errs.KindOf(err); k != errs.KindUsage {
				t.Fatalf("Parse(%q): kind %s (%v), want usage", tc.argv, k, err)
			}
			if errs.ExitCode(err) != 2 {
				t.Fatalf("exit code %d", errs.ExitCode(err))
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	inv, err := Parse([]string{"--help"}, io.Discard, io.Discard)
	if err != nil || inv.Verb != "" {
		t.Fatalf("help: %+v %v", inv, err)
	}
}
