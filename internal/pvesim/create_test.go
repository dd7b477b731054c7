package pvesim

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

func TestPctCreateValidations(t *testing.T) {
	n, root := initNode(t)
	// A CT 300 on another node of the cluster, and a QEMU guest 301.
	other, _, _ := newPctNode(root, "pve2")
	if _, stderr, code := pct(t, other, "create", "300", debianTmpl); code != 0 {
		t.Fatalf("setup: %s", stderr)
	}
	list, _ := pvecfg.ReadVMList(n.VMListPath())
	list.Add(301, pvecfg.VMListEntry{Node: "pve2", Type: "qemu", Version: 1})
	if err := list.Write(n.VMListPath()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"exists on other node", []string{"create", "300", debianTmpl}, "CT 300 already exists on node 'pve2'\n"},
		{"vm exists", []string{"create", "301", debianTmpl}, "VM 301 already exists on node 'pve2'\n"},
		{"missing template", []string{"create", "100", "local:vztmpl/nope.tar.zst"},
			"unable to create CT 100 - can't find file 'local:vztmpl/nope.tar.zst'\n"},
		{"missing path template", []string{"create", "100", "/nonexistent/x.tar"},
			"unable to create CT 100 - can't find file '/nonexistent/x.tar'\n"},
		{"content type", []string{"create", "100", "local:iso/x.iso"},
			"unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'\n"},
		{"bad template name", []string{"create", "100", "local:vztmpl/x.zip"},
			"unable to parse directory volume name 'vztmpl/x.zip'\n"},
		{"unknown storage of template", []string{"create", "100", "nosuch:vztmpl/x.tar"},
			"storage 'nosuch' does not exist\n"},
		{"mount points without rootfs", []string{"create", "100", debianTmpl, "--mp0", "/tmp,mp=/data"},
			"mount points configured, but 'rootfs' not set - aborting\n"},
		{"storage without rootdir", []string{"create", "100", debianTmpl, "--storage", "tmplonly"},
			"400 Parameter verification failed.\nstorage: storage 'tmplonly' does not support container directories\n" + usageCreate},
		{"rootfs storage without rootdir", []string{"create", "100", debianTmpl, "--rootfs", "tmplonly:1"},
			"400 Parameter verification failed.\nstorage: storage 'tmplonly' does not support container directories\n" + usageCreate},
		{"unknown storage", []string{"create", "100", debianTmpl, "--storage", "nosuch"},
			"storage 'nosuch' does not exist\n"},
		{"bad rootfs volume", []string{"create", "100", debianTmpl, "--rootfs", "x"},
			"unable to parse volume ID 'x'\n"},
		{"unknown distro", []string{"create", "100", weirdTmpl},
			"unable to create CT 100 - unable to detect OS distribution\n"},
		{"missing bind source", []string{"create", "100", debianTmpl, "--rootfs", "local:1", "--mp0", "/nonexistent/src,mp=/data"},
			"unable to create CT 100 - directory '/nonexistent/src' does not exist\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := pct(t, n, tc.args...)
			if code != 255 || !strings.HasSuffix(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr, tc.want)
			}
			if tc.args[1] == "100" {
				assertNoTrace(t, n, root, 100)
			}
		})
	}
	// The failed creates left the other node's CT alone.
	if _, err := os.Stat(other.ConfPath(300)); err != nil {
		t.Error(err)
	}
}

