package netsetup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// These tests run Apply for real, in network namespaces they create: the
// "container" namespace has eth0, one end of a veth pair whose other end
// is in a "bridge" namespace, where dnsmasq serves DHCP. Apply runs in a
// child process (this test binary again, under `ip netns exec`), as the
// init helper runs in the container: the whole process in the namespace.
// Only documentation addresses (198.51.100.0/24) inside these namespaces
// are used.

const childEnv = "NETSETUP_TEST_CHILD_CONFIG"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(childMain(cfg))
	}
	if op := os.Getenv(podChildEnv); op != "" {
		os.Exit(podChildMain(op))
	}
	goleak.VerifyTestMain(m)
}

// childOut is what the child prints: Apply's result and the capability
// sets of its thread afterwards (/proc/thread-self/status).
type childOut struct {
	Result *Result
	Caps   map[string]string
}

// childMain applies the config and prints the result as JSON.
func childMain(cfg string) int {
	// Capabilities are per thread: Apply runs on the one the init
	// helper execs from, here this locked one.
	runtime.LockOSThread()
	var c Config
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	res, err := Apply(context.Background(), &c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := childOut{Result: res, Caps: map[string]string{}}
	status, _ := os.ReadFile("/proc/thread-self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, "Cap") {
			out.Caps[k] = strings.TrimSpace(v)
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

func randName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

// testNet is a container namespace with eth0 linked to srv0 in a bridge
// namespace (198.51.100.1/24).
type testNet struct {
	ct, br string
	dir    string
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests need root (network namespaces)")
	}
	n := &testNet{ct: randName("nxct-"), br: randName("nxbr-"), dir: t.TempDir()}
	run(t, "ip", "netns", "add", n.ct)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.ct).Run() })
	run(t, "ip", "netns", "add", n.br)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.br).Run() })
	// Created inside the namespaces: nothing appears on the host.
	run(t, "ip", "-n", n.ct, "link", "add", "eth0", "type", "veth", "peer", "name", "srv0", "netns", n.br)
	run(t, "ip", "-n", n.br, "addr", "add", "198.51.100.1/24", "dev", "srv0")
	run(t, "ip", "-n", n.br, "link", "set", "srv0", "up")
	run(t, "ip", "-n", n.br, "link", "set", "lo", "up")
	return n
}

// dnsmasq serves DHCP on srv0 until the test ends; it logs its DHCP
// messages to n.dir/dnsmasq.log.
func (n *testNet) dnsmasq(t *testing.T) string {
	t.Helper()
	leases := filepath.Join(n.dir, "leases")
	cmd := exec.Command("ip", "netns", "exec", n.br, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--log-dhcp", "--log-facility="+filepath.Join(n.dir, "dnsmasq.log"),
		"--port=0", "--interface=srv0", "--bind-interfaces", "--user=root", "--group=root",
		"--pid-file="+filepath.Join(n.dir, "dnsmasq.pid"), "--dhcp-leasefile="+leases,
		"--dhcp-range=198.51.100.50,198.51.100.60,255.255.255.0,1h", "--dhcp-authoritative",
		"--dhcp-option=option:router,198.51.100.1", "--dhcp-option=option:dns-server,198.51.100.53,198.51.100.54",
		"--dhcp-option=option:domain-search,lease.test")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq: %s", errb.String())
		}
	})
	return leases
}

// apply runs Apply in the container namespace.
func (n *testNet) apply(t *testing.T, c Config) (*Result, error) {
	t.Helper()
	out, err := n.applyCaps(t, c)
	if err != nil {
		return nil, err
	}
	return out.Result, nil
}

// applyCaps runs Apply in the container namespace and returns the
// capability sets after it too.
func (n *testNet) applyCaps(t *testing.T, c Config) (*childOut, error) {
	t.Helper()
	data, _ := json.Marshal(c)
	cmd := exec.Command("ip", "netns", "exec", n.ct, os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(data))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	var r childOut
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Result == nil {
		t.Fatalf("child output %q: %v", out.String(), err)
	}
	return &r, nil
}

