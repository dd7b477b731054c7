// Package netsetup configures a container's network from inside it: it
// brings up lo and the container's interfaces and gives them a static
// address or one leased by DHCP, and writes /etc/resolv.conf. nexcage's
// init helper (internal/inithelper) runs it as root in the container's
// namespaces before it answers `ready`, because a Proxmox container with
// `ostype: unmanaged` gets a veth that nobody brings up (proxmox-pct.md
// §9.7). On PVE 9.1 with `host-managed=1` the node configures the
// interface itself; then netsetup only waits until it has.
//
// Links, addresses and routes go through github.com/vishvananda/netlink;
// the DHCP client is github.com/insomniacslk/dhcp (nclient4).
package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Interface modes.
const (
	// ModeDHCP: bring the link up and take an IPv4 lease.
	ModeDHCP = "dhcp"
	// ModeStatic: bring the link up with Address and, when set, a
	// default route via Gateway.
	ModeStatic = "static"
	// ModeNode: the node configures the link (PVE 9.1 host-managed=1);
	// wait until it is up with an IPv4 address.
	ModeNode = "node"
)

// DefaultTimeout bounds the whole setup when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// ResolvConf is the resolver file inside the container.
const ResolvConf = "/etc/resolv.conf"

// Config is what the init helper gets from the supervisor (one optional
// field of the init protocol's process message).
type Config struct {
	Interfaces []Interface `json:"interfaces,omitempty"`
	// Nameservers, when not empty, go to ResolvPath instead of the DNS
	// servers of a DHCP lease.
	Nameservers []string `json:"nameservers,omitempty"`
	// ResolvPath is the file to write the nameservers to ("" = write
	// none: the bundle mounts its own, or nexcage bound a file there).
	ResolvPath string `json:"resolv_path,omitempty"`
	// Hostname is sent in DHCP requests (option 12).
	Hostname string `json:"hostname,omitempty"`
	// Timeout bounds the whole setup (every lease or wait); 0 means
	// DefaultTimeout.
	Timeout time.Duration `json:"timeout,omitempty"`
	// DropCaps are capabilities (of NetCaps) the container's init got
	// only for network setup (the bundle's bounding set lacks them):
	// Apply drops them from the calling thread's sets when it is done.
	DropCaps []string `json:"drop_caps,omitempty"`
}

// Interface is one network interface of the container.
type Interface struct {
	Name    string `json:"name"`             // e.g. eth0
	Bridge  string `json:"bridge,omitempty"` // the host bridge, for messages
	Mode    string `json:"mode"`             // ModeDHCP, ModeStatic or ModeNode
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// Result is what Apply did.
type Result struct {
	// Addresses are the IPv4 addresses by interface name.
	Addresses map[string]netip.Prefix
	// Nameservers written to ResolvPath (none when nothing was written).
	Nameservers []string
	// Missing are the interfaces the container does not have. A real node
	// fails the start when it cannot create a netN's veth, so they occur
	// only on a simulated node started without the bridge (pvesim, which
	// warns): there is nothing to configure.
	Missing []string `json:",omitempty"`
}

// Validate checks c strictly; Apply calls it first.
func (c *Config) Validate() error {
	seen := map[string]bool{}
	for i, ifc := range c.Interfaces {
		field := fmt.Sprintf("interfaces[%d]", i)
		if !validIfName(ifc.Name) {
			return fmt.Errorf("%s: %q is not a network interface name", field, ifc.Name)
		}
		if ifc.Name == "lo" || seen[ifc.Name] {
			return fmt.Errorf("%s: interface %s given twice", field, ifc.Name)
		}
		seen[ifc.Name] = true
		switch ifc.Mode {
		case ModeDHCP, ModeNode:
			if ifc.Address != "" || ifc.Gateway != "" {
				return fmt.Errorf("%s (%s): address and gateway are only for mode %s", field, ifc.Name, ModeStatic)
			}
		case ModeStatic:
			p, err := ParseAddress(ifc.Address)
			if err != nil {
				return fmt.Errorf("%s (%s): %w", field, ifc.Name, err)
			}
			if ifc.Gateway != "" {
				if err := CheckGateway(p, ifc.Gateway); err != nil {
					return fmt.Errorf("%s (%s): %w", field, ifc.Name, err)
				}
			}
		default:
			return fmt.Errorf("%s (%s): unknown mode %q (dhcp, static or node)", field, ifc.Name, ifc.Mode)
		}
	}
	for i, s := range c.Nameservers {
		if _, err := ParseNameserver(s); err != nil {
			return fmt.Errorf("nameservers[%d]: %w", i, err)
		}
	}
	if c.ResolvPath != "" && !strings.HasPrefix(c.ResolvPath, "/") {
		return fmt.Errorf("resolv_path %q is not absolute", c.ResolvPath)
	}
	for _, n := range c.DropCaps {
		if _, ok := netCaps[n]; !ok {
			return fmt.Errorf("drop_caps: %q is not one of %v", n, NetCaps())
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout %v is negative", c.Timeout)
	}
	return nil
}

// ParseAddress parses a static IPv4 address with its prefix length
// ("10.0.0.5/24"): a host address, not the network's or its broadcast.
func ParseAddress(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not an address with a prefix length (e.g. 10.0.0.5/24)", s)
	}
	a := p.Addr()
	if !a.Is4() {
		return p, fmt.Errorf("%q is not an IPv4 address (only IPv4 is configured)", s)
	}
	if p.Bits() == 0 || !a.IsGlobalUnicast() {
		return p, fmt.Errorf("%q is not a unicast host address", s)
	}
	if p.Bits() < 31 {
		if a == p.Masked().Addr() {
			return p, fmt.Errorf("%q is the network address of its subnet, not a host address", s)
		}
		if a == broadcast(p) {
			return p, fmt.Errorf("%q is the broadcast address of its subnet, not a host address", s)
		}
	}
	return p, nil
}

// CheckGateway checks that gw is an IPv4 unicast address inside the
// subnet of addr (the kernel cannot route to it otherwise) and not addr
// itself.
func CheckGateway(addr netip.Prefix, gw string) error {
	g, err := netip.ParseAddr(gw)
	if err != nil || !g.Is4() || g.Zone() != "" {
		return fmt.Errorf("gateway %q is not an IPv4 address", gw)
	}
	if !g.IsGlobalUnicast() {
		return fmt.Errorf("gateway %q is not a unicast address", gw)
	}
	if !addr.Masked().Contains(g) {
		return fmt.Errorf("gateway %s is not in the subnet %s of the address", gw, addr.Masked())
	}
	if g == addr.Addr() {
		return fmt.Errorf("gateway %s is the container's own address", gw)
	}
	return nil
}

// ParseNameserver checks one DNS server address (IPv4 or IPv6, no zone).
func ParseNameserver(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return a, fmt.Errorf("%q is not an IP address", s)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return a, fmt.Errorf("%q cannot be a DNS server", s)
	}
	return a, nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validIfName is a Linux interface name: 1-15 bytes, no '/', ':' or blanks.
func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '/' || r == ':' || r >= 0x7f
	})
}

