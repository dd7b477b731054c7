// Command pctwrap stands in for pct in the reliability tests: it runs
// pvesim's pct (PCTWRAP_REAL) unchanged, except that a `pct create` can be
// held at a chosen step so a test can kill nexcage exactly there:
//
//	PCTWRAP_MODE=before-<verb>  hold before pct <verb> does anything
//	                            (before-create, before-start, before-destroy ...)
//	PCTWRAP_MODE=after-<verb>   hold after pct <verb> succeeded
//	PCTWRAP_MODE=hang           a pct create that never returns (and
//	                            starts a child that never returns either),
//	                            to test timeouts
//
// It writes its pid to $PCTWRAP_DIR/held when holding, and continues when
// $PCTWRAP_DIR/release appears. Test-only; never installed.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-sleeper" {
		writeFile(filepath.Join(os.Getenv("PCTWRAP_DIR"), "sleeper"), strconv.Itoa(os.Getpid()))
		for {
			time.Sleep(time.Hour)
		}
	}
	real, mode, dir := os.Getenv("PCTWRAP_REAL"), os.Getenv("PCTWRAP_MODE"), os.Getenv("PCTWRAP_DIR")
	if real == "" {
		fmt.Fprintln(os.Stderr, "pctwrap: PCTWRAP_REAL not set")
		os.Exit(255)
	}
	verb := ""
	if len(os.Args) > 1 {
		verb = os.Args[1]
	}
	when, heldVerb, _ := strings.Cut(mode, "-")
	held := verb != "" && (heldVerb == verb || mode == "hang" && verb == "create")
	if !held {
		// Transparent: become pvesim's pct.
		err := syscall.Exec(real, append([]string{"pct"}, os.Args[1:]...), os.Environ())
		fmt.Fprintln(os.Stderr, "pctwrap:", err)
		os.Exit(255)
	}
	switch {
	case when == "before":
		hold(dir)
		os.Exit(runReal(real))
	case when == "after":
		code := runReal(real)
		if code == 0 {
			hold(dir)
		}
		os.Exit(code)
	case mode == "hang":
		child := exec.Command(os.Args[0], "-sleeper")
		child.Env = os.Environ()
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "pctwrap:", err)
			os.Exit(255)
		}
		writeFile(filepath.Join(dir, "held"), strconv.Itoa(os.Getpid()))
		for {
			time.Sleep(time.Hour)
		}
	default:
		fmt.Fprintln(os.Stderr, "pctwrap: unknown PCTWRAP_MODE", mode)
		os.Exit(255)
	}
}

// runReal runs pvesim's pct with our arguments and returns its status.
func runReal(real string) int {
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Args[0] = "pct"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "pctwrap:", err)
		return 255
	}
}

// hold announces itself and waits for the release file.
func hold(dir string) {
	writeFile(filepath.Join(dir, "held"), strconv.Itoa(os.Getpid()))
	for {
		if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(p, s string) {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err == nil {
		_ = os.Rename(tmp, p)
	}
}
