package netsetup

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// netCaps are the capabilities network setup needs, by their LXC names
// (lxc.cap.keep): addresses and routes, the DHCP client's packet
// socket, and setpcap to drop them all again afterwards.
var netCaps = map[string]uintptr{
	"net_admin": unix.CAP_NET_ADMIN,
	"net_raw":   unix.CAP_NET_RAW,
	"setpcap":   unix.CAP_SETPCAP,
}

// NetCaps lists the names of the capabilities network setup needs, in
// the order to keep them (lxc.cap.keep) and drop them (setpcap last).
func NetCaps() []string { return []string{"net_admin", "net_raw", "setpcap"} }

// dropCaps removes the named capabilities from the calling thread's
// bounding, inheritable, permitted and effective sets, so that a process
// it execs never gets them (its ambient set goes with the inheritable
// one). The init helper calls it on the thread that execs.
func dropCaps(names []string) error {
	if len(names) == 0 {
		return nil
	}
	var setpcap bool
	for _, n := range names {
		c := netCaps[n]
		if c == unix.CAP_SETPCAP {
			setpcap = true
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("drop %s from the bounding set: %w", n, err)
		}
	}
	if setpcap {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, unix.CAP_SETPCAP, 0, 0, 0); err != nil {
			return fmt.Errorf("drop setpcap from the bounding set: %w", err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, n := range names {
		c := netCaps[n]
		bit := uint32(1) << (c % 32)
		d := &data[c/32]
		d.Effective &^= bit
		d.Permitted &^= bit
		d.Inheritable &^= bit
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
