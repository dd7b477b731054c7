package pvesim

// Networking of a simulated node, as on a real one (docs/PVESIM.md,
// "Networking"; ../shared/reference/proxmox-pct.md §9.7):
//
//   - the lxc.net.<N>.* block pve-container's update_lxc_config writes
//     for each net<N> (netBlocks);
//   - the test bridge: `pvesim bridge-up` creates a network namespace
//     owned by the caller with a bridge and a DHCP server (dnsmasq) in it
//     and records it for the node; `pvesim bridge-down` removes it all.
//     The host's own network namespace is never configured;
//   - the veth's attachment to its bridge, done by an LXC net up hook as
//     Proxmox's lxcnetaddbr does (runLxcNetAddBr); with a test bridge the
//     hook first moves the host end into the bridge's namespace. LXC
//     itself (monitor, command socket) stays in the host's namespace, so
//     lxc-info/lxc-attach work from the host as on a real node, also for
//     the product under test;
//   - the DHCP client Proxmox runs for `host-managed=1,ip=dhcp`
//     interfaces after the start (startHostManagedDHCP, killDHClients).

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// Paths and names of the network half; variables so tests can point them
// elsewhere.
var (
	// netnsRunDir is where `ip netns` keeps its named namespaces.
	netnsRunDir = "/run/netns"
	// dhclientPath and dhclientScript are what pve-container's
	// manage_dhclient runs (the host's ISC dhclient with LXC's script,
	// which resolves every path against $ROOTFS).
	dhclientPath   = "/sbin/dhclient"
	dhclientScript = "/usr/share/lxc/hooks/dhclient-script"
)

// lxcNetAddBrTool is the hidden pvesim command LXC runs as a veth's
// `lxc.net.<N>.script.up` hook (Proxmox: /usr/share/lxc/lxcnetaddbr).
const lxcNetAddBrTool = "lxcnetaddbr"

// Defaults of `pvesim bridge-up`. The address exists only inside the
// test's own network namespace.
const (
	defaultBridge     = "vmbr0"
	defaultBridgeCIDR = "10.99.0.1/24"
	// The DHCP pool is <network>+dhcpFirst ... <network>+dhcpLast.
	dhcpFirst = 100
	dhcpLast  = 199
)

// NetRecord is what `pvesim bridge-up` records for a node in
// var/lib/pvesim/nodes/<node>/network.json.
type NetRecord struct {
	Netns     string `json:"netns"`      // name under /run/netns
	Bridge    string `json:"bridge"`     // e.g. vmbr0
	Address   string `json:"address"`    // the bridge's address, CIDR
	DHCPStart string `json:"dhcp_start"` // first address dnsmasq hands out
	DHCPEnd   string `json:"dhcp_end"`   // last one
	// DNS are the name servers the DHCP server announces (option 6).
	DNS []string `json:"dns,omitempty"`
	// ExtraBridges are further bridges in the namespace, without address
	// or DHCP server.
	ExtraBridges []string `json:"extra_bridges,omitempty"`
}

// netnsPath is the bind mount that keeps a named namespace alive.
func netnsPath(name string) string { return filepath.Join(netnsRunDir, name) }

// NetDir is var/lib/pvesim/nodes/<node>: the node's network record,
// dnsmasq's pid, lease and log files.
func (n *Node) NetDir() string { return filepath.Join(n.Root, "var/lib/pvesim/nodes", n.Name) }

// NetRecordPath is the node's network record.
func (n *Node) NetRecordPath() string { return filepath.Join(n.NetDir(), "network.json") }

func (n *Node) dnsmasqPidFile() string { return filepath.Join(n.NetDir(), "dnsmasq.pid") }

// LoadNet returns the node's test bridge, nil when it has none.
func (n *Node) LoadNet() (*NetRecord, error) {
	data, err := os.ReadFile(n.NetRecordPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r NetRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); run 'pvesim bridge-down' and 'pvesim bridge-up' again", n.NetRecordPath(), err)
	}
	if r.Netns == "" || r.Bridge == "" {
		return nil, fmt.Errorf("%s is damaged (no netns or bridge); run 'pvesim bridge-down' and 'pvesim bridge-up' again", n.NetRecordPath())
	}
	return &r, nil
}

