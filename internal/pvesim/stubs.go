package pvesim

// Stubs of the LXC half; each is deleted when its real implementation lands.

// Pveam runs the pveam command line.
func (n *Node) Pveam(args []string) int { panic("not implemented") }

// Pvesh runs the pvesh command line.
func (n *Node) Pvesh(args []string) int { panic("not implemented") }
