package pvesim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// fakeHostBridge points sysClassNet at a temporary /sys/class/net with
// one bridge of the given MTU.
func fakeHostBridge(t *testing.T, name, mtu string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, name, "bridge"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, "mtu"), []byte(mtu+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := sysClassNet
	sysClassNet = dir
	t.Cleanup(func() { sysClassNet = old })
}

// netBlockOf runs netBlocks for a config holding the given net<N> lines.
func netBlockOf(t *testing.T, version string, nets map[string]string) (string, []string, error) {
	t.Helper()
	v, err := pvecfg.ParseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Root: t.TempDir(), Name: "pve", Version: v}
	conf := &pvecfg.Config{Options: map[string]string{}}
	for k, v := range nets {
		conf.Set(k, v)
	}
	c := &lxcConfig{}
	err = n.netBlocks(100, conf, c)
	return c.text.String(), c.warnings, err
}

func TestNetBlocks(t *testing.T) {
	fakeHostBridge(t, "vmbr0", "1500")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	up := "lxc.net.0.script.up = " + exe + " lxcnetaddbr - vmbr0 up\n"
	head := "lxc.net.0.type = veth\nlxc.net.0.veth.pair = veth100i0\nlxc.net.0.hwaddr = BC:24:11:00:00:01\nlxc.net.0.name = eth0\n"
	const net0 = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01"
	cases := []struct {
		name, version, net0 string
		want                string
	}{
		// §9.7: no flags = up without host-managed, so LXC brings
		// up neither eth0 nor lo; ip=dhcp has no effect.
		{"9.1 without host-managed", "9.1", net0 + ",ip=dhcp", head + "lxc.net.0.mtu = 1500\n" + up},
		{"8.4 without host-managed", "8.4", net0 + ",ip=10.99.0.5/24", head + "lxc.net.0.mtu = 1500\n" + up},
		{"9.1 host-managed dhcp", "9.1", net0 + ",host-managed=1,ip=dhcp",
			head + "lxc.net.0.mtu = 1500\n" + up + "lxc.net.0.flags = up\n"},
		{"9.1 host-managed static", "9.1", net0 + ",host-managed=1,ip=10.99.0.5/24,gw=10.99.0.1,ip6=fd00::5/64,gw6=fd00::1",
			head + "lxc.net.0.mtu = 1500\n" + up +
				"lxc.net.0.ipv4.address = 10.99.0.5/24\nlxc.net.0.ipv4.gateway = 10.99.0.1\n" +
				"lxc.net.0.ipv6.address = fd00::5/64\nlxc.net.0.ipv6.gateway = fd00::1\nlxc.net.0.flags = up\n"},
		{"9.1 host-managed manual", "9.1", net0 + ",host-managed=1,ip=manual,ip6=dhcp",
			head + "lxc.net.0.mtu = 1500\n" + up + "lxc.net.0.flags = up\n"},
		// Only 9.1 knows host-managed; an older node writes nothing
		// for it (pct itself refuses the option there).
		{"8.4 ignores host-managed", "8.4", net0 + ",host-managed=1,ip=10.99.0.5/24", head + "lxc.net.0.mtu = 1500\n" + up},
		{"9.0 ignores host-managed", "9.0", net0 + ",host-managed=1,ip=dhcp", head + "lxc.net.0.mtu = 1500\n" + up},
		{"link_down wins over host-managed", "9.1", net0 + ",host-managed=1,ip=dhcp,link_down=1",
			head + "lxc.net.0.mtu = 1500\nlxc.net.0.script.up = " + exe + " lxcnetaddbr - vmbr0 down\n"},
		{"smaller mtu", "9.1", net0 + ",mtu=1400", head + "lxc.net.0.mtu = 1400\n" + up},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, warns, err := netBlockOf(t, tc.version, map[string]string{"net0": tc.net0})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || len(warns) != 0 {
				t.Errorf("got\n%s(warnings %q)\nwant\n%s", got, warns, tc.want)
			}
		})
	}
}

func TestNetBlocksErrors(t *testing.T) {
	fakeHostBridge(t, "vmbr0", "1500")
	for _, tc := range []struct{ net0, want string }{
		{"name=eth0,bridge=vmbr0,mtu=9000", "net0: MTU size '9000' is bigger than bridge MTU '1500'"},
		{"name=eth0,bridge=vmbr0,host-managed=1,ip6=auto", "net0: SLAAC is not supported for host-managed network configuration"},
	} {
		_, _, err := netBlockOf(t, "9.1", map[string]string{"net0": tc.net0})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got error %v, want %q", tc.net0, err, tc.want)
		}
	}
}