// knowsHostManaged reports whether the node's Proxmox VE has the net<N>
// option host-managed (pve-container >= 6.0.15, PVE 9.1, like the other
// OCI-era options).
func (n *Node) knowsHostManaged() bool { return n.PVEVersion().HasOCI() }

// errNoBridge is read_bridge_mtu's failure.
type errNoBridge struct{ bridge string }

func (e *errNoBridge) Error() string { return fmt.Sprintf("bridge '%s' does not exist", e.bridge) }

// bridgeMTU is pve-common's read_bridge_mtu: the MTU of the bridge, or
// `bridge '<br>' does not exist`. With a test bridge the device is looked
// up in the node's namespace (by netlink: /sys shows the host's devices);
// without one, as before, in the host's /sys, where only a real bridge
// counts.
func (n *Node) bridgeMTU(rec *NetRecord, bridge string) (int, error) {
	if bridge == "" || strings.ContainsAny(bridge, "/\x00") {
		return 0, &errNoBridge{bridge}
	}
	if rec == nil {
		if !fileExists(filepath.Join(sysClassNet, bridge, "bridge")) {
			return 0, &errNoBridge{bridge}
		}
		data, err := os.ReadFile(filepath.Join(sysClassNet, bridge, "mtu"))
		if err != nil {
			return 0, &errNoBridge{bridge}
		}
		mtu, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return 0, fmt.Errorf("unexpeted error: unable to parse mtu value '%s' as integer", strings.TrimSpace(string(data)))
		}
		return mtu, nil
	}
	out, err := exec.Command("ip", "-n", rec.Netns, "-j", "link", "show", "dev", bridge).Output()
	if err != nil {
		return 0, &errNoBridge{bridge}
	}
	var links []struct {
		Name string `json:"ifname"`
		MTU  int    `json:"mtu"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 || links[0].MTU <= 0 {
		return 0, fmt.Errorf("unable to read the MTU of bridge '%s' in netns '%s': %q", bridge, rec.Netns, out)
	}
	return links[0].MTU, nil
}

// netBlocks appends one lxc.net.<N>.* block per net<N>, as
// update_lxc_config does (keys in Perl's sort order: net0, net1, net10,
// net2 ...): type, veth.pair, hwaddr, name, mtu (the bridge's when unset;
// larger than the bridge's is an error), the net up hook that attaches
// the veth to its bridge, and only for `host-managed=1` (PVE 9.1) without
// `link_down=1` the static addresses and `flags = up`. Without
// `flags = up` LXC brings up neither the interface nor `lo`.
//
// Without a test bridge (`pvesim bridge-up`), a bridge missing on the host
// does not fail the start as on Proxmox: the interface is left out
// (`type = empty`) with a warning, so containers still run on hosts
// without vmbr0.
func (n *Node) netBlocks(vmid int, conf *pvecfg.Config, c *lxcConfig) error {
	rec, err := n.LoadNet()
	if err != nil {
		return err
	}
	keys := numberedKeys(conf, "net")
	sort.Strings(keys) // Perl's `sort keys`
	hostManagedKnown := n.knowsHostManaged()
	for _, k := range keys {
		v, _ := conf.Get(k)
		net, err := pvecfg.ParseProps(v, "")
		if err != nil {
			return fmt.Errorf("unable to parse %s: %w", k, err)
		}
		idx := strings.TrimPrefix(k, "net")
		prefix := "lxc.net." + idx + "."
		bridge, _ := net.Get("bridge")
		bridgeMTU, err := n.bridgeMTU(rec, bridge)
		var nb *errNoBridge
		if errors.As(err, &nb) && rec == nil {
			c.warnings = append(c.warnings, fmt.Sprintf("%s: bridge '%s' does not exist on this host - starting without this interface", k, bridge))
			c.add(prefix+"type", "empty")
			continue
		}
		if err != nil {
			return err
		}
		c.add(prefix+"type", "veth")
		c.add(prefix+"veth.pair", fmt.Sprintf("veth%di%s", vmid, idx))
		if v, ok := net.Get("hwaddr"); ok {
			c.add(prefix+"hwaddr", v)
		}
		if v, ok := net.Get("name"); ok {
			c.add(prefix+"name", v)
		}
		mtu := bridgeMTU
		if v, ok := net.Get("mtu"); ok && v != "" && v != "0" {
			if mtu, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("unable to parse %s: mtu '%s'", k, v)
			}
		}
		if mtu > bridgeMTU {
			return fmt.Errorf("%s: MTU size '%d' is bigger than bridge MTU '%d'", k, mtu, bridgeMTU)
		}
		c.add(prefix+"mtu", strconv.Itoa(mtu))
		linkDown := propBool(net, "link_down")
		hook, err := netUpHook(rec, bridge, linkDown)
		if err != nil {
			return err
		}
		c.add(prefix+"script.up", hook)
		if !linkDown && hostManagedKnown && propBool(net, "host-managed") {
			if ip, ok := net.Get("ip"); ok && ip != "dhcp" && ip != "manual" {
				c.add(prefix+"ipv4.address", ip)
			}
			if gw, ok := net.Get("gw"); ok {
				c.add(prefix+"ipv4.gateway", gw)
			}
			if ip6, ok := net.Get("ip6"); ok {
				if ip6 == "auto" {
					return fmt.Errorf("%s: SLAAC is not supported for host-managed network configuration", k)
				}
				if ip6 != "dhcp" && ip6 != "manual" {
					c.add(prefix+"ipv6.address", ip6)
				}
			}
			if gw6, ok := net.Get("gw6"); ok {
				c.add(prefix+"ipv6.gateway", gw6)
			}
			c.add(prefix+"flags", "up")
		}
	}
	return nil
}

// propBool is a Proxmox boolean property (1/on/yes/true).
func propBool(p pvecfg.Props, key string) bool {
	v, _ := p.Get(key)
	switch strings.ToLower(v) {
	case "1", "on", "yes", "true":
		return true
	}
	return false
}

// shellSafe matches words LXC can pass through its `sh -c` hook runner
// unquoted.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./+:@%=-]+$`)

