package pvesim

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// netBlocks writes one lxc.net.<N>.* block per net<N> of conf, at the
// place update_lxc_config writes them (after lxc.init.cmd, before the
// env lines).
//
// This is the block as it was before issue 12's networking work; the
// s3-network branch defines netBlocks (same signature) in network.go with
// the real content: when both are merged, delete this file.
func (n *Node) netBlocks(vmid int, conf *pvecfg.Config, c *lxcConfig) error {
	for _, k := range numberedKeys(conf, "net") {
		value, _ := conf.Get(k)
		net, err := pvecfg.ParseProps(value, "")
		if err != nil {
			return fmt.Errorf("unable to parse %s: %w", k, err)
		}
		idx := strings.TrimPrefix(k, "net")
		prefix := "lxc.net." + idx + "."
		bridge, _ := net.Get("bridge")
		if bridge == "" || !fileExists(filepath.Join(sysClassNet, bridge, "bridge")) {
			// Real Proxmox fails the start here; the simulator keeps
			// the container but without this interface.
			c.warnings = append(c.warnings, fmt.Sprintf("%s: bridge '%s' does not exist on this host - starting without this interface", k, bridge))
			c.add(prefix+"type", "empty")
			continue
		}
		c.add(prefix+"type", "veth")
		c.add(prefix+"veth.pair", fmt.Sprintf("veth%di%s", vmid, idx))
		c.add(prefix+"link", bridge)
		if v, ok := net.Get("hwaddr"); ok {
			c.add(prefix+"hwaddr", v)
		}
		if v, ok := net.Get("name"); ok {
			c.add(prefix+"name", v)
		}
		if v, ok := net.Get("mtu"); ok {
			c.add(prefix+"mtu", v)
		}
		if v, _ := net.Get("link_down"); v != "1" {
			c.add(prefix+"flags", "up")
		}
	}
	return nil
}
