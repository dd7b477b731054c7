// Command pvesim is a simulated Proxmox VE node: installed as pct, pveam
// or pvesh (or run as `pvesim pct ...`) it behaves like those tools and
// runs containers with real LXC under $PVESIM_ROOT. See docs/PVESIM.md.
package main

import (
	"os"

	"github.com/nexcage/nexcage/internal/pvesim"
)

func main() {
	os.Exit(pvesim.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