// netUpHook is the lxc.net.<N>.script.up value: this binary as
// `pvesim lxcnetaddbr <netns|-> <bridge> up|down`. LXC appends
// `<name> net up veth <host veth>` and runs the line with `sh -c`.
func netUpHook(rec *NetRecord, bridge string, linkDown bool) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("unable to find the pvesim binary for the network hook: %w", err)
	}
	if !shellSafe.MatchString(exe) || !shellSafe.MatchString(bridge) {
		return "", fmt.Errorf("cannot use '%s' / bridge '%s' in an LXC hook line (only [A-Za-z0-9_./+:@%%=-] are passed unquoted); move pvesim to a plain path", exe, bridge)
	}
	ns := "-"
	if rec != nil {
		if !shellSafe.MatchString(rec.Netns) {
			return "", fmt.Errorf("cannot use netns '%s' in an LXC hook line", rec.Netns)
		}
		ns = rec.Netns
	}
	state := "up"
	if linkDown {
		state = "down"
	}
	return exe + " " + lxcNetAddBrTool + " " + ns + " " + bridge + " " + state, nil
}

var reVethName = regexp.MustCompile(`^veth\d+i\d+$`)

// runLxcNetAddBr is the net up hook (Proxmox's lxcnetaddbr and
// net_tap_plug): args are `<netns|-> <bridge> <up|down>` followed by what
// LXC appends, `<name> net up veth <host veth>`. With a netns it moves the
// host end there first. It attaches the host end to the bridge and sets
// it up; with link_down=1 it sets it down and leaves it unattached.
func runLxcNetAddBr(args []string, stderr io.Writer) int {
	if len(args) < 8 || args[4] != "net" || args[5] != "up" || args[6] != "veth" {
		fmt.Fprintf(stderr, "lxcnetaddbr: got unexpected arguments %q\n", args)
		return 1
	}
	ns, bridge, state, iface := args[0], args[1], args[2], args[len(args)-1]
	if !reVethName.MatchString(iface) {
		fmt.Fprintf(stderr, "lxcnetaddbr: got unexpected interface name '%s'\n", iface)
		return 1
	}
	var in []string // `ip` arguments selecting the namespace
	var steps [][]string
	if ns != "-" {
		if !reNetnsName.MatchString(ns) {
			fmt.Fprintf(stderr, "lxcnetaddbr: got unexpected netns name '%s'\n", ns)
			return 1
		}
		steps = append(steps, []string{"link", "set", "dev", iface, "netns", ns})
		in = []string{"-n", ns}
	}
	if state == "down" {
		steps = append(steps, append(in, "link", "set", "dev", iface, "down"))
	} else {
		steps = append(steps,
			append(append([]string{}, in...), "link", "set", "dev", iface, "master", bridge),
			append(append([]string{}, in...), "link", "set", "dev", iface, "up"))
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			fmt.Fprintf(stderr, "lxcnetaddbr: command 'ip %s' failed: %v: %s\n", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
			return 1
		}
	}
	return 0
}

