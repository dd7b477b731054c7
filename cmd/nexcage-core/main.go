// Command nexcage-core is nexcage's full command line (docs/CLI.md). The
// front binary, nexcage (cmd/nexcage), carries out the verbs of
// runc/crun-routed containers itself (internal/fastpath) and execs this
// one, installed next to it, for everything else.
package main

import (
	"os"

	"github.com/nexcage/nexcage/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
