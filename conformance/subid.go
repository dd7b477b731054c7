package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// SuiteIDRanges are the host id ranges the suite's user namespace tests
// map (linux_uid_mappings: uids 1000-2999, gids 1000-3999). A Proxmox node
// runs a container with such a custom idmap only when the ranges are
// delegated to root in /etc/subuid and /etc/subgid (LXC maps through
// newuidmap/newgidmap), which Proxmox documents as the admin's step for a
// custom idmap. runc, as root, writes the maps itself and needs nothing.
const SuiteIDRanges = "root:1000:3000"

// nsEnv marks the harness process re-executed in its own mount namespace.
const nsEnv = "NEXCAGE_CONFORMANCE_MOUNTNS"

// InNodeNamespace re-executes the harness in a private mount namespace
// whose /etc/subuid and /etc/subgid also delegate SuiteIDRanges to root
// (bind mounts of copies; the host's files are not changed and nothing
// outside the harness sees them). It returns done=true with the child's
// exit code in the parent, done=false in the child, where the caller goes
// on.
func InNodeNamespace() (done bool, code int, err error) {
	if dir := os.Getenv(nsEnv); dir != "" {
		return false, 0, bindCopies(dir)
	}
	dir, err := os.MkdirTemp("", "nexcage-conformance-subid-")
	if err != nil {
		return true, 1, err
	}
	defer os.RemoveAll(dir)
	if err := writeCopies(dir); err != nil {
		return true, 1, err
	}
	self, err := os.Executable()
	if err != nil {
		return true, 1, err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), nsEnv+"="+dir)
	// Go makes / private (MS_REC|MS_PRIVATE) in the new namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	// Signals reach the child through the terminal's process group; a
	// SIGTERM to this process is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return true, 1, err
	}
	go func() {
		for sig := range sigs {
			_ = cmd.Process.Signal(sig)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return true, ee.ExitCode(), nil
		}
		return true, 1, err
	}
	return true, 0, nil
}

var idFiles = []string{"/etc/subuid", "/etc/subgid"}

// writeCopies writes into dir a copy of each of /etc/subuid and
// /etc/subgid that exists, with SuiteIDRanges added.
func writeCopies(dir string) error {
	for _, f := range idFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // no shadow ranges at all: LXC writes the maps itself
		}
		s := string(data)
		if !strings.Contains("\n"+s, "\n"+SuiteIDRanges+"\n") {
			if s != "" && !strings.HasSuffix(s, "\n") {
				s += "\n"
			}
			s += SuiteIDRanges + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// bindCopies bind-mounts the copies in dir over the files, in this
// (private) mount namespace.
func bindCopies(dir string) error {
	for _, f := range idFiles {
		cp := filepath.Join(dir, filepath.Base(f))
		if _, err := os.Stat(cp); err != nil {
			continue
		}
		if err := syscall.Mount(cp, f, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over %s: %w", cp, f, err)
		}
	}
	return nil
}
