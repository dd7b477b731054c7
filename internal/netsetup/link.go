package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkUp sets the link called name up.
func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return noLink(name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link up: %w", err)
	}
	return nil
}

func noLink(name string, err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("the container has no interface %s: %w", name, errNoLink)
	}
	return fmt.Errorf("find interface %s: %w", name, err)
}

// errNoLink marks an interface the node did not create.
var errNoLink = errors.New("no such interface")

// explain adds what to do to a permission error: the helper needs
// CAP_NET_ADMIN (addresses, routes) and CAP_NET_RAW (DHCP) in the
// container's network namespace.
func explain(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w (the init helper needs CAP_NET_ADMIN and CAP_NET_RAW in the container; check lxc.cap.drop/lxc.cap.keep)", err)
	}
	return err
}

// configureStatic brings the link up with the address and default route.
func configureStatic(ifc Interface) (netip.Prefix, error) {
	p, err := ParseAddress(ifc.Address)
	if err != nil {
		return p, err
	}
	l, err := netlink.LinkByName(ifc.Name)
	if err != nil {
		return p, noLink(ifc.Name, err)
	}
	var gw netip.Addr
	if ifc.Gateway != "" {
		gw = netip.MustParseAddr(ifc.Gateway)
	}
	return p, setAddress(l, p, gw)
}

// setAddress puts p (permanent) and a default route via gw (when valid)
// on the link and sets it up.
func setAddress(l netlink.Link, p netip.Prefix, gw netip.Addr) error {
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link up: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	if gw.IsValid() {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("add default route via %s: %w", gw, err)
		}
	}
	return nil
}

// lease is what configureDHCP took from a DHCP ACK.
type lease struct {
	addr   netip.Prefix
	gw     netip.Addr
	dns    []string
	search []string
}

// dhcpFirstTry is the first DHCP retransmission interval; it doubles
// with every try until ctx ends (RFC 2131 §4.1 backs off likewise).
const dhcpFirstTry = time.Second

// configureDHCP brings the link up, takes one IPv4 lease and applies its
// address, router and MTU. The address is permanent: nothing renews the
// lease once the helper has exec'd the process (docs/PROXMOX.md).
func configureDHCP(ctx context.Context, ifc Interface, hostname string, timeout time.Duration) (*lease, error) {
	l, err := netlink.LinkByName(ifc.Name)
	if err != nil {
		return nil, noLink(ifc.Name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set link up: %w", err)
	}
	c, err := nclient4.New(ifc.Name, nclient4.WithTimeout(dhcpFirstTry), nclient4.WithRetry(-1))
	if err != nil {
		return nil, fmt.Errorf("DHCP client: %w", err)
	}
	defer c.Close()
	var mods []dhcpv4.Modifier
	if hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	}
	mods = append(mods, dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList,
		dhcpv4.OptionInterfaceMTU))
	ls, err := c.Request(ctx, mods...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no DHCP lease within %v (is a DHCP server answering on the bridge?): %w", timeout, ctx.Err())
		}
		return nil, fmt.Errorf("no DHCP lease: %w", err)
	}
	ack := ls.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsGlobalUnicast() {
		return nil, fmt.Errorf("the DHCP server offered no usable address (%v)", ack.YourIPAddr)
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		if ones, size := m.Size(); size == 32 && ones > 0 {
			bits = ones
		}
	}
	res := &lease{addr: netip.PrefixFrom(ip, bits)}
	for _, r := range ack.Router() {
		if g, ok := netip.AddrFromSlice(r.To4()); ok && res.addr.Masked().Contains(g) {
			res.gw = g
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok && !a.IsUnspecified() {
			res.dns = append(res.dns, a.String())
		}
	}
	if s := ack.DomainSearch(); s != nil {
		res.search = append(res.search, s.Labels...)
	} else if d := ack.DomainName(); d != "" {
		res.search = []string{d}
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= 576 && int(mtu) < l.Attrs().MTU {
		_ = netlink.LinkSetMTU(l, int(mtu))
	}
	if err := setAddress(l, res.addr, res.gw); err != nil {
		return res, err
	}
	return res, nil
}

// waitPoll is how often waitConfigured looks at the link.
const waitPoll = 50 * time.Millisecond

// waitConfigured waits until the node has set the link up with an IPv4
// address (PVE 9.1 host-managed=1: LXC sets a static address before the
// init runs; `pct start` runs a DHCP client after it started).
func waitConfigured(ctx context.Context, name string, timeout time.Duration) (netip.Prefix, error) {
	for {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return netip.Prefix{}, noLink(name, err)
		}
		if l.Attrs().Flags&net.FlagUp != 0 {
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
			if err != nil {
				return netip.Prefix{}, fmt.Errorf("list addresses: %w", err)
			}
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip.IsGlobalUnicast() {
					ones, _ := a.Mask.Size()
					return netip.PrefixFrom(ip, ones), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("the node did not configure it (host-managed=1): %w within %v", errNoAddress, timeout)
		case <-time.After(waitPoll):
		}
	}
}

// WriteResolvConf writes the resolver file at path: a new file renamed
// over the old one (which also replaces a symlink such as systemd's
// stub-resolv.conf link, dangling in a container), or, when path is a
// mount point (rename gives EBUSY), its content in place.
func WriteResolvConf(path string, nameservers, search []string) error {
	data := ResolvConfContent(nameservers, search)
	// An image without /etc (a static binary FROM scratch) gets one.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	err := renameio.WriteFile(path, data, 0o644)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EXDEV) {
		f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if ferr != nil {
			return ferr
		}
		if _, ferr = f.Write(data); ferr != nil {
			_ = f.Close()
			return ferr
		}
		return f.Close()
	}
	return err
}