// hostManagedDHCP lists the interface names of net<N> with
// `host-managed=1` and ip=dhcp (v4) / ip6=dhcp (v6), in vm_start's order.
func hostManagedDHCP(conf *pvecfg.Config) (v4, v6 []string) {
	keys := numberedKeys(conf, "net")
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := conf.Get(k)
		p, err := pvecfg.ParseProps(v, "")
		if err != nil || !propBool(p, "host-managed") {
			continue
		}
		name, _ := p.Get("name")
		if ip, _ := p.Get("ip"); ip == "dhcp" {
			v4 = append(v4, name)
		}
		if ip6, _ := p.Get("ip6"); ip6 == "dhcp" {
			v6 = append(v6, name)
		}
	}
	return v4, v6
}

// startHostManagedDHCP is the end of vm_start on PVE 9.1: for every
// host-managed DHCP interface the host runs dhclient in the container's
// network (and UTS) namespace through lxc-attach. `lxc-attach -s` implies
// -e (elevated privileges: LXC's lxc_attach.c), so the client keeps the
// host's capabilities and cgroup whatever the container drops
// (lxc.cap.drop of net_admin/net_raw does not stop it). A failure only
// warns; the container keeps running.
func (n *Node) startHostManagedDHCP(vmid int, conf *pvecfg.Config) {
	if !n.knowsHostManaged() {
		return
	}
	v4, v6 := hostManagedDHCP(conf)
	if len(v4)+len(v6) == 0 {
		return
	}
	_, pid, err := n.ctStatus(vmid)
	if err != nil || pid == 0 {
		n.warnf("WARN: DHCP failed - unable to get PID of CT %d\n", vmid)
		return
	}
	rootdir := "/proc/" + strconv.Itoa(pid) + "/root"
	for _, eth := range v4 {
		if err := n.manageDHClient(true, vmid, 4, eth, rootdir); err != nil {
			n.warnf("WARN: DHCP failed - %v\n", err)
		}
	}
	for _, eth := range v6 {
		if err := n.manageDHClient(true, vmid, 6, eth, rootdir); err != nil {
			n.warnf("WARN: DHCP failed - %v\n", err)
		}
	}
}

// dhclientFile is /var/lib/lxc/<vmid>/hook/dhclient<v>-<eth>.<ext>.
func (n *Node) dhclientFile(vmid, ipversion int, eth, ext string) string {
	return filepath.Join(n.ctDir(vmid), "hook", fmt.Sprintf("dhclient%d-%s.%s", ipversion, eth, ext))
}

