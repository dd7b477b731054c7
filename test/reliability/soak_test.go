package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/backend/proxmox"
	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/cli"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/testutil"
)

var soakDuration = flag.Duration("soak.duration", 10*time.Second,
	"how long TestSoak loops (CI: 10s; a long run: -soak.duration=24h -timeout=0)")

// Bounds of TestSoak, measured after warm-up and a GC (docs/RELIABILITY.md).
const (
	// soakHeapSlack is how much heap in use may grow over the run: room
	// for allocator and runtime bookkeeping, far below one leaked copy of
	// the 1000-container listing per iteration.
	soakHeapSlack = 4 << 20
	// Goroutines, open fds and child processes may not grow at all.
	soakGoroutineSlack = 0
	soakFDSlack        = 0
	soakContainers     = 1000
)

// sample is one measurement of the test process's resources.
type sample struct {
	HeapInuse  uint64
	Goroutines int
	FDs        int
	Children   int
}

func (s sample) String() string {
	return fmt.Sprintf("heap in use %.1f MiB, %d goroutines, %d open fds, %d child processes",
		float64(s.HeapInuse)/(1<<20), s.Goroutines, s.FDs, s.Children)
}

// measure samples after a GC. Goroutines get a moment to finish: an
// exec'd command's waiter may still be returning when its caller has.
func measure(t testing.TB, settleTo int) sample {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > settleTo && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return sample{HeapInuse: m.HeapInuse, Goroutines: runtime.NumGoroutine(), FDs: openFDs(t), Children: children(t, os.Getpid())}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// children counts the processes (zombies included) whose parent is pid.
func children(t testing.TB, pid int) int {
	t.Helper()
	pids, err := procfs.Pids()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// soakEnv is a pvesim node holding 1000 (stopped) containers that
// nexcage's state also records, a bundle, and a config routing to it.
type soakEnv struct {
	node   *simNode
	root   string // nexcage --root
	config string
	bundle string
	store  *state.Store
	ids    []string // ids to route
	bin    string   // the built nexcage
}

func newSoakEnv(t *testing.T) *soakEnv {
	t.Helper()
	e := &soakEnv{node: newSimNode(t), root: filepath.Join(t.TempDir(), "root"), bin: testutil.NexcageBin(t)}
	for _, kv := range e.node.env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg := e.node.proxmoxConfig()
	cfg["runtime"] = map[string]any{"routing": []map[string]string{
		{"pattern": "^(kube-ovn-.*|cilium-.*)$", "runtime": "crun"},
		{"pattern": "^ci-[0-9]+$", "runtime": "runc"},
	}}
	cfg["container_config"] = map[string]any{"crun_name_patterns": []string{"calico-*", "flannel-*"}, "default_container_type": "lxc"}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	e.config = filepath.Join(t.TempDir(), "nexcage.json")
	writeFile(t, e.config, string(data))
	e.bundle = testutil.BusyboxBundle(t, "", []string{"sh"}, nil)

	var err error
	if e.store, err = state.NewStore(e.root); err != nil {
		t.Fatal(err)
	}
	vmlist, err := pve.ReadVMList(filepath.Join(e.node.root, "etc/pve/.vmlist"))
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < soakContainers; i++ {
		id, vmid := fmt.Sprintf("soak-%04d", i), 100000+i
		c := &state.Container{OCIVersion: "1.0.2", ID: id, Status: state.Created, Bundle: e.bundle,
			Created: created, Backend: config.BackendProxmox, Data: map[string]string{proxmox.DataVMID: strconv.Itoa(vmid)}}
		if err := e.store.Save(c); err != nil {
			t.Fatal(err)
		}
		conf := pve.NewConfig()
		conf.Set("hostname", id)
		conf.Set("ostype", "unmanaged")
		conf.Set("rootfs", fmt.Sprintf("local:%d/vm-%d-disk-0.raw,size=4G", vmid, vmid))
		conf.Set("tags", proxmox.Tag)
		body, err := conf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(e.node.confDir(), strconv.Itoa(vmid)+".conf"), string(body))
		vmlist.Add(vmid, pve.VMListEntry{Node: "pve", Type: "lxc", Version: 1})
		e.ids = append(e.ids, id, "cilium-"+id, "ci-"+strconv.Itoa(i), "calico-"+id)
	}
	if err := vmlist.Write(filepath.Join(e.node.root, "etc/pve/.vmlist")); err != nil {
		t.Fatal(err)
	}
	// The containers are only records: remove them before the node's
	// own check for leftovers runs.
	t.Cleanup(func() {
		for i := 0; i < soakContainers; i++ {
			_ = os.Remove(filepath.Join(e.node.confDir(), strconv.Itoa(100000+i)+".conf"))
		}
	})
	return e
}

// nexcage runs the CLI in this process, as the binary would.
func (e *soakEnv) nexcage(t testing.TB, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &cli.App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	code := a.Main(context.Background(), append([]string{"--root", e.root, "--config", e.config}, args...))
	if code != 0 {
		t.Fatalf("nexcage %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String(), errOut.String()
}

// iteration runs every loop of the soak once: config loading, routing,
// bundle loading, translation, the store's listing and `nexcage list`
// (in this process) over 1000 containers, and create/state/delete on
// pvesim (through the binary; its processes are this test's children
// until reaped, so the child count covers them).
func (e *soakEnv) iteration(t testing.TB) {
	t.Helper()
	c, _, err := config.LoadFrom(e.config)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Router()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range e.ids {
		if _, err := r.Route(id, ""); err != nil {
			t.Fatal(err)
		}
	}
	b, err := bundle.Load(e.bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxmox.Translate(proxmox.Input{ID: "soak", Spec: b.Spec, BundleDir: b.Dir, Storage: "local",
		Bridge: "vmbr0", Unprivileged: true, InitHelperDir: "/var/lib/lxc/.nexcage/soak-0"}); err != nil {
		t.Fatal(err)
	}
	list, err := e.store.List()
	if err != nil || len(list) != soakContainers {
		t.Fatalf("store list: %d containers, %v", len(list), err)
	}
	out, _ := e.nexcage(t, "list", "--format", "json")
	var states []json.RawMessage
	if err := json.Unmarshal([]byte(out), &states); err != nil || len(states) != soakContainers {
		t.Fatalf("nexcage list: %d containers, %v", len(states), err)
	}
	// create/state/delete run the built binary: create copies nexcage
	// into the container as its init helper, which must be the static
	// binary, not this test.
	for _, args := range [][]string{{"create", "--bundle", e.bundle, "soak"}, {"state", "soak"}, {"delete", "--force", "soak"}} {
		r := testutil.Run(t, e.bin, e.node.env, append([]string{"--root", e.root, "--config", e.config}, args...)...)
		if r.Code != 0 {
			t.Fatalf("nexcage %s: %s", strings.Join(args, " "), r)
		}
		if args[0] == "state" && !strings.Contains(r.Stdout, `"created"`) {
			t.Fatalf("state of soak: %s", r.Stdout)
		}
	}
}

// TestSoak loops the whole stack in this process and fails when heap in
// use, goroutines, open fds or child processes grow beyond the bounds
// above after warm-up. -soak.duration sets its length.
func TestSoak(t *testing.T) {
	e := newSoakEnv(t)
	dur := *soakDuration
	warm := dur / 5
	start := time.Now()
	n := 0
	for n < 3 || time.Since(start) < warm {
		e.iteration(t)
		n++
	}
	base := measure(t, 0)
	if base.Children != 0 {
		t.Fatalf("after warm-up: %d child processes left", base.Children)
	}
	peak := base
	nextSample := time.Now().Add(time.Second)
	end := start.Add(dur)
	iters := 0
	for iters < 3 || time.Now().Before(end) {
		e.iteration(t)
		iters++
		if time.Now().After(nextSample) {
			s := measure(t, base.Goroutines)
			if s.Children != 0 {
				t.Fatalf("after %d iterations: %d child processes left (unreaped or running)", iters, s.Children)
			}
			peak.HeapInuse = max(peak.HeapInuse, s.HeapInuse)
			peak.Goroutines = max(peak.Goroutines, s.Goroutines)
			peak.FDs = max(peak.FDs, s.FDs)
			nextSample = time.Now().Add(time.Second)
		}
	}
	final := measure(t, base.Goroutines)
	t.Logf("soak: %v, %d warm-up + %d measured iterations (each: config load, %d routes, bundle load, translation, list of %d containers twice, create/state/delete on pvesim)",
		time.Since(start).Round(time.Millisecond), n, iters, len(e.ids), soakContainers)
	t.Logf("soak: after warm-up: %v", base)
	t.Logf("soak: peak:          %v", peak)
	t.Logf("soak: final:         %v", final)
	if final.HeapInuse > base.HeapInuse+soakHeapSlack {
		t.Errorf("heap in use grew from %d to %d bytes (bound +%d)", base.HeapInuse, final.HeapInuse, soakHeapSlack)
	}
	if final.Goroutines > base.Goroutines+soakGoroutineSlack {
		t.Errorf("goroutines grew from %d to %d", base.Goroutines, final.Goroutines)
	}
	if final.FDs > base.FDs+soakFDSlack {
		t.Errorf("open fds grew from %d to %d", base.FDs, final.FDs)
	}
	if final.Children != 0 {
		t.Errorf("%d child processes left", final.Children)
	}
}
