package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/testutil"
)

// parallel runs f(i) for i in [0, n) at the same time and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// vmidOf reads the VMID of id from its state file ("" when none).
func vmidOf(t *testing.T, root, id string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		t.Fatalf("state of %s: %v", id, err)
	}
	var s struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("state of %s: %v", id, err)
	}
	return s.Data["vmid"]
}

// TestParallelCreatesDistinct: 32 creates of distinct ids at once on the
// Proxmox backend all succeed with distinct VMIDs; 32 parallel deletes
// leave the node and --root clean.
func TestParallelCreatesDistinct(t *testing.T) {
	w := newPveWorld(t, nil)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	const n = 32
	res := make([]testutil.Result, n)
	parallel(n, func(i int) {
		res[i] = testutil.Run(t, w.nexcage, w.env, w.args("create", "--bundle", b, fmt.Sprintf("par-%02d", i))...)
	})
	seen := map[string]string{}
	for i, r := range res {
		id := fmt.Sprintf("par-%02d", i)
		if r.Code != 0 {
			t.Errorf("create %s: %s", id, r)
			continue
		}
		v := vmidOf(t, w.root, id)
		if other, dup := seen[v]; dup || v == "" {
			t.Errorf("%s got VMID %q, already given to %s", id, v, other)
		}
		seen[v] = id
	}
	if got := len(w.node.vmids(t)); got != len(seen) {
		t.Errorf(".vmlist has %d VMIDs, %d containers were created", got, len(seen))
	}
	parallel(n, func(i int) {
		if r := testutil.Run(t, w.nexcage, w.env, w.args("delete", "--force", fmt.Sprintf("par-%02d", i))...); r.Code != 0 {
			t.Errorf("delete par-%02d: %s", i, r)
		}
	})
	w.assertClean("after 32 parallel creates and deletes")
}

// TestParallelCreatesSameID: 8 creates of one id at once: exactly one
// succeeds, the others fail with "already exists" and leave nothing.
func TestParallelCreatesSameID(t *testing.T) {
	w := newPveWorld(t, nil)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	const n = 8
	res := make([]testutil.Result, n)
	parallel(n, func(i int) { res[i] = testutil.Run(t, w.nexcage, w.env, w.args("create", "--bundle", b, "same")...) })
	oneCreateWon(t, "same", res)
	if ids := w.node.vmids(t); len(ids) != 1 {
		t.Errorf(".vmlist has %v, want one VMID", ids)
	}
	if ids := w.listIDs(); len(ids) != 1 {
		t.Errorf("list shows %q, want one container", ids)
	}
	w.must("delete", "--force", "same")
	w.assertClean("after delete")
}

// TestParallelCreatesSameIDRunc: 8 creates of one runc-routed id at
// once, through the passthrough: exactly one succeeds, the others fail
// with "already exists", and exactly one container init exists (runc
// 1.1.5 alone is not safe here: one of its failing creates removed the
// state directory of the one that succeeded and left its init running);
// after delete --force nothing is left, no process either.
func TestParallelCreatesSameIDRunc(t *testing.T) {
	bin := testutil.NexcageBin(t)
	root := filepath.Join(t.TempDir(), "root")
	cfg := filepath.Join(t.TempDir(), "nexcage.json")
	writeFile(t, cfg, `{"container_config": {"default_container_type": "runc"}}`)
	args := func(a ...string) []string { return append([]string{"--root", root, "--config", cfg}, a...) }
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	id := fmt.Sprintf("same-runc-%d", os.Getpid())
	t.Cleanup(func() { testutil.Run(t, bin, nil, args("delete", "--force", id)...) })
	const n = 8
	res := make([]testutil.Result, n)
	parallel(n, func(i int) { res[i] = testutil.Run(t, bin, nil, args("create", "--bundle", b, id)...) })
	oneCreateWon(t, id, res)
	if inits := cgroupMembers(t, id); len(inits) != 1 {
		t.Errorf("processes in the container's cgroup: %v, want its one init", inits)
	}
	if r := testutil.Run(t, bin, nil, args("state", id)...); r.Code != 0 || !contains(r.Stdout, `"created"`) {
		t.Errorf("state: %s", r)
	}
	if r := testutil.Run(t, bin, nil, args("delete", "--force", id)...); r.Code != 0 {
		t.Fatalf("delete --force: %s", r)
	}
	for _, pid := range cgroupMembers(t, id) {
		testutil.WaitGone(t, pid, 30*time.Second)
	}
	if left := stateFiles(t, root); len(left) > 0 {
		t.Errorf("left under --root: %q", left)
	}
}

// oneCreateWon checks the results of simultaneous creates of id: exactly
// one succeeded, every other failed with exit 4 "already exists".
func oneCreateWon(t *testing.T, id string, res []testutil.Result) {
	t.Helper()
	ok := 0
	for _, r := range res {
		switch {
		case r.Code == 0:
			ok++
		case r.Code == 4 && contains(r.Stderr, "already exists"):
		default:
			t.Errorf("create %s: want exit 0 or 4 \"already exists\": %s", id, r)
		}
	}
	if ok != 1 {
		t.Errorf("%d creates of the same id succeeded, want exactly 1", ok)
	}
}