// manageDHClient is pve-container's manage_dhclient: `lxc-attach -s
// NETWORK|UTSNAME -- dhclient -1|-r -4|-6 -pf ... -lf ... -e ROOTFS=...
// -sf dhclient-script <eth>` (without `aa-exec -p unconfined`: no
// AppArmor here). dhclient is the host's and runs in the host's mount
// namespace; LXC's script writes resolv.conf below $ROOTFS. Its output
// goes through a file, not a pipe, because the client daemonizes once it
// has a lease.
func (n *Node) manageDHClient(start bool, vmid, ipversion int, eth, rootdir string) error {
	hookDir := filepath.Join(n.ctDir(vmid), "hook")
	if err := os.MkdirAll(hookDir, 0o755); err != nil {
		return err
	}
	action := "-r"
	if start {
		action = "-1"
	}
	argv := []string{"lxc-attach", "-P", n.LxcPath(), "-n", strconv.Itoa(vmid), "-s", "NETWORK|UTSNAME", "--",
		dhclientPath, action, "-" + strconv.Itoa(ipversion),
		"-pf", n.dhclientFile(vmid, ipversion, eth, "pid"),
		"-lf", n.dhclientFile(vmid, ipversion, eth, "leases"),
		"-e", "ROOTFS=" + rootdir,
		"-sf", dhclientScript, eth}
	logPath := n.dhclientFile(vmid, ipversion, eth, "log")
	logFile, err := os.OpenFile(logPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = hostEnv()
	runErr := cmd.Run()
	if out, _ := os.ReadFile(logPath); len(out) > 0 {
		n.warnf("%s", out)
	}
	if runErr != nil {
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			return fmt.Errorf("command '%s' failed: exit code %d", strings.Join(argv, " "), ee.ExitCode())
		}
		return fmt.Errorf("command '%s' failed: %v", strings.Join(argv, " "), runErr)
	}
	return nil
}

// killDHClients is pve-container's kill_dhclients (vm_stop_cleanup): the
// DHCP clients of a container live outside its PID namespace and survive
// it, so they are killed by their pid files. Only processes that are a
// dhclient are signalled, in case a pid was reused.
func (n *Node) killDHClients(vmid int) {
	files, _ := filepath.Glob(filepath.Join(n.ctDir(vmid), "hook", "dhclient*-*.pid"))
	for _, f := range files {
		killPidFile(f, "dhclient")
	}
}

// killPidFile SIGKILLs the process named in pidFile if its command name
// is comm, waits (briefly) for it to go, and removes the file.
func killPidFile(pidFile, comm string) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err == nil && pid > 1 && procComm(pid) == comm {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
	_ = os.Remove(pidFile)
}

func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// waitGone polls until pid no longer exists (or is a zombie).
func waitGone(pid int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// State is the field after the parenthesised command name.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return
		}
		time.Sleep(pollInterval)
	}
}

// BridgeOptions are the arguments of `pvesim bridge-up`.
type BridgeOptions struct {
	Netns        string   // name of the namespace; "" picks pvesim-<random>
	Bridge       string   // "" is vmbr0
	Address      string   // the bridge's address, CIDR; "" is 10.99.0.1/24
	DNS          []string // name servers announced by DHCP (none by default)
	ExtraBridges []string // more bridges, without address or DHCP
}