// Apply configures the network of the network namespace it runs in: lo
// up, then every interface, then the resolver file, and drops
// c.DropCaps. It is bounded by c.Timeout. Errors say which interface
// (and bridge) failed and why. It must run on the thread that will exec
// (capabilities are per thread).
func Apply(ctx context.Context, c *Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("network: bad configuration: %w", err)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := &Result{Addresses: map[string]netip.Prefix{}}
	if err := linkUp("lo"); err != nil {
		return nil, fmt.Errorf("network: cannot bring up lo: %w", explain(err))
	}
	var leaseDNS, leaseSearch []string
	for _, ifc := range c.Interfaces {
		var (
			p   netip.Prefix
			err error
		)
		switch ifc.Mode {
		case ModeStatic:
			p, err = configureStatic(ifc)
		case ModeDHCP:
			var l *lease
			l, err = configureDHCP(ctx, ifc, c.Hostname, timeout)
			if l != nil {
				p = l.addr
				if leaseDNS == nil {
					leaseDNS, leaseSearch = l.dns, l.search
				}
			}
		case ModeNode:
			p, err = waitConfigured(ctx, ifc.Name, timeout)
		}
		if errors.Is(err, errNoLink) {
			res.Missing = append(res.Missing, ifc.Name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("network: %s%s: %w", ifc.Name, onBridge(ifc), explain(err))
		}
		res.Addresses[ifc.Name] = p
	}
	ns, search := c.Nameservers, []string(nil)
	if len(ns) == 0 {
		ns, search = leaseDNS, leaseSearch
	}
	if c.ResolvPath != "" && len(ns) > 0 {
		if err := WriteResolvConf(c.ResolvPath, ns, search); err != nil {
			return nil, fmt.Errorf("network: cannot write %s: %w", c.ResolvPath, err)
		}
		res.Nameservers = ns
	}
	if err := dropCaps(c.DropCaps); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	return res, nil
}

func onBridge(ifc Interface) string {
	if ifc.Bridge == "" {
		return ""
	}
	return " (bridge " + ifc.Bridge + ")"
}

// ResolvConfContent is the resolver file nexcage writes.
func ResolvConfContent(nameservers, search []string) []byte {
	var b strings.Builder
	b.WriteString("# generated by nexcage\n")
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	for _, n := range nameservers {
		b.WriteString("nameserver " + n + "\n")
	}
	return []byte(b.String())
}

// errNoAddress is returned when a node-managed link never got an address.
var errNoAddress = errors.New("no IPv4 address")