// Without a test bridge a bridge the host lacks is left out with a
// warning (the simulator's documented difference), not an error.
func TestNetBlocksHostWithoutBridge(t *testing.T) {
	fakeHostBridge(t, "vmbr0", "1500")
	got, warns, err := netBlockOf(t, "9.1", map[string]string{"net0": "name=eth0,bridge=vmbr9,host-managed=1,ip=dhcp"})
	if err != nil {
		t.Fatal(err)
	}
	if got != "lxc.net.0.type = empty\n" {
		t.Errorf("got %q", got)
	}
	want := "net0: bridge 'vmbr9' does not exist on this host - starting without this interface"
	if len(warns) != 1 || warns[0] != want {
		t.Errorf("warnings %q, want %q", warns, want)
	}
}

// The blocks come in Perl's `sort keys` order and each names its veth
// veth<vmid>i<N>.
func TestNetBlocksOrderAndNames(t *testing.T) {
	fakeHostBridge(t, "vmbr0", "1500")
	nets := map[string]string{}
	for _, k := range []string{"net2", "net10", "net0", "net1"} {
		nets[k] = "name=e" + strings.TrimPrefix(k, "net") + ",bridge=vmbr0"
	}
	got, _, err := netBlockOf(t, "9.1", nets)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, ".veth.pair = ") {
			pairs = append(pairs, line)
		}
	}
	want := []string{
		"lxc.net.0.veth.pair = veth100i0", "lxc.net.1.veth.pair = veth100i1",
		"lxc.net.10.veth.pair = veth100i10", "lxc.net.2.veth.pair = veth100i2",
	}
	if strings.Join(pairs, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", pairs, want)
	}
}

func TestBridgeSubnet(t *testing.T) {
	_, first, last, err := bridgeSubnet("10.99.0.1/24")
	if err != nil || first.String() != "10.99.0.100" || last.String() != "10.99.0.199" {
		t.Errorf("10.99.0.1/24: %v %v %v", first, last, err)
	}
	if _, first, _, err := bridgeSubnet("198.51.100.1/24"); err != nil || first.String() != "198.51.100.100" {
		t.Errorf("198.51.100.1/24 (documentation range): %v %v", first, err)
	}
	for _, bad := range []string{"198.51.0.1/16", "8.8.8.1/24", "10.99.0.150/24", "10.99.0.0/24", "10.99.0.255/24", "10.99.0.1/25", "fd00::1/64", "10.99.0.1"} {
		if _, _, _, err := bridgeSubnet(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestLxcNetAddBrRefusesOddArguments(t *testing.T) {
	var b strings.Builder
	if code := runLxcNetAddBr([]string{"-", "vmbr0", "up", "100", "net", "up", "veth", "eth0;reboot"}, &b); code != 1 || !strings.Contains(b.String(), "unexpected interface name") {
		t.Errorf("exit %d, %q", code, b.String())
	}
	b.Reset()
	if code := runLxcNetAddBr([]string{"-", "vmbr0", "up"}, &b); code != 1 || !strings.Contains(b.String(), "unexpected arguments") {
		t.Errorf("exit %d, %q", code, b.String())
	}
	b.Reset()
	if code := runLxcNetAddBr([]string{"../x", "vmbr0", "up", "100", "net", "up", "veth", "veth100i0"}, &b); code != 1 || !strings.Contains(b.String(), "unexpected netns name") {
		t.Errorf("exit %d, %q", code, b.String())
	}
}

// pct create/set: update_pct_config's net checks.
func TestCheckNetParams(t *testing.T) {
	fakeHostBridge(t, "vmbr0", "1500")
	for _, tc := range []struct{ version, net0, want string }{
		{"9.1", "name=eth0,bridge=vmbr0,mtu=1500", ""},
		{"9.1", "name=eth0,bridge=vmbr0,mtu=9000", "net0: MTU size '9000' is bigger than bridge MTU '1500'"},
		// Without a test bridge a bridge missing on the host is not
		// checked (the start leaves the interface out instead).
		{"9.1", "name=eth0,bridge=vmbr9,mtu=9000", ""},
		{"9.1", "name=eth0,bridge=vmbr0,host-managed=1,ip6=auto", "net0: SLAAC is not supported for host-managed network configuration."},
		{"9.1", "name=eth0,bridge=vmbr0,host-managed=1,ip6=auto,link_down=1", ""},
		{"9.1", "name=eth0,bridge=vmbr0,ip6=auto", ""},
	} {
		v, _ := pvecfg.ParseVersion(tc.version)
		n := &Node{Root: t.TempDir(), Name: "pve", Version: v}
		conf := pvecfg.NewConfig()
		conf.Set("net0", tc.net0)
		err := n.checkNetParams(conf)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s %s: got %q, want %q", tc.version, tc.net0, got, tc.want)
		}
	}
}
