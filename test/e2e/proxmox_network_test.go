package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/testutil"
)

// The network tests need a Proxmox bridge with a DHCP server, which this
// machine has not and the tests must not add to the host. So a "node
// network" process (this test binary again, bridgeHolderEnv set) is
// started in new network and mount namespaces: it mounts that network
// namespace's sysfs on /sys (and cgroup2 again under it), creates vmbr0
// (198.51.100.1/24, a documentation range) with dnsmasq serving DHCP on it
// and vmbr1 without any server, and waits until its stdin closes. pct and
// the LXC tools nexcage runs go into its namespaces through nsenter, so
// pvesim's LXC puts the containers' veths on those bridges; nexcage and
// its supervisor stay in the host's (the kernel's process events, which
// give the supervisor the exit status, exist only there, as on a node).
// Everything goes with the holder.
//
// When pvesim gets a test bridge of its own (`pvesim init --bridge`),
// these tests can use it instead.
const bridgeHolderEnv = "NEXCAGE_E2E_BRIDGE_HOLDER"

func init() {
	dir := os.Getenv(bridgeHolderEnv)
	if dir == "" {
		return
	}
	fail := func(format string, a ...any) {
		fmt.Printf("error "+format+"\n", a...)
		os.Exit(1)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail("make / private: %v", err)
	}
	// A whole sysfs of this network namespace (a partial one would make
	// the kernel refuse an unprivileged container's own sysfs mount).
	_ = unix.Unmount("/sys", unix.MNT_DETACH)
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		fail("mount sysfs: %v", err)
	}
	if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		fail("mount cgroup2: %v", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "vmbr0", "type", "bridge"},
		{"addr", "add", "198.51.100.1/24", "dev", "vmbr0"},
		{"link", "set", "vmbr0", "up"},
		{"link", "add", "vmbr1", "type", "bridge"},
		{"link", "set", "vmbr1", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			fail("ip %v: %v: %s", args, err, out)
		}
	}
	dnsmasq := exec.Command("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--log-dhcp", "--log-facility="+filepath.Join(dir, "dnsmasq.log"),
		"--interface=vmbr0", "--bind-interfaces", "--user=root", "--group=root",
		"--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--dhcp-range=198.51.100.50,198.51.100.60,255.255.255.0,1h", "--dhcp-authoritative",
		"--dhcp-option=option:router,198.51.100.1", "--dhcp-option=option:dns-server,198.51.100.53")
	dnsmasq.Stderr = os.Stderr
	if err := dnsmasq.Start(); err != nil {
		fail("dnsmasq: %v", err)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = dnsmasq.Process.Kill()
	_ = dnsmasq.Wait()
	os.Exit(0)
}

// nodeNetwork starts the holder and returns the nsenter arguments that
// run a command in its namespaces.
func nodeNetwork(t *testing.T) (nsenter []string, leases string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), bridgeHolderEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node network holder: %v", err)
	}
	// Registered before the pve environment: it goes last, after every
	// container is gone.
	t.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("node network holder: %q", line)
	}
	p := strconv.Itoa(cmd.Process.Pid)
	return []string{"--net=/proc/" + p + "/ns/net", "--mount=/proc/" + p + "/ns/mnt", "--"}, filepath.Join(dir, "leases")
}

