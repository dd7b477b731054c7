package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/cgroups"
)

// TestContainerdProxmoxCRIPodLimits: the app containers of a Proxmox
// pod get the CPU and memory limits crictl gives them
// (linux.resources, as containerd's CRI puts them in the bundle) in
// their own cgroups, children of the CT's: the test reads the host's
// cgroup files of each container's process (by /proc/<pid>/cgroup) and
// finds each container's own values. Exec'd processes join them, ps
// lists their members, /sys (with the CT's cgroup file system) is
// read-only in the container, crictl update changes them, a cgroup v2
// controller makes room in the CT's populated cgroup with lxc-attach
// working on, a value the kernel refuses fails create and leaves
// nothing, and a container that goes over its memory limit is
// OOM-killed while its sibling keeps running. After rm and rmp no
// cgroup of the containers is left. Its name puts it in make e2e's PVE
// 8.4 run as well.
func TestContainerdProxmoxCRIPodLimits(t *testing.T) {
	e := newPveEnv(t, false, "")
	link := filepath.Join(t.TempDir(), "nexcage-proxmox")
	if err := os.Symlink(NexcageBin(t), link); err != nil {
		t.Fatal(err)
	}
	n := newCRINode(t, append([]string{"NEXCAGE_CONFIG=" + e.config}, e.env...), criHandler{Name: "proxmox", Binary: link})
	pod, podCfg := n.runPod(criPod{Name: "limits", Namespace: "lab", Handler: "proxmox"})

	type limits struct{ mem, quota, period, shares int64 }
	start := func(name string, l limits, script string, proc ...string) (id string, pid int) {
		t.Helper()
		cfg := filepath.Join(t.TempDir(), name+".json")
		writeJSON(t, cfg, map[string]any{"metadata": map[string]any{"name": name}, "image": map[string]any{"image": ctrImage},
			"command": []string{"sh", "-c", script, name}, "log_path": name + ".log",
			"linux": map[string]any{"resources": map[string]any{"memory_limit_in_bytes": l.mem, "cpu_quota": l.quota, "cpu_period": l.period, "cpu_shares": l.shares}}})
		id = n.mustCrictl("create", pod, cfg, podCfg)
		n.mustCrictl("start", id)
		var cs criContainerStatus
		n.inspect("inspect", id, &cs)
		var spec struct {
			Info struct {
				RuntimeSpec struct {
					Linux struct {
						Resources json.RawMessage `json:"resources"`
					} `json:"linux"`
				} `json:"runtimeSpec"`
			} `json:"info"`
		}
		n.inspect("inspect", id, &spec)
		t.Logf("container %s: containerd's linux.resources: %s", name, spec.Info.RuntimeSpec.Linux.Resources)
		if cs.Status.State != "CONTAINER_RUNNING" || cs.Info.Pid == 0 {
			t.Fatalf("container %s: state %q pid %d", name, cs.Status.State, cs.Info.Pid)
		}
		// crictl's pid is lxc-attach's (on the host); the container's
		// process is below it: `sh -c <script> <name>`, or proc once the
		// script has exec'd it.
		if len(proc) == 0 {
			proc = []string{"sh", "-c", script, name}
		}
		Eventually(t, 30*time.Second, "the process of container "+name, func() bool {
			pid = descendantWithArgs(cs.Info.Pid, proc)
			return pid != 0
		})
		return id, pid
	}
	a := limits{mem: 64 << 20, quota: 50000, period: 100000, shares: 512}
	b := limits{mem: 96 << 20, quota: 20000, period: 50000, shares: 256}
	idA, pidA := start("alpha", a, "echo alpha-up; exec sleep 100001", "sleep", "100001")
	idB, pidB := start("beta", b, "echo beta-up; exec sleep 100002", "sleep", "100002")

	var all []string
	check := func(name, id string, pid int, l limits) map[string]string {
		t.Helper()
		dirs := hostCgroupDirs(t, pid)
		for _, c := range []string{"memory", "cpu"} {
			d, ok := dirs[c]
			if !ok {
				t.Fatalf("container %s (pid %d): no %s cgroup in /proc/%d/cgroup", name, pid, c, pid)
			}
			if filepath.Base(d) != "nexcage-"+id {
				t.Fatalf("container %s (pid %d): its %s cgroup is %s, not its own (nexcage-%s)", name, pid, c, d, id)
			}
			all = append(all, d)
		}
		want := map[string]string{}
		if dirs["memory"] == dirs[""] { // cgroup v2
			want["memory.max"] = strconv.FormatInt(l.mem, 10)
			want["cpu.max"] = fmt.Sprintf("%d %d", l.quota, l.period)
			want["cpu.weight"] = strconv.FormatUint(cgroups.CPUSharesToWeight(uint64(l.shares)), 10)
		} else {
			want["memory.limit_in_bytes"] = strconv.FormatInt(l.mem, 10)
			want["cpu.cfs_quota_us"] = strconv.FormatInt(l.quota, 10)
			want["cpu.cfs_period_us"] = strconv.FormatInt(l.period, 10)
			want["cpu.shares"] = strconv.FormatInt(l.shares, 10)
			// containerd sets swap = memory (none) where swap is accounted.
			if _, err := os.Stat(filepath.Join(dirs["memory"], "memory.memsw.limit_in_bytes")); err == nil {
				want["memory.memsw.limit_in_bytes"] = strconv.FormatInt(l.mem, 10)
			}
		}
		for f, v := range want {
			d := dirs[strings.SplitN(f, ".", 2)[0]]
			got, err := os.ReadFile(filepath.Join(d, f))
			if err != nil || strings.TrimSpace(string(got)) != v {
				t.Errorf("container %s: %s = %q, %v; want %s", name, filepath.Join(d, f), strings.TrimSpace(string(got)), err, v)
			}
		}
		return dirs
	}
	dirsA := check("alpha", idA, pidA, a)
	dirsB := check("beta", idB, pidB, b)
	// An exec'd process is in the container's cgroups too (as with runc).
	if r := n.crictl("exec", idA, "cat", "/proc/self/cgroup"); r.Code != 0 || !strings.Contains(r.Stdout, "/nexcage-"+idA+"\n") {
		t.Errorf("the cgroups of a process exec'd in alpha: %s", r)
	}
	// A process exec'd in the background outlives its exec and is
	// orphaned (the CT's init adopts it): still the container's, in its
	// cgroups, so `ps` lists it and rmp ends it.
	n.mustCrictl("exec", idA, "sh", "-c", "sleep 100009 </dev/null >/dev/null 2>&1 &")
	var orphan int
	Eventually(t, 30*time.Second, "the orphan in alpha's cgroup", func() bool {
		procs, _ := os.ReadFile(filepath.Join(dirsA["memory"], "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			p, _ := strconv.Atoi(f)
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); string(cmd) == "sleep\x00100009\x00" {
				orphan = p
			}
		}
		return orphan != 0
	})
	nx := &Nexcage{T: t, Bin: NexcageBin(t), Globals: []string{"--root", n.handlers["proxmox"]}, Env: append([]string{"NEXCAGE_CONFIG=" + e.config}, e.env...)}
	var listed []int
	if err := json.Unmarshal([]byte(nx.Must("ps", "--format", "json", idA).Stdout), &listed); err != nil || !slices.Contains(listed, orphan) || !slices.Contains(listed, pidA) {
		t.Errorf("nexcage ps %s: %v (%v), want its process %d and the orphan %d", idA, listed, err, pidA, orphan)
	}
	// The CT's /sys, with its cgroup file system where the CT has one
	// (PVE's cgroup:mixed; pvesim's CTs have none), is read-only in the
	// container, as containerd's spec asks (ro sysfs and cgroup mounts),
	// so the container's root cannot move itself out of its cgroups or
	// change them. (LXC's sys:mixed leaves /sys/devices/virtual/net
	// writable in the CT.)
	if r := n.crictl("exec", idA, "cat", "/proc/self/mountinfo"); r.Code != 0 {
		t.Errorf("the mounts of alpha: %s", r)
	} else {
		seen := 0
		for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 || (f[4] != "/sys" && !strings.HasPrefix(f[4], "/sys/")) {
				continue
			}
			seen++
			if !slices.Contains(strings.Split(f[5], ","), "ro") {
				t.Errorf("a writable mount below /sys in alpha: %s", l)
			}
		}
		if seen == 0 {
			t.Errorf("no /sys in alpha's mounts:\n%s", r.Stdout)
		}
	}
	// Siblings below the same cgroup: the CT's.
	if filepath.Dir(dirsA["memory"]) != filepath.Dir(dirsB["memory"]) || filepath.Dir(dirsA["memory"]) == "/sys/fs/cgroup/memory" {
		t.Errorf("the containers' memory cgroups %s and %s are not siblings below the CT's", dirsA["memory"], dirsB["memory"])
	}

	t.Run("crictl update sets a running container's new limits", func(t *testing.T) {
		// containerd runs the runtime's update --resources - with the
		// whole new linux.resources (swap = memory again: memory+swap
		// must be raised before the memory limit on cgroup v1).
		up := limits{mem: 128 << 20, quota: 30000, period: 50000, shares: 256}
		n.mustCrictl("update", "--memory", strconv.FormatInt(up.mem, 10), "--cpu-quota", strconv.FormatInt(up.quota, 10),
			"--cpu-period", strconv.FormatInt(up.period, 10), "--cpu-share", strconv.FormatInt(up.shares, 10), idB)
		check("beta", idB, pidB, up)
		if !pidAlive(pidB) {
			t.Errorf("beta's process %d died in the update", pidB)
		}
	})

	t.Run("cgroup v2: room made in the CT's cgroup, lxc-attach works on", func(t *testing.T) {
		// The CT's cgroup on the cgroup2 hierarchy holds the CT's init
		// (PVE 8/9: all controllers; this project's hybrid hosts:
		// hugetlb). Enabling a controller for a container's cgroup moves
		// the init into the leaf .lxc; exec (lxc-attach) and new
		// containers keep working.
		ct := filepath.Dir(dirsA[""])
		ctrls, _ := os.ReadFile(filepath.Join(ct, "cgroup.controllers"))
		if !slices.Contains(strings.Fields(string(ctrls)), "hugetlb") || !fileExists("/sys/kernel/mm/hugepages/hugepages-2048kB") {
			t.Skipf("the CT's cgroup2 directory %s has no hugetlb controller (%q) or the kernel no 2 MB pages", ct, ctrls)
		}
		cfg := filepath.Join(t.TempDir(), "gamma.json")
		writeJSON(t, cfg, map[string]any{"metadata": map[string]any{"name": "gamma"}, "image": map[string]any{"image": ctrImage},
			"command": []string{"sleep", "100006"}, "log_path": "gamma.log",
			"linux": map[string]any{"resources": map[string]any{"unified": map[string]string{"hugetlb.2MB.max": "4194304"}}}})
		gamma := n.mustCrictl("create", pod, cfg, podCfg)
		n.mustCrictl("start", gamma)
		own := filepath.Join(ct, "nexcage-"+gamma)
		all = append(all, own)
		if got, err := os.ReadFile(filepath.Join(own, "hugetlb.2MB.max")); err != nil || strings.TrimSpace(string(got)) != "4194304" {
			t.Errorf("gamma's hugetlb.2MB.max: %q, %v", got, err)
		}
		if sc, _ := os.ReadFile(filepath.Join(ct, "cgroup.subtree_control")); !slices.Contains(strings.Fields(string(sc)), "hugetlb") {
			t.Errorf("hugetlb not enabled in the CT's %s: %q", ct, sc)
		}
		if procs, _ := os.ReadFile(filepath.Join(ct, "cgroup.procs")); strings.TrimSpace(string(procs)) != "" {
			t.Errorf("processes left in the CT's cgroup %s, which has children with controllers: %q", ct, procs)
		}
		if procs, _ := os.ReadFile(filepath.Join(ct, ".lxc", "cgroup.procs")); strings.TrimSpace(string(procs)) == "" {
			t.Errorf("the CT's init is not in %s", filepath.Join(ct, ".lxc"))
		}
		if r := n.crictl("exec", gamma, "sh", "-c", "grep -c nexcage-"+gamma+" /proc/self/cgroup"); r.Code != 0 {
			t.Errorf("exec in gamma after the room was made: %s", r)
		}
		// A kind of limit the container got no cgroup for at create is
		// refused by name.
		if r := n.crictl("update", "--memory", "67108864", gamma); r.Code == 0 || !strings.Contains(r.Stderr, "got no cgroup") {
			t.Errorf("crictl update of a limit gamma has no cgroup for: %s", r)
		}
		delta := n.createContainer(pod, podCfg, "delta", "sleep", "100007")
		n.mustCrictl("start", delta)
		if r := n.crictl("exec", delta, "echo", "delta-ok"); r.Code != 0 || r.Stdout != "delta-ok\n" {
			t.Errorf("a new container after the room was made: %s", r)
		}
		for _, id := range []string{gamma, delta} {
			n.mustCrictl("stop", "--timeout", "2", id)
			n.mustCrictl("rm", id)
		}
		if fileExists(own) {
			t.Errorf("gamma's cgroup %s left after rm", own)
		}
	})

	t.Run("a limit the kernel refuses fails create and leaves no cgroup", func(t *testing.T) {
		// A CPU quota below the kernel's 1 ms minimum: the memory cgroup
		// is made and written before the CPU quota fails.
		cfg := filepath.Join(t.TempDir(), "bad.json")
		writeJSON(t, cfg, map[string]any{"metadata": map[string]any{"name": "bad"}, "image": map[string]any{"image": ctrImage},
			"command": []string{"sleep", "100005"}, "log_path": "bad.log",
			"linux": map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20, "cpu_quota": 500, "cpu_period": 100000}}})
		id := n.mustCrictl("create", pod, cfg, podCfg)
		r := n.crictl("start", id)
		if r.Code == 0 || !strings.Contains(r.Stderr, "cannot apply its resource limits") || !strings.Contains(r.Stderr, "cpu.") {
			t.Fatalf("crictl start with a CPU quota of 500 us: %s", r)
		}
		for c, d := range dirsA {
			if left := filepath.Join(filepath.Dir(d), "nexcage-"+id); fileExists(left) {
				t.Errorf("the failed container's %s cgroup %s left", c, left)
			}
		}
		n.mustCrictl("rm", id)
		if got := n.backends("proxmox"); len(got) != 3 {
			t.Errorf("nexcage state after the failed container: %v, want the sandbox, alpha and beta", got)
		}
	})

	t.Run("over its memory limit a container is OOM-killed, its sibling runs on", func(t *testing.T) {
		// The hog waits for /tmp/go, then a subshell reads 256 MiB into
		// a shell variable: four times the limit (no swap: containerd
		// sets swap = memory). The OOM killer takes the subshell, the
		// largest process of the cgroup; the container's main shell
		// reports its status and lives on, so its cgroup (removed when
		// the container exits) can be read.
		hog, hogPid := start("hog", limits{mem: 64 << 20, quota: 100000, period: 100000, shares: 1024},
			`echo hog-up; while [ ! -e /tmp/go ]; do sleep 0.1; done; (x=$(head -c 268435456 /dev/zero | tr '\0' a); echo hog-survived); echo hog-status=$?; exec sleep 100003`)
		dirs := hostCgroupDirs(t, hogPid)
		memDir := dirs["memory"]
		if filepath.Base(memDir) != "nexcage-"+hog {
			t.Fatalf("the hog's memory cgroup is %s", memDir)
		}
		all = append(all, memDir)
		if k := oomKills(t, memDir); k != 0 {
			t.Fatalf("%d OOM kills in %s before the hog started", k, memDir)
		}
		n.mustCrictl("exec", hog, "touch", "/tmp/go")
		var logs Result
		Eventually(t, 2*time.Minute, "the hog's allocation to end", func() bool {
			logs = n.crictl("logs", hog)
			return strings.Contains(logs.Stdout, "hog-status=")
		})
		if !strings.Contains(logs.Stdout, "hog-status=137\n") || strings.Contains(logs.Stdout, "hog-survived") {
			t.Errorf("the hog's allocation was not SIGKILLed: %s", logs)
		}
		if k := oomKills(t, memDir); k < 1 {
			t.Errorf("no OOM kill counted in %s", memDir)
		}
		for name, pid := range map[string]int{"alpha": pidA, "beta": pidB} {
			if !pidAlive(pid) {
				t.Errorf("container %s's process %d died with the hog", name, pid)
			}
		}
		var st criContainerStatus
		n.inspect("inspect", idA, &st)
		if st.Status.State != "CONTAINER_RUNNING" {
			t.Errorf("container alpha: %s after the hog's OOM", st.Status.State)
		}
		n.mustCrictl("stop", "--timeout", "2", hog)
		n.mustCrictl("rm", hog)
		if _, err := os.Stat(memDir); !os.IsNotExist(err) {
			t.Errorf("the hog's cgroup %s left after crictl rm: %v", memDir, err)
		}
	})

	n.mustCrictl("stopp", pod)
	n.mustCrictl("rmp", pod)
	for _, d := range all {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after rmp: %v", d, err)
		}
	}
	if pidAlive(orphan) {
		t.Errorf("the orphan %d of alpha still runs after rmp", orphan)
	}
	e.assertNothingLeftOn(t, n.handlers["proxmox"], "after rmp")
}

