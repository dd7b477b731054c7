// Command nexcage is an OCI runtime for Proxmox VE: it runs OCI bundles
// and templates as Proxmox LXC containers through pct and routes chosen
// container ids to runc or crun. See docs/CLI.md.
//
// This is the small front binary: a verb on a runc/crun-routed container
// becomes the runtime itself (internal/fastpath), at the cost of one exec
// of a binary that imports nothing heavy; everything else is handed, by
// exec as well, to the full command line, nexcage-core, installed in the
// same directory (docs/ARCHITECTURE.md).
//
// The Go runtime's start-up is part of every passthrough verb: it does
// not derive GOMAXPROCS from a cgroup CPU limit nor keep updating it
// (containermaxprocs, updatemaxprocs); the process lives for
// milliseconds and runs one goroutine's work.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/fastpath"
)

func main() {
	// crun's hybrid-cgroup helper (ocirun's hybrid.go) runs here, not
	// through nexcage-core: one exec less for whoever starts it.
	if len(os.Args) > 1 && os.Args[1] == ocirun.HelperVerb {
		os.Exit(ocirun.HelperMain(os.Args[2:]))
	}
	if code, handled := fastpath.Try(os.Args[1:]); handled {
		os.Exit(code)
	}
	os.Exit(fastpath.Delegate(os.Args))
}
