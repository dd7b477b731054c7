package netsetup

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// renewRetry is the wait after a failed renewal.
const renewRetry = 30 * time.Second

// KeepLeases keeps the DHCP leases of c's ModeDHCP interfaces alive from
// outside the container, until ctx ends: the init helper took them, but
// it execs the process and leaves no DHCP client behind. It runs in the
// supervisor (host root), which lives as long as the container, and talks
// DHCP in the container's network namespace at nsPath (/proc/<pid>/ns/net):
// a REQUEST for the interface's current address (RFC 2131 INIT-REBOOT)
// right away, to learn the lease time, then at half of each lease. The
// address stays as the helper set it; a server that refuses (NAK) is
// reported through logf and asked again later. logf may be nil.
func KeepLeases(ctx context.Context, nsPath string, c *Config, logf func(format string, a ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var wg sync.WaitGroup
	for _, ifc := range c.Interfaces {
		if ifc.Mode != ModeDHCP {
			continue
		}
		wg.Add(1)
		go func(ifc Interface) {
			defer wg.Done()
			keepLease(ctx, nsPath, ifc.Name, c.Hostname, logf)
		}(ifc)
	}
	wg.Wait()
}

func keepLease(ctx context.Context, nsPath, name, hostname string, logf func(string, ...any)) {
	client, hw, ip, err := clientIn(nsPath, name)
	if err != nil {
		logf("DHCP renewal of %s: %v", name, err)
		return
	}
	defer client.Close()
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		lease, err := renew(ctx, client, hw, ip, hostname)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			logf("DHCP renewal of %s (%s): %v", name, ip, err)
			wait = renewRetry
			continue
		}
		wait = lease / 2
	}
}

// renew asks for ip again and returns the lease time granted.
func renew(ctx context.Context, c *nclient4.Client, hw net.HardwareAddr, ip net.IP, hostname string) (time.Duration, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
	}
	if hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	}
	req, err := dhcpv4.New(mods...)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, renewRetry)
	defer cancel()
	resp, err := c.SendAndRead(ctx, c.RemoteAddr(), req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	if err != nil {
		return 0, err
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return 0, fmt.Errorf("the DHCP server refused the address (NAK: %s)", resp.Message())
	}
	if !resp.YourIPAddr.Equal(ip) {
		return 0, fmt.Errorf("the DHCP server answered with another address, %s", resp.YourIPAddr)
	}
	lease := resp.IPAddressLeaseTime(time.Hour)
	if lease < 2*time.Second {
		lease = 2 * time.Second
	}
	return lease, nil
}

// clientIn opens a DHCP client on the interface name of the network
// namespace at nsPath and reads its hardware and IPv4 address. The
// sockets belong to that namespace; the thread that made them is left
// there only if it cannot go back, and then dies with its goroutine.
func clientIn(nsPath, name string) (*nclient4.Client, net.HardwareAddr, net.IP, error) {
	type result struct {
		c   *nclient4.Client
		hw  net.HardwareAddr
		ip  net.IP
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		r := result{}
		defer func() { ch <- r }()
		orig, err := netns.Get()
		if err != nil {
			r.err = err
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			r.err = fmt.Errorf("open %s: %w", nsPath, err)
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			r.err = fmt.Errorf("enter %s: %w", nsPath, err)
			runtime.UnlockOSThread()
			return
		}
		r.c, r.hw, r.ip, r.err = openClient(name)
		if err := netns.Set(orig); err != nil {
			// Stay locked: the goroutine's end terminates the thread.
			return
		}
		runtime.UnlockOSThread()
	}()
	r := <-ch
	return r.c, r.hw, r.ip, r.err
}

// openClient runs in the container's network namespace.
func openClient(name string) (*nclient4.Client, net.HardwareAddr, net.IP, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, nil, nil, noLink(name, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	var ip net.IP
	for _, a := range addrs {
		if a.IP.To4() != nil && a.IP.IsGlobalUnicast() {
			ip = a.IP.To4()
			break
		}
	}
	if ip == nil {
		return nil, nil, nil, fmt.Errorf("%s has no IPv4 address to renew", name)
	}
	c, err := nclient4.New(name, nclient4.WithTimeout(dhcpFirstTry), nclient4.WithRetry(-1))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("DHCP client on %s: %w", name, err)
	}
	return c, l.Attrs().HardwareAddr, ip, nil
}
