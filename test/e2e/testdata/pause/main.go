// Command pause is the CRI tests' sandbox ("pause") image: it holds the
// pod's namespaces, reaps orphans (it is PID 1 of the pod) and exits 0 on
// SIGINT or SIGTERM, as Kubernetes' pause does. Built static by the test.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
