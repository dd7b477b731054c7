package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// TestProxmoxHooksAndOOMScoreAdj: on a pvesim node (PVE 9.1 and 8.4,
// unprivileged containers), nexcage runs the bundle's hooks on the host
// at their lifecycle points, each with the state on stdin: prestart and
// createRuntime in create (before the process runs: the "created" state
// with the init's pid), poststart in start (after the process started;
// a failing poststart hook only warns), poststop in delete, another
// nexcage process, after the CT is gone. The process gets
// process.oomScoreAdj and the linux.devices the host does not have (with
// their type, number, mode and owner; a character device it can write).
func TestProxmoxHooksDevicesOOMScoreAdj(t *testing.T) {
	versions := []string{"8.4", "9.1"}
	if v := os.Getenv("NEXCAGE_TEST_PVE_VERSIONS"); v != "" {
		versions = strings.Fields(v)
	}
	for _, version := range versions {
		t.Run("pve"+version, func(t *testing.T) {
			e := newPveEnvWith(t, false, "", "PVESIM_PVE_VERSION="+version)
			n := e.n
			dir := testutil.ContainerTempDir(t)
			out := filepath.Join(dir, "out")
			hooksOut := filepath.Join(t.TempDir(), "hooks")
			testutil.WritableDir(t, out)
			testutil.WritableDir(t, hooksOut)
			log := filepath.Join(hooksOut, "log")
			// A hook saves its stdin and logs its name, and whether the
			// process had run (its report) when the hook ran.
			hook := func(name string) specs.Hook {
				return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c",
					"cat > " + filepath.Join(hooksOut, name+".json") + "; if [ -e " + filepath.Join(out, "report") + " ]; then echo " + name + " after-process; else echo " + name + "; fi >> " + log},
					Env: []string{"PATH=/usr/bin:/bin"}}
			}
			adj := 500
			bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"),
				[]string{"sh", "-c", "{ echo oom $(cat /proc/self/oom_score_adj); stat -c 'dev %F %t:%T %a %u:%g' /dev/mynull /dev/myfifo; echo hi > /dev/mynull && echo write ok; echo ptmx $(readlink /dev/ptmx); } > /out/report.tmp 2>&1; mv /out/report.tmp /out/report; exec sleep 1000"},
				func(s *specs.Spec) {
					s.Process.OOMScoreAdj = &adj
					s.Mounts = append(s.Mounts, specs.Mount{Destination: "/out", Type: "bind", Source: out, Options: []string{"rbind", "rw"}})
					s.Annotations = map[string]string{"test": "hooks"}
					// Devices the host does not have at these paths:
					// nexcage makes them (the host's /dev stays as it is).
					mode := os.FileMode(0o622) // others may write: the default capabilities have no CAP_DAC_OVERRIDE
					s.Linux.Devices = append(s.Linux.Devices,
						specs.LinuxDevice{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: ptrU32(7), GID: ptrU32(8)},
						specs.LinuxDevice{Path: "/dev/myfifo", Type: "p"})
					s.Hooks = &specs.Hooks{
						CreateRuntime: []specs.Hook{hook("createRuntime")},
						// In the container: its /bin/sh, its /out.
						StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c",
							"cat > /out/startContainer.json; if [ -e /out/report ]; then echo late; else echo early; fi > /out/startContainer"}}},
						Poststart: []specs.Hook{{Path: "/bin/false", Args: []string{"false"}}, hook("poststart")},
						Poststop:  []specs.Hook{hook("poststop")},
					}
					//lint:ignore SA1019 the deprecated prestart hooks are still run
					s.Hooks.Prestart = []specs.Hook{hook("prestart")}
				})
			id := "hooks-" + strings.ReplaceAll(version, ".", "")
			n.Must("create", "--bundle", bundle, id)
			n.CleanupContainer(id)
			var created struct{ Pid int }
			if err := json.Unmarshal([]byte(n.Must("state", id).Stdout), &created); err != nil || created.Pid <= 0 {
				t.Fatalf("state after create: %v", err)
			}
			logged := func() string { data, _ := os.ReadFile(log); return string(data) }
			if got := logged(); got != "prestart\ncreateRuntime\n" {
				t.Fatalf("hooks after create: %q, want prestart then createRuntime, before the process", got)
			}
			r := n.Must("start", id)
			// The process starts before poststart runs; its report may
			// come a moment later, so only the order is asserted below.
			if !strings.Contains(r.Stderr, "poststart hook #0") {
				t.Errorf("the failing poststart hook was not warned about: %q", r.Stderr)
			}
			if sc, err := os.ReadFile(filepath.Join(out, "startContainer")); err != nil || string(sc) != "early\n" {
				t.Errorf("startContainer hook: %q, %v; want it run in the container before the process", sc, err)
			}
			report := waitFile(t, filepath.Join(out, "report"))
			want := "oom 500\ndev character special file 1:3 622 7:8\ndev fifo 0:0 666 0:0\nwrite ok\nptmx pts/ptmx\n"
			if report != want {
				t.Errorf("process report:\n%s\nwant:\n%s", report, want)
			}
			for _, p := range []string{"/dev/mynull", "/dev/myfifo"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was made on the host", p)
				}
			}
			// An exec'd process gets the container's oomScoreAdj too.
			if r := n.Must("exec", id, "cat", "/proc/self/oom_score_adj"); strings.TrimSpace(r.Stdout) != "500" {
				t.Errorf("exec'd process oom_score_adj %q, want 500", r.Stdout)
			}
			n.Must("kill", id, "KILL")
			Eventually(t, 60e9, "the container to stop", func() bool {
				return strings.Contains(n.Run("state", id).Stdout, `"stopped"`)
			})
			n.Must("delete", id)
			lines := strings.Split(strings.TrimSpace(logged()), "\n")
			if len(lines) != 4 || lines[2] != "poststart" && lines[2] != "poststart after-process" || lines[3] != "poststop after-process" {
				t.Errorf("hooks ran as %q, want prestart, createRuntime, poststart, poststop", lines)
			}
			for name, want := range map[string]specs.ContainerState{"prestart": specs.StateCreated, "createRuntime": specs.StateCreated,
				"startContainer": specs.StateCreated, "poststart": specs.StateRunning, "poststop": specs.StateStopped} {
				file := filepath.Join(hooksOut, name+".json")
				if name == "startContainer" {
					file = filepath.Join(out, name+".json")
				}
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var st specs.State
				if err := json.Unmarshal(data, &st); err != nil {
					t.Fatalf("%s stdin %q: %v", name, data, err)
				}
				wantPid := created.Pid
				if want == specs.StateStopped {
					wantPid = 0
				}
				if st.Status != want || st.ID != id || st.Bundle != bundle || st.Pid != wantPid || st.Annotations["test"] != "hooks" {
					t.Errorf("%s hook got %+v, want status %s, pid %d, id, bundle and annotations", name, st, want, wantPid)
				}
			}
		})
	}
}

