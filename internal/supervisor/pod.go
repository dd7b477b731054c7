package supervisor

import (
	"fmt"
	"os"

	"github.com/nexcage/nexcage/internal/netsetup"
)

// PodNet is the CNI interface a Kubernetes pod's sandbox container took
// over (an LXC phys interface): Link is its name on the host, IfName
// its name in the pod's network namespace Netns. All empty for any
// other container.
type PodNet struct {
	Netns, IfName, Link string
}

// givePodInterfaceBack puts the pod's CNI interface back into the pod's
// network namespace once LXC has returned it to the host: containerd
// runs CNI's DEL there right after the sandbox's task (this supervisor)
// exits, so it must find the interface under its CNI name.
func (s *sup) givePodInterfaceBack() {
	p := s.o.Pod
	if p.Netns == "" || p.Link == "" || p.IfName == "" {
		return
	}
	if err := netsetup.GivePodInterfaceBack(p.Netns, p.IfName, p.Link); err != nil {
		fmt.Fprintf(os.Stderr, "nexcage: the pod's network interface %s could not be given back to %s: %v\n", p.Link, p.Netns, err)
	}
}