// cgroupMembers lists the processes whose cgroup (in any hierarchy) is
// the one runc gives a container without cgroupsPath: /<id>.
func cgroupMembers(t *testing.T, id string) []int {
	t.Helper()
	all, err := procfs.Pids()
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, pid := range all {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasSuffix(line, ":/"+id) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// TestTwoNodesShareCluster: two nodes of one simulated cluster (one
// /etc/pve) create containers at the same time; VMIDs never collide and
// each node holds its own configs.
func TestTwoNodesShareCluster(t *testing.T) {
	w := newPveWorld(t, nil)
	sim := testutil.PvesimBin(t)
	init2 := exec.Command(sim, "init")
	init2.Env = append(append(os.Environ(), w.node.env...), "PVESIM_NODE=pve2")
	if out, err := init2.CombinedOutput(); err != nil {
		t.Fatalf("pvesim init of pve2: %v\n%s", err, out)
	}
	// A second nexcage install, on node pve2, with its own state root.
	var cfg map[string]any
	data, _ := os.ReadFile(w.config)
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["proxmox"].(map[string]any)["node"] = "pve2"
	data, _ = json.Marshal(cfg)
	config2 := filepath.Join(t.TempDir(), "nexcage2.json")
	writeFile(t, config2, string(data))
	root2 := filepath.Join(t.TempDir(), "root2")
	env2 := append(append([]string{}, w.env...), "PVESIM_NODE=pve2")

	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	const n = 16
	args := func(i int, verb ...string) (string, []string, []string) {
		if i%2 == 0 {
			return w.root, env2[:len(w.env)], w.args(verb...)
		}
		return root2, env2, append([]string{"--root", root2, "--config", config2}, verb...)
	}
	res := make([]testutil.Result, n)
	parallel(n, func(i int) {
		_, env, a := args(i, "create", "--bundle", b, fmt.Sprintf("node-%02d", i))
		res[i] = testutil.Run(t, w.nexcage, env, a...)
	})
	seen := map[string]bool{}
	for i, r := range res {
		if r.Code != 0 {
			t.Errorf("create node-%02d: %s", i, r)
			continue
		}
		root, _, _ := args(i)
		v := vmidOf(t, root, fmt.Sprintf("node-%02d", i))
		if seen[v] {
			t.Errorf("VMID %s given twice", v)
		}
		seen[v] = true
		node := "pve"
		if i%2 == 1 {
			node = "pve2"
		}
		if _, err := os.Stat(filepath.Join(w.node.root, "etc/pve/nodes", node, "lxc", v+".conf")); err != nil {
			t.Errorf("node-%02d: CT %s not on node %s: %v", i, v, node, err)
		}
	}
	parallel(n, func(i int) {
		_, env, a := args(i, "delete", "--force", fmt.Sprintf("node-%02d", i))
		if r := testutil.Run(t, w.nexcage, env, a...); r.Code != 0 {
			t.Errorf("delete node-%02d: %s", i, r)
		}
	})
	w.assertClean("after both nodes deleted")
	if left := stateFiles(t, root2); len(left) > 0 {
		t.Errorf("left under pve2's --root: %q", left)
	}
}

// TestParallelLifecycleSameID: start, kill, state and delete --force of
// one container at the same time never corrupt its state: every call
// ends with a documented exit code, the state file is either gone or
// valid, and a final delete --force leaves everything clean.
func TestParallelLifecycleSameID(t *testing.T) {
	w := newPveWorld(t, nil)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	w.must("create", "--bundle", b, "busy")
	verbs := [][]string{
		{"start", "busy"}, {"start", "busy"}, {"kill", "busy", "KILL"}, {"kill", "busy", "TERM"},
		{"state", "busy"}, {"state", "busy"}, {"delete", "--force", "busy"}, {"start", "busy"},
		{"kill", "busy", "KILL"}, {"state", "busy"}, {"delete", "busy"}, {"delete", "--force", "busy"},
	}
	res := make([]testutil.Result, len(verbs))
	parallel(len(verbs), func(i int) { res[i] = testutil.Run(t, w.nexcage, w.env, w.args(verbs[i]...)...) })
	documented := map[int]bool{0: true, 3: true, 8: true, 9: true, 10: true}
	for i, r := range res {
		if !documented[r.Code] || contains(r.Stderr, "panic") {
			t.Errorf("nexcage %s: %s", strings.Join(verbs[i], " "), r)
		}
	}
	if data, err := os.ReadFile(filepath.Join(w.root, "busy", "state.json")); err == nil {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Errorf("state file torn: %v: %q", err, data)
		}
	}
	if r := w.run("delete", "--force", "busy"); r.Code != 0 {
		t.Errorf("final delete --force: %s", r)
	}
	w.assertClean("after the final delete")
}
