package pvesim

import (
	"time"

	"github.com/nexcage/nexcage/internal/pve"
)

// Stubs of the LXC half; each is deleted when its real implementation lands.

func (n *Node) startCT(vmid int, conf *pve.Config) error { panic("not implemented") }
func (n *Node) stopCT(vmid int) error                    { panic("not implemented") }
func (n *Node) shutdownCT(vmid int, timeout time.Duration, forceStop bool) error {
	panic("not implemented")
}
func (n *Node) ctStatus(vmid int) (running bool, pid int, err error) { panic("not implemented") }
func (n *Node) execCT(vmid int, argv []string) (int, error)          { panic("not implemented") }

// Pveam runs the pveam command line.
func (n *Node) Pveam(args []string) int { panic("not implemented") }

// Pvesh runs the pvesh command line.
func (n *Node) Pvesh(args []string) int { panic("not implemented") }