// newNetPveEnv is a pvesim node whose pct and LXC tools run in the node
// network's namespaces, with network settings added to the config. The
// node is PVE 8.4, where nexcage's init helper configures eth0 (on 9.1
// the node does, host-managed=1, which pvesim does not simulate yet).
func newNetPveEnv(t *testing.T, network map[string]any) (*pveEnv, string) {
	t.Helper()
	t.Setenv("PVESIM_PVE_VERSION", "8.4")
	nsenter, leases := nodeNetwork(t)
	e := newPveEnv(t, false, "")
	// The containers' LXC command sockets are abstract unix sockets, which
	// belong to a network namespace: whatever talks to LXC runs in the
	// node's. Wrappers named as the tools, first on nexcage's PATH.
	wrappers := testutil.ContainerTempDir(t)
	var err error
	for name, real := range map[string]string{"pct": e.pct, "lxc-info": "lxc-info", "lxc-attach": "lxc-attach"} {
		if !filepath.IsAbs(real) {
			if real, err = exec.LookPath(real); err != nil {
				t.Fatal(err)
			}
		}
		script := "#!/bin/sh\nexec nsenter " + strings.Join(nsenter, " ") + " " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(wrappers, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.pct = filepath.Join(wrappers, "pct")
	e.n.Env = append(e.n.Env, "PATH="+wrappers+":"+os.Getenv("PATH"))
	var cfg map[string]any
	data, err := os.ReadFile(e.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg["network"] = network
	cfg["proxmox"].(map[string]any)["pct_path"] = e.pct
	data, _ = json.Marshal(cfg)
	if err := os.WriteFile(e.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return e, leases
}

// netReport is what the test bundles print from inside the container.
const netReport = "ip addr show dev lo; ip addr show dev eth0; ip route; echo ---; cat /etc/resolv.conf; echo ---; grep CapBnd /proc/self/status"

var reCapBnd = regexp.MustCompile(`CapBnd:\s+([0-9a-f]+)`)

// checkNetReport checks lo and eth0 UP, eth0's address, the default route,
// resolv.conf and that the process lacks CAP_NET_ADMIN (the bundle's
// bounding set, runc's default, has not got it: the helper's is dropped).
func checkNetReport(t *testing.T, out string, addr *regexp.Regexp, resolv string) {
	t.Helper()
	parts := strings.Split(out, "---\n")
	if len(parts) != 3 {
		t.Fatalf("container output %q", out)
	}
	links := parts[0]
	if !regexp.MustCompile(`(?m)^1: lo: <[^>]*\bUP\b[^>]*>`).MatchString(links) || !strings.Contains(links, "inet 127.0.0.1/8") {
		t.Errorf("lo is not up with 127.0.0.1:\n%s", links)
	}
	if !regexp.MustCompile(`(?m)^\d+: eth0@\w+: <[^>]*\bUP\b[^>]*>`).MatchString(links) {
		t.Errorf("eth0 is not up:\n%s", links)
	}
	if !addr.MatchString(links) {
		t.Errorf("eth0 has no address matching %s:\n%s", addr, links)
	}
	if !strings.Contains(links, "default via 198.51.100.1 dev eth0") {
		t.Errorf("no default route via the bridge:\n%s", links)
	}
	if parts[1] != resolv {
		t.Errorf("/etc/resolv.conf %q, want %q", parts[1], resolv)
	}
	m := reCapBnd.FindStringSubmatch(parts[2])
	if m == nil {
		t.Fatalf("no CapBnd in %q", parts[2])
	}
	if v, _ := strconv.ParseUint(m[1], 16, 64); v&(1<<unix.CAP_NET_ADMIN) != 0 || v&(1<<unix.CAP_SETPCAP) != 0 {
		t.Errorf("the process kept the helper's network capabilities: CapBnd %s", m[1])
	}
}

// TestProxmoxNetworkDHCP: a bundle's container gets lo and eth0 up, an
// address from the bridge's DHCP server and resolv.conf from the config
// (network.dns_servers wins over the lease's servers), by nexcage's init
// helper as on PVE 8.4. (The lease's servers: netsetup's unit tests.)
func TestProxmoxNetworkDHCP(t *testing.T) {
	e, leases := newNetPveEnv(t, map[string]any{"bridge": "vmbr0", "dhcp_timeout": 60, "dns_servers": []string{"192.0.2.99", "2001:db8::99"}})
	bundle := testutil.BusyboxBundle(t, testutil.ContainerTempDir(t), []string{"sh", "-c", netReport}, func(s *specs.Spec) {
		s.Hostname = "nettest"
		s.Root.Readonly = false // the helper writes the file
	})
	r := e.n.Run("run", "--bundle", bundle, "lxc-net-dhcp")
	if r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	checkNetReport(t, r.Stdout, regexp.MustCompile(`inet 198\.51\.100\.(5\d|60)/24 .*eth0`), "# generated by nexcage\nnameserver 192.0.2.99\nnameserver 2001:db8::99\n")
	if b, _ := os.ReadFile(leases); !strings.Contains(string(b), " nettest ") {
		t.Errorf("the lease does not carry the container's hostname: %q", b)
	}
	e.assertNothingLeft("after run")
}

// TestProxmoxNetworkStatic: the ip/gw/nameservers annotations, on a
// read-only root (resolv.conf is a bind of a file nexcage wrote).
func TestProxmoxNetworkStatic(t *testing.T) {
	e, _ := newNetPveEnv(t, map[string]any{"bridge": "vmbr0", "dns_servers": []string{"192.0.2.99"}})
	bundle := testutil.BusyboxBundle(t, testutil.ContainerTempDir(t), []string{"sh", "-c", netReport}, func(s *specs.Spec) {
		s.Root.Readonly = true
		s.Annotations = map[string]string{
			"org.nexcage.proxmox.ip": "198.51.100.7/24", "org.nexcage.proxmox.gw": "198.51.100.1",
			"org.nexcage.proxmox.nameservers": "192.0.2.1, 192.0.2.2",
		}
	})
	r := e.n.Run("run", "--bundle", bundle, "lxc-net-static")
	if r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	checkNetReport(t, r.Stdout, regexp.MustCompile(`inet 198\.51\.100\.7/24 .*eth0`), "# generated by nexcage\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n")
	e.assertNothingLeft("after run")
}

// TestProxmoxNetworkNoLease: no DHCP server on the bridge fails create
// within network.dhcp_timeout, naming the interface and the bridge, and
// leaves nothing behind.
func TestProxmoxNetworkNoLease(t *testing.T) {
	e, _ := newNetPveEnv(t, map[string]any{"bridge": "vmbr1", "dhcp_timeout": 2})
	bundle := testutil.BusyboxBundle(t, testutil.ContainerTempDir(t), []string{"true"}, nil)
	e.n.Fails(8, "network: eth0 (bridge vmbr1): no DHCP lease within 2s", "create", "--bundle", bundle, "lxc-net-nolease")
	e.assertNothingLeft("after the failed create")
}

// TestProxmoxNetworkCapsOfExec: the capabilities the init keeps only for
// network setup reach neither the process nor what `nexcage exec` starts
// (lxc-attach bounds what it starts by the init's bounding set, which the
// helper reduced before it exec'd the process).
func TestProxmoxNetworkCapsOfExec(t *testing.T) {
	e := newPveEnv(t, false, "")
	bundle := testutil.BusyboxBundle(t, testutil.ContainerTempDir(t), []string{"sleep", "60"}, nil)
	e.n.CleanupContainer("lxc-net-exec")
	e.n.Must("create", "--bundle", bundle, "lxc-net-exec")
	e.n.Must("start", "lxc-net-exec")
	if s := e.n.Must("state", "lxc-net-exec"); !strings.Contains(s.Stdout, `"running"`) {
		t.Fatalf("state: %s", s)
	}
	for what, argv := range map[string][]string{
		"the process": {"exec", "lxc-net-exec", "grep", "CapBnd", "/proc/1/status"},
		"exec":        {"exec", "lxc-net-exec", "grep", "CapBnd", "/proc/self/status"},
	} {
		r := e.n.Must(argv...)
		m := reCapBnd.FindStringSubmatch(r.Stdout)
		if m == nil {
			t.Fatalf("%s: no CapBnd in %q", what, r.Stdout)
		}
		v, _ := strconv.ParseUint(m[1], 16, 64)
		for _, c := range []uint{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW, unix.CAP_SETPCAP} {
			if v&(1<<c) != 0 {
				t.Errorf("%s has capability %d, which the bundle's bounding set has not: CapBnd %s", what, c, m[1])
			}
		}
		if v&(1<<unix.CAP_KILL) == 0 {
			t.Errorf("%s lacks CAP_KILL of the bundle's bounding set: CapBnd %s", what, m[1])
		}
	}
}

// TestProxmoxNetworkLeaseRenewed: the helper's lease does not lapse when
// it has exec'd the process: the supervisor asks for it again (at once,
// to learn the lease time, then at half of each lease).
func TestProxmoxNetworkLeaseRenewed(t *testing.T) {
	e, leases := newNetPveEnv(t, map[string]any{"bridge": "vmbr0"})
	bundle := testutil.BusyboxBundle(t, testutil.ContainerTempDir(t), []string{"sleep", "60"}, nil)
	e.n.CleanupContainer("lxc-net-renew")
	e.n.Must("create", "--bundle", bundle, "lxc-net-renew")
	b, _ := os.ReadFile(leases)
	f := strings.Fields(string(b))
	if len(f) < 3 {
		t.Fatalf("no lease after create: %q", b)
	}
	ip := f[2]
	log := filepath.Join(filepath.Dir(leases), "dnsmasq.log")
	acks := func() int {
		b, _ := os.ReadFile(log)
		return strings.Count(string(b), "DHCPACK(vmbr0) "+ip+" ")
	}
	Eventually(t, time.Minute, "a second DHCPACK for "+ip, func() bool { return acks() >= 2 })
}
