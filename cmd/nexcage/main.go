// Command nexcage is an OCI runtime for Proxmox VE: it runs OCI bundles
// and templates as Proxmox LXC containers through pct and routes chosen
// container ids to runc or crun. See docs/CLI.md.
package main

import (
	"os"

	"github.com/nexcage/nexcage/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