var reNetnsName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
var reBridgeName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,14}$`)

// BridgeUp creates the node's test network: a new network namespace, in
// it `lo` up and a bridge with opts.Address, and dnsmasq serving DHCP on
// the bridge only (no DNS: --port=0; no config file, no resolv.conf, no
// hosts file of the host is read). It records the namespace so that the
// node's `pct start` puts the containers' veths on its bridges. Nothing
// is configured in the host's network namespace. On failure everything
// made so far is removed again.
func BridgeUp(n *Node, opts BridgeOptions) (rec *NetRecord, err error) {
	if err := checkRoot(n.Root); err != nil {
		return nil, err
	}
	if old, err := n.LoadNet(); err != nil {
		return nil, err
	} else if old != nil {
		return nil, fmt.Errorf("node '%s' already has a test bridge (netns '%s'); run 'pvesim bridge-down' first", n.Name, old.Netns)
	}
	if opts.Netns == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		opts.Netns = "pvesim-" + hex.EncodeToString(b[:])
	}
	if !reNetnsName.MatchString(opts.Netns) {
		return nil, fmt.Errorf("invalid netns name '%s' (letters, digits, '_', '.', '-'; at most 63)", opts.Netns)
	}
	if opts.Bridge == "" {
		opts.Bridge = defaultBridge
	}
	if !reBridgeName.MatchString(opts.Bridge) {
		return nil, fmt.Errorf("invalid bridge name '%s' (an interface name of at most 15 characters)", opts.Bridge)
	}
	if opts.Address == "" {
		opts.Address = defaultBridgeCIDR
	}
	pfx, first, last, err := bridgeSubnet(opts.Address)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{opts.Bridge: true}
	for _, b := range opts.ExtraBridges {
		if !reBridgeName.MatchString(b) || seen[b] {
			return nil, fmt.Errorf("invalid or repeated bridge name '%s'", b)
		}
		seen[b] = true
	}
	for _, d := range opts.DNS {
		if a, err := netip.ParseAddr(d); err != nil || !a.Is4() {
			return nil, fmt.Errorf("invalid name server '%s': want an IPv4 address", d)
		}
	}
	if err := os.MkdirAll(n.NetDir(), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(netnsPath(opts.Netns)); err == nil {
		return nil, fmt.Errorf("network namespace '%s' exists already; choose another name", opts.Netns)
	}
	if err := runIP("netns", "add", opts.Netns); err != nil {
		return nil, err
	}
	rec = &NetRecord{Netns: opts.Netns, Bridge: opts.Bridge, Address: opts.Address,
		DHCPStart: first.String(), DHCPEnd: last.String(), DNS: opts.DNS, ExtraBridges: opts.ExtraBridges}
	defer func() {
		if err != nil {
			killPidFile(n.dnsmasqPidFile(), "dnsmasq")
			_ = runIP("netns", "del", opts.Netns)
			_ = os.Remove(n.NetRecordPath())
		}
	}()
	ns := opts.Netns
	steps := [][]string{
		{"-n", ns, "link", "set", "dev", "lo", "up"},
		{"-n", ns, "link", "add", "name", opts.Bridge, "type", "bridge"},
		{"-n", ns, "addr", "add", opts.Address, "dev", opts.Bridge},
		{"-n", ns, "link", "set", "dev", opts.Bridge, "up"},
	}
	for _, b := range opts.ExtraBridges {
		steps = append(steps,
			[]string{"-n", ns, "link", "add", "name", b, "type", "bridge"},
			[]string{"-n", ns, "link", "set", "dev", b, "up"})
	}
	for _, args := range steps {
		if err := runIP(args...); err != nil {
			return nil, err
		}
	}
	mask := netip.AddrFrom4(maskOf(pfx.Bits()))
	dnsmasq := []string{"--net=" + netnsPath(ns), "--", "dnsmasq",
		"--conf-file=/dev/null", // no /etc/dnsmasq.conf of the host
		"--port=0",              // DHCP only, no DNS
		"--no-resolv", "--no-hosts",
		"--interface=" + opts.Bridge, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=" + first.String() + "," + last.String() + "," + mask.String() + ",1h",
		"--dhcp-authoritative",
		"--dhcp-leasefile=" + filepath.Join(n.NetDir(), "dnsmasq.leases"),
		"--pid-file=" + n.dnsmasqPidFile(),
		"--log-facility=" + filepath.Join(n.NetDir(), "dnsmasq.log"),
		"--log-dhcp",
	}
	if len(opts.DNS) > 0 {
		dnsmasq = append(dnsmasq, "--dhcp-option=option:dns-server,"+strings.Join(opts.DNS, ","))
	}
	// dnsmasq daemonizes once it is serving; its parent reports start-up
	// errors and exits with their status, so Run is enough to know.
	if out, err := exec.Command("nsenter", dnsmasq...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unable to start dnsmasq in netns '%s': %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(n.NetRecordPath(), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return rec, nil
}

// testNets are the IPv4 documentation ranges (RFC 5737), never routed,
// allowed for a test bridge next to the private ranges.
var testNets = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// bridgeSubnet checks the bridge address (a private or documentation
// IPv4 address with a prefix of /8 to /24 that is neither the network's
// nor its broadcast address nor inside the DHCP pool) and returns it and
// the pool.
func bridgeSubnet(cidr string) (netip.Prefix, netip.Addr, netip.Addr, error) {
	var zero netip.Addr
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil || !pfx.Addr().Is4() {
		return pfx, zero, zero, fmt.Errorf("invalid bridge address '%s': want an IPv4 CIDR such as %s", cidr, defaultBridgeCIDR)
	}
	allowed := pfx.Addr().IsPrivate()
	for _, t := range testNets {
		allowed = allowed || t.Contains(pfx.Addr()) && pfx.Bits() >= t.Bits()
	}
	if !allowed {
		return pfx, zero, zero, fmt.Errorf("bridge address '%s' is neither private (10/8, 172.16/12, 192.168/16) nor a documentation network (192.0.2/24, 198.51.100/24, 203.0.113/24)", cidr)
	}
	if pfx.Bits() < 8 || pfx.Bits() > 24 {
		return pfx, zero, zero, fmt.Errorf("bridge address '%s': the prefix must be /8 to /24", cidr)
	}
	base := pfx.Masked().Addr().As4()
	off := func(k uint32) netip.Addr {
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		v += k
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	first, last := off(dhcpFirst), off(dhcpLast)
	a := pfx.Addr()
	if a == pfx.Masked().Addr() || a.Compare(first) >= 0 && a.Compare(last) <= 0 || a == off(1<<(32-pfx.Bits())-1) {
		return pfx, zero, zero, fmt.Errorf("bridge address '%s' is the network or broadcast address or inside the DHCP pool %s-%s", cidr, first, last)
	}
	return pfx, first, last, nil
}

func maskOf(bits int) [4]byte {
	m := ^uint32(0) << (32 - bits)
	return [4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}

func runIP(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("command 'ip %s' failed: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BridgeDown removes the node's test network: the DHCP clients of its
// containers, dnsmasq and the namespace. While containers of the node
// run it refuses (deleting the namespace would take their interfaces
// away), unless force, which stops them first. A node without a test
// bridge is left as it is.
func BridgeDown(n *Node, force bool) error {
	rec, err := n.LoadNet()
	if err != nil {
		// A damaged record: still clean up what can be found.
		rec = nil
	}
	if rec == nil {
		_ = os.Remove(n.NetRecordPath())
		return err
	}
	running, err := n.runningCTs()
	if err != nil {
		return err
	}
	if len(running) > 0 && !force {
		return fmt.Errorf("containers %v still run on the bridge in netns '%s'; stop them first or use --force", running, rec.Netns)
	}
	for _, vmid := range running {
		if err := n.stopCT(vmid); err != nil {
			return fmt.Errorf("stopping CT %d: %w", vmid, err)
		}
	}
	dirs, _ := os.ReadDir(n.LxcPath())
	for _, d := range dirs {
		if vmid, err := strconv.Atoi(d.Name()); err == nil {
			n.killDHClients(vmid)
		}
	}
	killPidFile(n.dnsmasqPidFile(), "dnsmasq")
	if force {
		// Whatever else is left in the namespace must not keep it
		// alive.
		if out, err := exec.Command("ip", "netns", "pids", rec.Netns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					waitGone(pid, 5*time.Second)
				}
			}
		}
	}
	if _, err := os.Stat(netnsPath(rec.Netns)); err == nil {
		if err := runIP("netns", "del", rec.Netns); err != nil {
			return err
		}
	}
	return os.Remove(n.NetRecordPath())
}

// runningCTs lists the node's containers that are running.
func (n *Node) runningCTs() ([]int, error) {
	entries, err := os.ReadDir(n.NodeLxcDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		vmid, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".conf"))
		if err != nil || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		if running, _, err := n.ctStatus(vmid); err == nil && running {
			out = append(out, vmid)
		}
	}
	sort.Ints(out)
	return out, nil
}

// runBridge is `pvesim bridge-up [--netns NAME] [--bridge NAME]
// [--address CIDR] [--dns IP[,IP...]] [--extra-bridge NAME[,NAME...]]`
// (prints the record as one JSON line) and `pvesim bridge-down [--force]`.
// --dns and --extra-bridge may be repeated.
func runBridge(n *Node, tool string, args []string) int {
	if os.Geteuid() != 0 {
		fmt.Fprintf(n.Stderr, "pvesim %s: must run as root (network namespaces)\n", tool)
		return exitFailure
	}
	var opts BridgeOptions
	force := false
	valued := map[string]bool{"netns": true, "bridge": true, "address": true, "dns": true, "extra-bridge": true}
	for i := 0; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			fmt.Fprintf(n.Stderr, "pvesim %s: unexpected argument '%s'\n%s", tool, args[i], mainUsage)
			return exitUsage
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch {
		case tool == "bridge-down" && name == "force" && !hasVal:
			force = true
			continue
		case tool == "bridge-up" && valued[name]:
		default:
			fmt.Fprintf(n.Stderr, "pvesim %s: unknown option '%s'\n%s", tool, args[i], mainUsage)
			return exitUsage
		}
		if !hasVal {
			if i+1 >= len(args) {
				fmt.Fprintf(n.Stderr, "pvesim %s: --%s needs a value\n", tool, name)
				return exitUsage
			}
			i++
			val = args[i]
		}
		switch name {
		case "netns":
			opts.Netns = val
		case "bridge":
			opts.Bridge = val
		case "address":
			opts.Address = val
		case "dns":
			opts.DNS = append(opts.DNS, strings.Split(val, ",")...)
		case "extra-bridge":
			opts.ExtraBridges = append(opts.ExtraBridges, strings.Split(val, ",")...)
		}
	}
	if tool == "bridge-down" {
		if err := BridgeDown(n, force); err != nil {
			fmt.Fprintf(n.Stderr, "pvesim bridge-down: %v\n", err)
			return exitFailure
		}
		return 0
	}
	rec, err := BridgeUp(n, opts)
	if err != nil {
		fmt.Fprintf(n.Stderr, "pvesim bridge-up: %v\n", err)
		return exitFailure
	}
	data, _ := json.Marshal(rec)
	fmt.Fprintf(n.Stdout, "%s\n", data)
	return 0
}