func TestPctCreateWritesProxmoxConfig(t *testing.T) {
	n, root := initNode(t)
	data := t.TempDir()
	stdout, stderr, code := pct(t, n, "create", "100", debianTmpl,
		"--memory", "64", "--rootfs", "local:1", "--mp0", data+",mp=/data,ro=1", "--mp1", "local:2,mp=/vol",
		"--net0", "ip=dhcp,bridge=vmbr0,name=eth0,hwaddr=BC:24:11:00:00:01", "--net1", "name=eth1",
		"--entrypoint", "/bin/sh -c 'sleep 100'", "--env", "A=1", "--features", "nesting=yes",
		"--description", "web: front\nend", "--tags", "nexcage", "--cores", "2")
	if code != 0 {
		t.Fatalf("create: %s", stderr)
	}
	if !strings.Contains(stdout, "extracting archive '"+filepath.Join(root, "var/lib/vz/template/cache/debian-test.tar")+"'") {
		t.Errorf("stdout: %q", stdout)
	}
	raw, err := os.ReadFile(n.ConfPath(100))
	if err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`hwaddr=BC:24:11:[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2},ip`).ReplaceAllString(string(raw), "hwaddr=GEN,ip")
	got = strings.Replace(got, "name=eth1,hwaddr=BC:24:11:", "name=eth1,hwaddr=GEN:", 1)
	got = regexp.MustCompile(`hwaddr=GEN:[0-9A-F:]{8},type`).ReplaceAllString(got, "hwaddr=GEN,type")
	want := "#web%3A front\n#end\n" +
		"arch: amd64\ncores: 2\nentrypoint: /bin/sh -c 'sleep 100'\nfeatures: nesting=1\nhostname: CT100\nmemory: 64\n" +
		"mp0: " + data + ",mp=/data,ro=1\n" +
		"mp1: local:100/vm-100-disk-1.raw,mp=/vol,size=2G\n" +
		"net0: name=eth0,bridge=vmbr0,hwaddr=GEN,ip=dhcp,type=veth\n" +
		"net1: name=eth1,hwaddr=GEN,type=veth\n" +
		"ostype: debian\nrootfs: local:100/vm-100-disk-0.raw,size=1G\nswap: 512\ntags: nexcage\nunprivileged: 1\n" +
		"lxc.environment.runtime: A=1\n"
	if got != want {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(string(raw), "hwaddr=BC:24:11:00:00:01") {
		t.Error("given hwaddr not kept")
	}
	// Round trip: what pvesim wrote parses back and re-marshals identically.
	conf, warns := pvecfg.ParseConfig(raw, 100, n.PVEVersion())
	if len(warns) > 0 {
		t.Fatalf("%q", warns)
	}
	again, err := conf.Marshal()
	if err != nil || string(again) != string(raw) {
		t.Errorf("round trip differs:\n%s", again)
	}
	// Volumes are directories; the rootfs holds the template, shifted.
	rootfs := filepath.Join(root, "var/lib/vz/images/100/vm-100-disk-0.raw")
	fi, err := os.Stat(filepath.Join(rootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := statUID(fi); uid != 100000 {
		t.Errorf("unprivileged rootfs owned by %d", uid)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/vz/images/100/vm-100-disk-1.raw")); err != nil {
		t.Error(err)
	}
	// pct config: sorted keys, description and env as single keys, then raw lines.
	stdout, _, code = pct(t, n, "config", "100")
	if code != 0 || !strings.Contains(stdout, "cores: 2\ndescription: web%3A front%0Aend%0A\nentrypoint:") ||
		!strings.Contains(stdout, "\nenv: A=1\nfeatures: nesting=1\n") || strings.Contains(stdout, "lxc.environment") {
		t.Errorf("pct config:\n%s", stdout)
	}
	// Privileged container: no unprivileged key, root-owned files.
	if _, stderr, code := pct(t, n, "create", "101", alpineTmpl, "--unprivileged", "0", "--hostname", "web"); code != 0 {
		t.Fatal(stderr)
	}
	raw, _ = os.ReadFile(n.ConfPath(101))
	if string(raw) != "arch: amd64\nhostname: web\nmemory: 512\nostype: alpine\nrootfs: local:101/vm-101-disk-0.raw,size=4G\nswap: 512\n" {
		t.Errorf("privileged config:\n%s", raw)
	}
	fi, _ = os.Stat(filepath.Join(root, "var/lib/vz/images/101/vm-101-disk-0.raw/bin/busybox"))
	if statUID(fi) != 0 {
		t.Error("privileged rootfs shifted")
	}
	list, _ := pvecfg.ReadVMList(n.VMListPath())
	if e, ok := list.Lookup(101); !ok || e.Node != "pve" || e.Type != "lxc" {
		t.Errorf(".vmlist entry: %+v %v", e, ok)
	}
	// --ostype unmanaged skips detection of an unknown distro.
	if _, stderr, code := pct(t, n, "create", "102", weirdTmpl, "--ostype", "unmanaged"); code != 0 {
		t.Fatal(stderr)
	}
}

func TestPctConfigListAndSet(t *testing.T) {
	n, _ := initNode(t)
	if stdout, stderr, code := pct(t, n, "list"); code != 0 || stdout != "" || stderr != "" {
		t.Fatalf("empty list printed %q %q", stdout, stderr)
	}
	conf := "#note\narch: amd64\nhostname: a-very-long-hostname-for-layout\nlock: snapshot-delete\nmemory: 128\n" +
		"ostype: debian\nrootfs: local:105/vm-105-disk-0.raw,size=4G\n" +
		"lxc.environment.runtime: X=1\nlxc.environment.runtime: Y=2\nlxc.init.cwd: /srv\nlxc.rootfs.path: /evil\nlxc.mount.entry: tmpfs tmp tmpfs rw 0 0\n"
	if err := os.WriteFile(n.ConfPath(105), []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ConfPath(104), []byte("memory: 64\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := pct(t, n, "list")
	want := "VMID       Status     Lock         Name                \n" +
		"104        stopped                 CT104               \n" +
		"105        stopped    snapshot-delete a-very-long-hostname-for-layout\n"
	if code != 0 || stdout != want {
		t.Errorf("list:\n%q\nwant:\n%q", stdout, want)
	}
	stdout, stderr, code := pct(t, n, "config", "105")
	wantConf := "arch: amd64\ndescription: note%0A\nenv: X=1\x00Y=2\nhostname: a-very-long-hostname-for-layout\nlock: snapshot-delete\n" +
		"memory: 128\nostype: debian\nrootfs: local:105/vm-105-disk-0.raw,size=4G\nlxc.init.cwd: /srv\nlxc.mount.entry: tmpfs tmp tmpfs rw 0 0\n"
	if code != 0 || stdout != wantConf {
		t.Errorf("config:\n%q\nwant:\n%q", stdout, wantConf)
	}
	if stderr != "vm 105 - lxc.rootfs.path: lxc.rootfs.path is auto generated from rootfs\n" {
		t.Errorf("warnings: %q", stderr)
	}
	stdout, _, _ = pct(t, n, "status", "104")
	if stdout != "status: stopped\n" {
		t.Errorf("status: %q", stdout)
	}
	stdout, _, _ = pct(t, n, "status", "104", "--verbose")
	if !strings.Contains(stdout, "maxmem: 67108864\n") || !strings.Contains(stdout, "name: CT104\n") ||
		!strings.Contains(stdout, "status: stopped\n") || strings.Contains(stdout, "pid:") {
		t.Errorf("status --verbose:\n%s", stdout)
	}
	// Locked: verbs refuse; unlock clears.
	for _, verb := range []string{"start", "destroy"} {
		if _, stderr, code := pct(t, n, verb, "105"); code != 255 || !strings.HasSuffix(stderr, "\nCT is locked (snapshot-delete)\n") {
			t.Errorf("%s on locked: %d %q", verb, code, stderr)
		}
	}
	if _, stderr, code := pct(t, n, "set", "105", "--memory", "256"); code != 255 || !strings.HasSuffix(stderr, "CT is locked (snapshot-delete)\n") {
		t.Errorf("set on locked: %d %q", code, stderr)
	}
	if _, stderr, code := pct(t, n, "unlock", "105"); code != 0 {
		t.Fatal(stderr)
	}
	// set: read-only and required options, delete, canonical net.
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"set", "104", "--unprivileged", "1"}, "unable to modify read-only option: 'unprivileged'\n"},
		{[]string{"set", "104", "--delete", "memory"}, "unable to delete required option 'memory'\n"},
		{[]string{"set", "104"}, "no options specified\n"},
		{[]string{"set", "104", "--memory", "8"}, "400 Parameter verification failed.\nmemory: value must have a minimum value of 16\npct set <vmid> [OPTIONS]\n"},
		{[]string{"set", "199", "--memory", "64"}, "Configuration file 'nodes/pve/lxc/199.conf' does not exist\n"},
	}
	for _, tc := range cases {
		if _, stderr, code := pct(t, n, tc.args...); code != 255 || stderr != tc.want {
			t.Errorf("%v: %d %q want %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, stderr, code := pct(t, n, "set", "104", "--net0", "name=eth0,bridge=vmbr1", "--cores", "3", "--delete", "swap"); code != 0 ||
		stderr != "cannot delete 'swap' - not set in current configuration!\n" {
		t.Fatalf("set: %d %q", code, stderr)
	}
	raw, _ := os.ReadFile(n.ConfPath(104))
	if !regexp.MustCompile(`^cores: 3\nmemory: 64\nnet0: name=eth0,bridge=vmbr1,hwaddr=BC:24:11:[0-9A-F:]{8},type=veth\n$`).Match(raw) {
		t.Errorf("after set:\n%s", raw)
	}
	// Raw lines written by hand survive a pct set untouched, in order.
	if _, stderr, code := pct(t, n, "set", "105", "--memory", "256"); code != 0 {
		t.Fatal(stderr)
	}
	raw, _ = os.ReadFile(n.ConfPath(105))
	if !strings.HasSuffix(string(raw), "memory: 256\nostype: debian\nrootfs: local:105/vm-105-disk-0.raw,size=4G\n"+
		"lxc.environment.runtime: X=1\nlxc.environment.runtime: Y=2\nlxc.init.cwd: /srv\nlxc.mount.entry: tmpfs tmp tmpfs rw 0 0\n") {
		t.Errorf("after set:\n%s", raw)
	}
	// Errors on unknown containers.
	for _, verb := range []string{"start", "stop", "status", "config", "destroy", "shutdown", "unlock"} {
		if _, stderr, code := pct(t, n, verb, "999"); code != 255 || stderr != "Configuration file 'nodes/pve/lxc/999.conf' does not exist\n" {
			t.Errorf("%s 999: %d %q", verb, code, stderr)
		}
	}
	for _, verb := range []string{"stop", "shutdown"} {
		if _, stderr, code := pct(t, n, verb, "104"); code != 255 || stderr != "CT 104 not running\n" {
			t.Errorf("%s stopped: %d %q", verb, code, stderr)
		}
	}
	if _, stderr, code := pct(t, n, "exec", "104", "--", "true"); code != 255 || stderr != "container '104' not running!\n" {
		t.Errorf("exec stopped: %d %q", code, stderr)
	}
	// destroy removes config, volume and .vmlist entry.
	if _, stderr, code := pct(t, n, "create", "110", debianTmpl, "--rootfs", "local:1"); code != 0 {
		t.Fatal(stderr)
	}
	if stdout, stderr, code := pct(t, n, "destroy", "110", "--purge"); code != 0 || stdout != "purging CT 110 from related configurations..\n" {
		t.Fatalf("destroy: %d %q %q", code, stdout, stderr)
	}
	assertNoTrace(t, n, n.Root, 110)
}

// Two nodes on one root, 20 parallel creates: every vmid handed out once.
func TestPctParallelCreatesTwoNodes(t *testing.T) {
	n, root := initNode(t)
	nodes := []*Node{n, {Root: root, Name: "pve2"}}
	const workers = 20
	var wg sync.WaitGroup
	got := make([]int, workers)
	errs := make([]string, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			node := nodes[i%2]
			// Allocate like nexcage does: the lowest free id not tried yet,
			// another on "already exists" and on a lock timeout. Each
			// failure is then an id another worker took, so no worker
			// needs more attempts than there are workers; retrying the
			// same id could lose any number of times while its winner's
			// create is still running.
			tried := map[int]bool{}
			for attempt := 0; attempt < workers; attempt++ {
				list, err := pvecfg.ReadVMList(node.VMListPath())
				if err != nil {
					errs[i] = err.Error()
					return
				}
				id := list.NextID(100, 1000000)
				for tried[id] {
					id = list.NextID(id+1, 1000000)
				}
				tried[id] = true
				_, stderr, code := pct(t, node, "create", fmt.Sprint(id), debianTmpl, "--rootfs", "local:1")
				if code == 0 {
					got[i] = id
					return
				}
				// A create of the same id still running holds the config
				// lock: create_and_lock_config times out, as on Proxmox.
				if !strings.Contains(stderr, "already exists on node") && !strings.Contains(stderr, "- got timeout") {
					errs[i] = stderr
					return
				}
			}
			errs[i] = "gave up"
		}(i)
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, id := range got {
		if errs[i] != "" {
			t.Fatalf("worker %d: %s", i, errs[i])
		}
		if seen[id] {
			t.Fatalf("vmid %d handed out twice: %v", id, got)
		}
		seen[id] = true
	}
	list, _ := pvecfg.ReadVMList(n.VMListPath())
	if len(list.IDs) != workers {
		t.Fatalf(".vmlist has %d ids", len(list.IDs))
	}
	for _, id := range got {
		e, _ := list.Lookup(id)
		owner := &Node{Root: root, Name: e.Node}
		if _, err := os.Stat(owner.ConfPath(id)); err != nil {
			t.Errorf("vmid %d: %v", id, err)
		}
		if node := n.confNode(id); node != e.Node {
			t.Errorf("vmid %d config on %q, .vmlist says %q", id, node, e.Node)
		}
	}
	// The same vmid from both nodes at once: exactly one wins.
	var wins, lost int
	var mu sync.Mutex
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, stderr, code := pct(t, nodes[i%2], "create", "500", debianTmpl, "--rootfs", "local:1")
			mu.Lock()
			defer mu.Unlock()
			if code == 0 {
				wins++
			} else if regexp.MustCompile(`^(trying to acquire lock\.\.\.( OK\n)?)?(unable to create CT 500 - )?(CT 500 already exists on node 'pve2?'\n|can't lock file)`).MatchString(stderr) {
				lost++
			} else {
				t.Errorf("unexpected: %q", stderr)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 || lost != workers-1 {
		t.Errorf("wins %d lost %d", wins, lost)
	}
}

// create --start 1 through stop/shutdown/destroy with real LXC.
func TestPctCreateStartLifecycle(t *testing.T) {
	n, root := initNode(t)
	t.Cleanup(func() {
		pct(t, n, "stop", "130")
		pct(t, n, "destroy", "130", "--force")
	})
	if _, stderr, code := pct(t, n, "create", "130", debianTmpl, "--unprivileged", "0", "--rootfs", "local:1",
		"--memory", "64", "--entrypoint", "/bin/sleep 1000", "--start", "1"); code != 0 {
		t.Fatalf("create --start: %s", stderr)
	}
	stdout, _, _ := pct(t, n, "status", "130", "--verbose")
	m := regexp.MustCompile(`(?m)^pid: (\d+)$`).FindStringSubmatch(stdout)
	if m == nil || !strings.Contains(stdout, "status: running\n") {
		t.Fatalf("status --verbose:\n%s", stdout)
	}
	if cmdline, _ := os.ReadFile("/proc/" + m[1] + "/cmdline"); string(cmdline) != "/bin/sleep\x001000\x00" {
		t.Errorf("init cmdline %q", cmdline)
	}
	if stdout, _, _ := pct(t, n, "list"); !strings.Contains(stdout, "130        running                 CT130") {
		t.Errorf("list:\n%s", stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "130"}, "CT 130 already running\n"},
		{[]string{"destroy", "130"}, "unable to destroy CT 130 - container is running\n"},
		{[]string{"set", "130", "--lock", "backup"}, ""},
		{[]string{"stop", "130"}, "CT is locked (backup)\n"},
		{[]string{"unlock", "130"}, ""},
	} {
		_, stderr, code := pct(t, n, tc.args...)
		if stderr != tc.want || (code == 0) != (tc.want == "") {
			t.Errorf("%v: %d %q want %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, stderr, code := pct(t, n, "exec", "130", "--", "sh", "-c", "exit 4"); code != 4 || stderr != "" {
		t.Errorf("exec status %d %q", code, stderr)
	}
	// sleep ignores the halt signal: shutdown times out, then --forceStop kills.
	if _, stderr, code := pct(t, n, "shutdown", "130", "--timeout", "1"); code != 255 || stderr != "container did not stop\n" {
		t.Errorf("shutdown: %d %q", code, stderr)
	}
	if _, stderr, code := pct(t, n, "shutdown", "130", "--timeout", "1", "--forceStop", "1"); code != 0 {
		t.Errorf("shutdown --forceStop: %d %q", code, stderr)
	}
	if stdout, _, _ := pct(t, n, "status", "130"); stdout != "status: stopped\n" {
		t.Errorf("after shutdown: %q", stdout)
	}
	if _, stderr, code := pct(t, n, "destroy", "130"); code != 0 {
		t.Fatal(stderr)
	}
	assertNoTrace(t, n, root, 130)
}

// destroy removes only the container's own volumes: never bind mount
// sources, templates, or paths a hand-edited volume id points outside to
// (Proxmox refuses to parse such a volume name and the destroy fails).
func TestPctDestroyKeepsForeignPaths(t *testing.T) {
	n, root := initNode(t)
	victim := filepath.Join(root, "var/lib/vz/victim")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "memory: 64\nrootfs: local:../victim,size=1G\nmp0: " + victim + ",mp=/x\nmp1: " + debianTmpl + ",mp=/y\n"
	if err := os.WriteFile(n.ConfPath(140), []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := pct(t, n, "destroy", "140"); code != 255 || stderr != "unable to parse directory volume name '../victim'\n" {
		t.Fatalf("destroy with ../victim: %d %q", code, stderr)
	}
	// Another CT's volume, a bind mount and a template: all kept.
	other := filepath.Join(root, "var/lib/vz/images/141/vm-141-disk-0.raw")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	conf = "memory: 64\nrootfs: local:141/vm-141-disk-0.raw,size=1G\nmp0: " + victim + ",mp=/x\nmp1: " + debianTmpl + ",mp=/y\n"
	if err := os.WriteFile(n.ConfPath(140), []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := pct(t, n, "destroy", "140")
	if code != 0 || stderr != "" || stdout != "ignore deletion of 'local:141/vm-141-disk-0.raw', CT 140 isn't the owner!\n"+
		"ignore deletion of '"+debianTmpl+"', CT 140 isn't the owner!\n" {
		t.Fatalf("destroy: %d %q %q", code, stdout, stderr)
	}
	for _, p := range []string{victim, other, filepath.Join(root, "var/lib/vz/template/cache/debian-test.tar")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("destroy removed a foreign path: %v", err)
		}
	}
	if _, err := os.Stat(n.ConfPath(140)); err == nil {
		t.Error("config left")
	}
}