// descendantWithArgs is the descendant of pid whose command line is
// args, or 0.
func descendantWithArgs(pid int, args []string) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, f := range strings.Fields(string(data)) {
			c, _ := strconv.Atoi(f)
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c))
			if slices.Equal(strings.Split(strings.TrimSuffix(string(cmd), "\x00"), "\x00"), args) {
				return c
			}
			queue = append(queue, c)
		}
	}
	return 0
}

// hostCgroupDirs maps each controller of pid's cgroups (and "" for the
// cgroup v2 hierarchy) to its directory on the host, from
// /proc/<pid>/cgroup and the host's cgroup mounts. On cgroup v2 every
// controller of the cgroup maps to the same directory.
func hostCgroupDirs(t *testing.T, pid int) map[string]string {
	t.Helper()
	type mnt struct{ root, point, fstype, opts string }
	var mounts []mnt
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+3 >= len(fields) {
			continue
		}
		if fs := fields[i+1]; fs == "cgroup" || fs == "cgroup2" {
			mounts = append(mounts, mnt{fields[3], fields[4], fs, fields[i+3]})
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, m := range mounts {
			rel, err := filepath.Rel(m.root, parts[2])
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			dir := filepath.Join(m.point, rel)
			if parts[1] == "" && m.fstype == "cgroup2" {
				out[""] = dir
				ctrls, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"))
				for _, c := range strings.Fields(string(ctrls)) {
					if _, ok := out[c]; !ok {
						out[c] = dir
					}
				}
				break
			}
			if m.fstype == "cgroup" {
				for _, c := range strings.Split(parts[1], ",") {
					if slices.Contains(strings.Split(m.opts, ","), c) {
						out[c] = dir
					}
				}
			}
		}
	}
	return out
}

// oomKills is the oom_kill count of a memory cgroup (v1's
// memory.oom_control, v2's memory.events).
func oomKills(t *testing.T, dir string) int {
	t.Helper()
	for _, f := range []string{"memory.events", "memory.oom_control"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				return k
			}
		}
	}
	t.Fatalf("no oom_kill counter in %s", dir)
	return 0
}