type ipLink struct {
	Ifname   string   `json:"ifname"`
	Flags    []string `json:"flags"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// link reads an interface of the container namespace with `ip -j`.
func (n *testNet) link(t *testing.T, name string) (up bool, v4 []string) {
	t.Helper()
	var links []ipLink
	if err := json.Unmarshal([]byte(run(t, "ip", "-n", n.ct, "-j", "addr", "show", "dev", name)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j addr show %s: %v", name, err)
	}
	for _, f := range links[0].Flags {
		if f == "UP" {
			up = true
		}
	}
	for _, a := range links[0].AddrInfo {
		if a.Family == "inet" {
			v4 = append(v4, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
		}
	}
	return up, v4
}

func (n *testNet) defaultRoute(t *testing.T) string {
	return strings.TrimSpace(run(t, "ip", "-n", n.ct, "-4", "route", "show", "default"))
}

func TestApplyDHCP(t *testing.T) {
	n := newTestNet(t)
	leases := n.dnsmasq(t)
	resolv := filepath.Join(n.dir, "resolv.conf")
	res, err := n.apply(t, Config{
		Interfaces: []Interface{{Name: "eth0", Bridge: "testbr", Mode: ModeDHCP}},
		ResolvPath: resolv, Hostname: "nxtest", Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Addresses["eth0"]
	lo, hi := netip.MustParseAddr("198.51.100.50"), netip.MustParseAddr("198.51.100.60")
	if p.Bits() != 24 || p.Addr().Less(lo) || hi.Less(p.Addr()) {
		t.Fatalf("lease %v is not from the DHCP range", p)
	}
	if up, v4 := n.link(t, "eth0"); !up || len(v4) != 1 || v4[0] != p.String() {
		t.Errorf("eth0: up=%v addresses=%v, want up with %v", up, v4, p)
	}
	if up, _ := n.link(t, "lo"); !up {
		t.Errorf("lo is not up")
	}
	if r := n.defaultRoute(t); !strings.Contains(r, "via 198.51.100.1 dev eth0") {
		t.Errorf("default route %q", r)
	}
	want := "# generated by nexcage\nsearch lease.test\nnameserver 198.51.100.53\nnameserver 198.51.100.54\n"
	if b, _ := os.ReadFile(resolv); string(b) != want {
		t.Errorf("resolv.conf %q, want %q", b, want)
	}
	if b, _ := os.ReadFile(leases); !strings.Contains(string(b), p.Addr().String()+" nxtest") {
		t.Errorf("the lease does not carry the hostname: %q", b)
	}
}

func TestApplyDHCPConfiguredNameservers(t *testing.T) {
	n := newTestNet(t)
	n.dnsmasq(t)
	resolv := filepath.Join(n.dir, "resolv.conf")
	if _, err := n.apply(t, Config{
		Interfaces:  []Interface{{Name: "eth0", Mode: ModeDHCP}},
		Nameservers: []string{"192.0.2.10"}, ResolvPath: resolv, Timeout: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(resolv); string(b) != "# generated by nexcage\nnameserver 192.0.2.10\n" {
		t.Errorf("resolv.conf %q: the configured nameservers must win over the lease's", b)
	}
}

func TestApplyStatic(t *testing.T) {
	n := newTestNet(t)
	resolv := filepath.Join(n.dir, "resolv.conf")
	res, err := n.apply(t, Config{
		Interfaces:  []Interface{{Name: "eth0", Mode: ModeStatic, Address: "198.51.100.7/24", Gateway: "198.51.100.1"}},
		Nameservers: []string{"198.51.100.53"}, ResolvPath: resolv, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Addresses["eth0"].String() != "198.51.100.7/24" {
		t.Errorf("result %v", res.Addresses)
	}
	if up, v4 := n.link(t, "eth0"); !up || len(v4) != 1 || v4[0] != "198.51.100.7/24" {
		t.Errorf("eth0: up=%v addresses=%v", up, v4)
	}
	if up, _ := n.link(t, "lo"); !up {
		t.Errorf("lo is not up")
	}
	if r := n.defaultRoute(t); !strings.Contains(r, "via 198.51.100.1 dev eth0") {
		t.Errorf("default route %q", r)
	}
	if b, _ := os.ReadFile(resolv); string(b) != "# generated by nexcage\nnameserver 198.51.100.53\n" {
		t.Errorf("resolv.conf %q", b)
	}
	// Applying again (a restarted container keeps nothing, but the
	// helper must not fail on what is already there) succeeds.
	if _, err := n.apply(t, Config{Interfaces: []Interface{{Name: "eth0", Mode: ModeStatic, Address: "198.51.100.7/24", Gateway: "198.51.100.1"}}}); err != nil {
		t.Errorf("second apply: %v", err)
	}
}

func TestApplyDHCPTimeout(t *testing.T) {
	n := newTestNet(t) // no DHCP server
	resolv := filepath.Join(n.dir, "resolv.conf")
	_, err := n.apply(t, Config{
		Interfaces: []Interface{{Name: "eth0", Bridge: "vmbr9", Mode: ModeDHCP}},
		ResolvPath: resolv, Timeout: 2 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "network: eth0 (bridge vmbr9): no DHCP lease within 2s (is a DHCP server answering on the bridge?)") {
		t.Fatalf("got %v", err)
	}
	if _, serr := os.Stat(resolv); serr == nil {
		t.Errorf("resolv.conf written without a lease")
	}
}

func TestApplyNodeManaged(t *testing.T) {
	n := newTestNet(t)
	// Not configured by the node: a bounded wait, then a clear error.
	_, err := n.apply(t, Config{Interfaces: []Interface{{Name: "eth0", Bridge: "vmbr0", Mode: ModeNode}}, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "eth0 (bridge vmbr0): the node did not configure it (host-managed=1): no IPv4 address within 1s") {
		t.Fatalf("got %v", err)
	}
	// Configured as LXC does for host-managed=1: accepted as it is.
	run(t, "ip", "-n", n.ct, "addr", "add", "198.51.100.9/24", "dev", "eth0")
	run(t, "ip", "-n", n.ct, "link", "set", "eth0", "up")
	res, err := n.apply(t, Config{Interfaces: []Interface{{Name: "eth0", Mode: ModeNode}}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Addresses["eth0"].String() != "198.51.100.9/24" {
		t.Errorf("result %v", res.Addresses)
	}
	if up, _ := n.link(t, "lo"); !up {
		t.Errorf("lo is not up")
	}
}

func TestApplyMissingInterface(t *testing.T) {
	n := newTestNet(t)
	// Skipped: only a simulated node starts a container without its veth.
	res, err := n.apply(t, Config{Interfaces: []Interface{{Name: "eth1", Bridge: "vmbr1", Mode: ModeDHCP}}, Timeout: time.Second})
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != "eth1" {
		t.Fatalf("got %+v %v", res, err)
	}
	if up, _ := n.link(t, "lo"); !up {
		t.Errorf("lo is not up")
	}
	// The same for a node-managed one.
	res, err = n.apply(t, Config{Interfaces: []Interface{{Name: "eth1", Bridge: "vmbr1", Mode: ModeNode}}, Timeout: time.Second})
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != "eth1" {
		t.Fatalf("node-managed: got %+v %v", res, err)
	}
}

// capBit reports whether capability c is in the hex set s.
func capBit(t *testing.T, s string, c uint) bool {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("capability set %q: %v", s, err)
	}
	return v&(1<<c) != 0
}

func TestApplyDropsCaps(t *testing.T) {
	n := newTestNet(t)
	out, err := n.applyCaps(t, Config{
		Interfaces: []Interface{{Name: "eth0", Mode: ModeStatic, Address: "198.51.100.7/24"}},
		DropCaps:   NetCaps(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{"CapBnd", "CapEff", "CapPrm", "CapInh"} {
		for name, c := range netCaps {
			if capBit(t, out.Caps[set], uint(c)) {
				t.Errorf("%s still has %s: %s", set, name, out.Caps[set])
			}
		}
	}
	// The rest stays: CAP_SYS_ADMIN (21) was in the test's sets.
	if !capBit(t, out.Caps["CapBnd"], 21) || !capBit(t, out.Caps["CapEff"], 21) {
		t.Errorf("other capabilities were dropped too: %v", out.Caps)
	}
	// Without DropCaps nothing is dropped.
	out, err = n.applyCaps(t, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !capBit(t, out.Caps["CapBnd"], 12) || !capBit(t, out.Caps["CapEff"], 12) {
		t.Errorf("net_admin dropped without DropCaps: %v", out.Caps)
	}
}

// TestKeepLeases: the supervisor's renewal, from outside the container's
// network namespace, gets the helper's lease acknowledged again.
func TestKeepLeases(t *testing.T) {
	n := newTestNet(t)
	n.dnsmasq(t)
	c := Config{Interfaces: []Interface{{Name: "eth0", Mode: ModeDHCP}}, Hostname: "nxtest", Timeout: time.Minute}
	res, err := n.apply(t, c)
	if err != nil {
		t.Fatal(err)
	}
	ip := res.Addresses["eth0"].Addr().String()
	acks := func() int {
		b, _ := os.ReadFile(filepath.Join(n.dir, "dnsmasq.log"))
		return strings.Count(string(b), "DHCPACK(srv0) "+ip+" ")
	}
	if acks() != 1 {
		t.Fatalf("dnsmasq log after the lease: %d acks of %s", acks(), ip)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var logged []string
	go func() {
		defer close(done)
		KeepLeases(ctx, "/var/run/netns/"+n.ct, &c, func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) })
	}()
	deadline := time.Now().Add(time.Minute)
	for acks() < 2 && time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("KeepLeases returned: %q", logged)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if acks() < 2 {
		b, _ := os.ReadFile(filepath.Join(n.dir, "dnsmasq.log"))
		t.Fatalf("the lease was not renewed (%q):\n%s", logged, b)
	}
	if b, _ := os.ReadFile(filepath.Join(n.dir, "dnsmasq.log")); !strings.Contains(string(b), "DHCPREQUEST(srv0) "+ip+" ") {
		t.Errorf("no REQUEST for %s in the dnsmasq log:\n%s", ip, b)
	}
	// No thread of this process was left in the container's namespace.
	var ct syscall.Stat_t
	if err := syscall.Stat("/var/run/netns/"+n.ct, &ct); err != nil {
		t.Fatal(err)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		var st syscall.Stat_t
		if err := syscall.Stat(task, &st); err == nil && st.Ino == ct.Ino && st.Dev == ct.Dev {
			t.Errorf("%s is in the container's network namespace", task)
		}
	}
}
