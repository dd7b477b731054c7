package pvesim

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// pctList is `pct list`: this node's containers, sorted by vmid, in
// Proxmox's printf layout; nothing at all when there are none.
func (n *Node) pctList(c *call) error {
	entries, err := os.ReadDir(n.NodeLxcDir())
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var ids []int
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".conf") {
			continue
		}
		id, err := strconv.Atoi(strings.TrimSuffix(name, ".conf"))
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Ints(ids)
	const format = "%-10s %-10s %-12s %-20s\n"
	var b strings.Builder
	fmt.Fprintf(&b, format, "VMID", "Status", "Lock", "Name")
	for _, id := range ids {
		conf, err := n.loadConf(id)
		if err != nil {
			continue // vanished meanwhile
		}
		st, err := n.vmStatus(id, conf)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, format, strconv.Itoa(id), st["status"], st["lock"], st["name"])
	}
	fmt.Fprint(n.Stdout, b.String())
	return nil
}
