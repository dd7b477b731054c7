// Command execfront is the cheapest possible Go front for a runtime: it
// execs its first argument with the rest, doing nothing else. The bench
// (section 1 and 2) runs runc through it to measure the floor that any
// front written in Go, nexcage's included, adds to each verb: the start
// of a Go process and one more execve, on the same host in the same run.
//
// It sets the same start-up GODEBUG settings as cmd/nexcage.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: execfront <program> [args...]")
		os.Exit(2)
	}
	err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "execfront: %s: %v\n", os.Args[1], err)
	os.Exit(127)
}