// checkNetParams is what update_pct_config checks of the net<N> options
// given to `pct create` and `pct set`, in its order: an `mtu` needs the
// bridge (`bridge '<br>' does not exist`) and must not exceed the
// bridge's MTU, and `host-managed=1` (9.1) refuses `ip6=auto`. Without a
// test bridge, a bridge the host lacks is not checked, as at start (see
// netBlocks).
func (n *Node) checkNetParams(conf *pvecfg.Config) error {
	rec, err := n.LoadNet()
	if err != nil {
		return err
	}
	keys := numberedKeys(conf, "net")
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := conf.Get(k)
		p, err := pvecfg.ParseProps(v, "")
		if err != nil {
			return fmt.Errorf("unable to parse %s: %w", k, err)
		}
		if s, _ := p.Get("mtu"); s != "" && s != "0" {
			mtu, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("unable to parse %s: mtu '%s'", k, s)
			}
			bridge, _ := p.Get("bridge")
			bridgeMTU, err := n.bridgeMTU(rec, bridge)
			var nb *errNoBridge
			switch {
			case errors.As(err, &nb) && rec == nil:
			case err != nil:
				return dief("%v", err)
			case mtu > bridgeMTU:
				return dief("%s: MTU size '%d' is bigger than bridge MTU '%d'", k, mtu, bridgeMTU)
			}
		}
		if ip6, _ := p.Get("ip6"); ip6 == "auto" && n.knowsHostManaged() && !propBool(p, "link_down") && propBool(p, "host-managed") {
			return dief("%s: SLAAC is not supported for host-managed network configuration.", k)
		}
	}
	return nil
}
