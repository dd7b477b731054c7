// Command pvesim is a simulated Proxmox VE 8.4, 9.0 or 9.1 node: installed
// as pct, pveam, pvesh or pveversion (or run as `pvesim pct ...`) it
// behaves like those tools and runs containers with real LXC under
// $PVESIM_ROOT. It shares no code with nexcage (see deps_test.go). See
// docs/PVESIM.md.
package main

import (
	"os"

	"github.com/nexcage/nexcage/internal/pvesim"
)

func main() {
	os.Exit(pvesim.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