func ptrU32(v uint32) *uint32 { return &v }

// waitFile waits for p to exist and returns its content.
func waitFile(t *testing.T, p string) string {
	t.Helper()
	var s string
	Eventually(t, 60e9, p, func() bool {
		data, err := os.ReadFile(p)
		s = string(data)
		return err == nil
	})
	return s
}

// TestProxmoxStartContainerHookFails: a failing startContainer hook fails
// start (naming the hook), the process never runs and the container
// stops; delete then removes it.
func TestProxmoxStartContainerHookFails(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	dir := testutil.ContainerTempDir(t)
	out := filepath.Join(dir, "out")
	testutil.WritableDir(t, out)
	bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), []string{"sh", "-c", "touch /out/ran; exec sleep 1000"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/out", Type: "bind", Source: out, Options: []string{"rbind", "rw"}})
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no ldconfig >&2; exit 3"}}}}
	})
	n.Must("create", "--bundle", bundle, "schook")
	n.CleanupContainer("schook")
	r := n.Run("start", "schook")
	if r.Code == 0 || !strings.Contains(r.Stderr, "startContainer hook #0") || !strings.Contains(r.Stderr, "no ldconfig") {
		t.Fatalf("start: exit %d, stderr %q; want a failure naming the hook and its output", r.Code, r.Stderr)
	}
	Eventually(t, 60e9, "the container to stop", func() bool {
		return strings.Contains(n.Run("state", "schook").Stdout, `"stopped"`)
	})
	if _, err := os.Stat(filepath.Join(out, "ran")); err == nil {
		t.Error("the process ran after its startContainer hook failed")
	}
	n.Must("delete", "schook")
}

// TestProxmoxPrestartHookFails: a failing prestart hook fails create
// (exit 8, naming the hook and its output), the process never runs, the
// CT is destroyed and no record is left, and the poststop hooks ran (the
// lifecycle continues at delete); nothing is left on the node (checked
// by the environment's cleanup).
func TestProxmoxPrestartHookFails(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	dir := testutil.ContainerTempDir(t)
	out := filepath.Join(dir, "out")
	testutil.WritableDir(t, out)
	poststop := filepath.Join(t.TempDir(), "poststop")
	bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), []string{"sh", "-c", "touch /out/ran; exec sleep 1000"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/out", Type: "bind", Source: out, Options: []string{"rbind", "rw"}})
		s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + poststop}}}}
		//lint:ignore SA1019 the deprecated prestart hooks are still run
		s.Hooks.Prestart = []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no network for you >&2; exit 1"}}}
	})
	n.Fails(8, "prestart hook #0", "create", "--bundle", bundle, "prehook")
	if r := n.Run("state", "prehook"); r.Code == 0 {
		t.Errorf("the container still exists after its create failed: %s", r.Stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "ran")); err == nil {
		t.Error("the process ran although its prestart hook failed")
	}
	data, err := os.ReadFile(poststop)
	if err != nil {
		t.Fatalf("the poststop hook did not run after the failed create: %v", err)
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil || st.ID != "prehook" || st.Status != specs.StateStopped {
		t.Errorf("poststop stdin %q (%v), want the stopped state of prehook", data, err)
	}
	e.assertNothingLeft("failed prestart")
}
