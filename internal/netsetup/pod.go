package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A Kubernetes pod on the Proxmox backend is one Proxmox container, and
// the pod's network is the one CNI configured in the sandbox's network
// namespace. The host takes the CNI interface out of that namespace
// (TakePodInterface) and gives it to the container as an LXC phys
// interface; moving a link between namespaces drops its addresses, so
// the init helper re-applies the ones read here (a static Interface).
// When the container stops, LXC returns the link to the host, and
// GivePodInterfaceBack puts it into the CNI namespace under its CNI name,
// where CNI's DEL finds and removes it.

// ReadPodInterface reads the IPv4 address and default route of ifName in
// the network namespace at nsPath, as a static Interface named ifName.
// It refuses what the init helper could not re-apply exactly: no or
// several IPv4 addresses, global IPv6 addresses, routes other than the
// address's own subnet and one default route.
func ReadPodInterface(nsPath, ifName string) (Interface, error) {
	ifc := Interface{Name: ifName, Mode: ModeStatic}
	h, closeNS, err := handleAt(nsPath)
	if err != nil {
		return ifc, err
	}
	defer closeNS()
	l, err := h.LinkByName(ifName)
	if err != nil {
		return ifc, fmt.Errorf("the pod's network namespace %s has no interface %s: %w", nsPath, ifName, err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return ifc, fmt.Errorf("cannot list the addresses of %s in %s: %w", ifName, nsPath, err)
	}
	var v4 []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		switch {
		case ip.Unmap().Is4():
			v4 = append(v4, netip.PrefixFrom(ip.Unmap(), ones))
		case ip.IsLinkLocalUnicast():
			// The kernel makes a new one inside the container.
		default:
			return ifc, fmt.Errorf("%s in %s has the IPv6 address %s: IPv6 pod networks are not carried into a Proxmox container yet", ifName, nsPath, ip)
		}
	}
	if len(v4) != 1 {
		return ifc, fmt.Errorf("%s in %s has %d IPv4 addresses (%v): a Proxmox pod takes over exactly one", ifName, nsPath, len(v4), v4)
	}
	ifc.Address = v4[0].String()
	if _, err := ParseAddress(ifc.Address); err != nil {
		return ifc, fmt.Errorf("%s in %s: %w", ifName, nsPath, err)
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return ifc, fmt.Errorf("cannot list the routes of %s in %s: %w", ifName, nsPath, err)
	}
	subnet := v4[0].Masked()
	for _, r := range routes {
		switch {
		case r.Dst == nil || (r.Dst.IP.IsUnspecified() && maskBits(r.Dst) == 0):
			gw, ok := netip.AddrFromSlice(r.Gw)
			if !ok || ifc.Gateway != "" {
				return ifc, fmt.Errorf("%s in %s: a default route %v that a Proxmox pod cannot carry over (one gateway in the subnet is)", ifName, nsPath, r)
			}
			ifc.Gateway = gw.Unmap().String()
			if err := CheckGateway(v4[0], ifc.Gateway); err != nil {
				return ifc, fmt.Errorf("%s in %s: %w", ifName, nsPath, err)
			}
		case r.Gw == nil && prefixOf(r.Dst) == subnet:
			// The address's own subnet: the kernel adds it again.
		default:
			return ifc, fmt.Errorf("%s in %s has the route %v: only the subnet's own route and one default route are carried into a Proxmox pod yet", ifName, nsPath, r)
		}
	}
	return ifc, nil
}

func maskBits(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

func prefixOf(n *net.IPNet) netip.Prefix {
	ip, _ := netip.AddrFromSlice(n.IP)
	return netip.PrefixFrom(ip.Unmap(), maskBits(n)).Masked()
}

// TakePodInterface moves ifName out of the network namespace at nsPath
// into the caller's, renamed tmpName (down, with no addresses once
// moved). On failure the interface stays in nsPath under its name.
func TakePodInterface(nsPath, ifName, tmpName string) error {
	if !validIfName(tmpName) {
		return fmt.Errorf("%q is not a network interface name", tmpName)
	}
	h, closeNS, err := handleAt(nsPath)
	if err != nil {
		return err
	}
	defer closeNS()
	self, err := netns.Get()
	if err != nil {
		return fmt.Errorf("cannot open this process's network namespace: %w", err)
	}
	defer self.Close()
	if _, err := netlink.LinkByName(tmpName); err == nil {
		return fmt.Errorf("an interface %s exists already on the host", tmpName)
	}
	l, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("the pod's network namespace %s has no interface %s: %w", nsPath, ifName, err)
	}
	if err := h.LinkSetDown(l); err != nil {
		return fmt.Errorf("cannot set %s in %s down: %w", ifName, nsPath, err)
	}
	if err := h.LinkSetName(l, tmpName); err != nil {
		_ = h.LinkSetUp(l)
		return fmt.Errorf("cannot rename %s in %s to %s: %w", ifName, nsPath, tmpName, err)
	}
	if err := h.LinkSetNsFd(l, int(self)); err != nil {
		_ = h.LinkSetName(l, ifName)
		_ = h.LinkSetUp(l)
		return fmt.Errorf("cannot move %s out of %s: %w", ifName, nsPath, err)
	}
	return nil
}

// GivePodInterfaceBack moves tmpName from the caller's network namespace
// into the one at nsPath, renamed ifName and up (as CNI left it; its
// addresses went with the move, which CNI's DEL does not need). It does
// nothing when the caller's namespace has no tmpName (still in the
// container, or given back already); it deletes the link when nsPath no
// longer exists (the pod's namespace is gone, so is CNI's use of it).
func GivePodInterfaceBack(nsPath, ifName, tmpName string) error {
	l, err := netlink.LinkByName(tmpName)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot look up %s: %w", tmpName, err)
	}
	target, err := netns.GetFromPath(nsPath)
	if err == nil && !isNetns(int(target)) {
		// CNI's namespace was unmounted: its file is left, empty.
		target.Close()
		err = os.ErrNotExist
	}
	if errors.Is(err, os.ErrNotExist) {
		if derr := netlink.LinkDel(l); derr != nil {
			return fmt.Errorf("the pod's network namespace %s is gone and %s cannot be deleted: %w", nsPath, tmpName, derr)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot open the pod's network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	_ = netlink.LinkSetDown(l)
	if err := netlink.LinkSetNsFd(l, int(target)); err != nil {
		return fmt.Errorf("cannot move %s back into %s: %w", tmpName, nsPath, err)
	}
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return fmt.Errorf("cannot open netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	back, err := h.LinkByName(tmpName)
	if err != nil {
		return fmt.Errorf("%s vanished on its way back into %s: %w", tmpName, nsPath, err)
	}
	if err := h.LinkSetName(back, ifName); err != nil {
		return fmt.Errorf("cannot rename %s to %s in %s: %w", tmpName, ifName, nsPath, err)
	}
	if err := h.LinkSetUp(back); err != nil {
		return fmt.Errorf("cannot set %s up in %s: %w", ifName, nsPath, err)
	}
	return nil
}

// handleAt opens a netlink handle in the network namespace at nsPath.
func handleAt(nsPath string) (*netlink.Handle, func(), error) {
	// The handle's sockets are made in the target namespace by a locked
	// thread that switches to it and back.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open the pod's network namespace %s: %w", nsPath, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("cannot open netlink in %s: %w", nsPath, err)
	}
	return h, func() { h.Close(); ns.Close() }, nil
}

// isNetns reports whether fd is a namespace file (nsfs).
func isNetns(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && st.Type == unix.NSFS_MAGIC
}
