package pvesim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// initVersion is the version `pvesim init` asks for: --pve-version or
// PVESIM_PVE_VERSION (both may be given only if they agree), else unset
// (Init then keeps a recorded version or records the default).
func initVersion(flag, env string) (pvecfg.Version, error) {
	var fv, ev pvecfg.Version
	var err error
	if flag != "" {
		if fv, err = pvecfg.ParseVersion(flag); err != nil {
			return pvecfg.VersionUnset, fmt.Errorf("--pve-version: %w", err)
		}
	}
	if env != "" {
		if ev, err = pvecfg.ParseVersion(env); err != nil {
			return pvecfg.VersionUnset, fmt.Errorf("%s: %w", versionEnv, err)
		}
	}
	if fv != pvecfg.VersionUnset && ev != pvecfg.VersionUnset && fv != ev {
		return pvecfg.VersionUnset, fmt.Errorf("--pve-version %s conflicts with %s=%s; give one of them", fv, versionEnv, ev)
	}
	if fv != pvecfg.VersionUnset {
		return fv, nil
	}
	return ev, nil
}

// Exit statuses of pvesim itself (not of the simulated tools).
const (
	exitUsage = 2
)

const mainUsage = `usage: pvesim <pct|pveam|pvesh|pveversion> [ARGS...]
       pvesim init [--with-templates] [--pve-version 8.4|9.0|9.1]
Installed as pct, pveam, pvesh or pveversion (symlinks) it acts as that tool.
Environment: PVESIM_ROOT (required), PVESIM_NODE, PVESIM_PVE_VERSION, PVESIM_LOG,
PVESIM_LATENCY_MS, PVESIM_FAIL, PVESIM_LOCK_TIMEOUT_MS; see docs/PVESIM.md.
`

// isTool reports whether name is one of the simulated tools.
func isTool(name string) bool {
	switch name {
	case "pct", "pveam", "pvesh", "pveversion":
		return true
	}
	return false
}

// Main is the multi-call entry point: args[0]'s base name selects pct,
// pveam or pvesh; as `pvesim` the first argument does. It reads the
// PVESIM_* environment, logs the invocation to PVESIM_LOG and returns the
// exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	start := time.Now()
	tool := filepath.Base(args[0])
	rest := args[1:]
	if !isTool(tool) {
		if len(rest) == 0 {
			fmt.Fprint(stderr, mainUsage)
			return exitUsage
		}
		tool, rest = rest[0], rest[1:]
	}
	switch tool {
	case "pct", "pveam", "pvesh", "pveversion", "init":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "pvesim: unknown tool '%s'\n%s", tool, mainUsage)
		return exitUsage
	}
	root := os.Getenv("PVESIM_ROOT")
	if err := checkRoot(root); err != nil {
		fmt.Fprintf(stderr, "pvesim: %v\n", err)
		return exitUsage
	}
	root, _ = filepath.Abs(root)
	nodeName := os.Getenv("PVESIM_NODE")
	if nodeName == "" {
		nodeName = "pve"
	}
	n := &Node{Root: root, Name: nodeName, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if tool != "init" {
		v, err := n.resolveVersion(os.Getenv(versionEnv))
		if err != nil {
			fmt.Fprintf(stderr, "pvesim: %v\n", err)
			return exitUsage
		}
		n.Version = v
	}
	if ms, err := strconv.Atoi(os.Getenv("PVESIM_LATENCY_MS")); err == nil && ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	var code int
	switch tool {
	case "pct":
		code = n.Pct(rest)
	case "pveam", "pvesh":
		code = n.runOther(tool, rest)
	case "pveversion":
		code = n.Pveversion(rest)
	case "init":
		code = runInit(n, rest)
	}
	if logPath := os.Getenv("PVESIM_LOG"); logPath != "" {
		logInvocation(logPath, tool, rest, code, time.Since(start), stderr)
	}
	return code
}

// runOther runs pveam or pvesh with the fault injection and root check
// that pct has.
func (n *Node) runOther(tool string, args []string) int {
	if os.Geteuid() != 0 {
		fmt.Fprint(n.Stderr, "please run as root\n")
		return exitFailure
	}
	verb := ""
	if len(args) > 0 {
		verb = args[0]
	}
	if err := n.injectedFault(tool, verb, ""); err != nil {
		return n.report(err, "")
	}
	if tool == "pveam" {
		return n.Pveam(args)
	}
	return n.Pvesh(args)
}

func runInit(n *Node, args []string) int {
	with := false
	flagVer := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--with-templates" || a == "-with-templates":
			with = true
		case a == "--pve-version" || a == "-pve-version":
			if i+1 >= len(args) {
				fmt.Fprintf(n.Stderr, "pvesim init: --pve-version needs a value (8.4, 9.0 or 9.1)\n%s", mainUsage)
				return exitUsage
			}
			i++
			flagVer = args[i]
		case strings.HasPrefix(a, "--pve-version="):
			flagVer = strings.TrimPrefix(a, "--pve-version=")
		default:
			fmt.Fprintf(n.Stderr, "pvesim init: unknown argument '%s'\n%s", a, mainUsage)
			return exitUsage
		}
	}
	v, err := initVersion(flagVer, os.Getenv(versionEnv))
	if err != nil {
		fmt.Fprintf(n.Stderr, "pvesim init: %v\n", err)
		return exitUsage
	}
	n.Version = v
	if err := Init(n, with); err != nil {
		fmt.Fprintf(n.Stderr, "pvesim init: %v\n", err)
		return 1
	}
	return 0
}

// logInvocation appends one JSON line to path with a single O_APPEND
// write, so parallel invocations never interleave.
func logInvocation(path, tool string, args []string, code int, d time.Duration, stderr io.Writer) {
	if args == nil {
		args = []string{}
	}
	line, _ := json.Marshal(struct {
		Tool string   `json:"tool"`
		Argv []string `json:"argv"`
		Exit int      `json:"exit"`
		Ms   int64    `json:"ms"`
	}{tool, args, code, d.Milliseconds()})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "pvesim: PVESIM_LOG: %v\n", err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		fmt.Fprintf(stderr, "pvesim: PVESIM_LOG: %v\n", err)
	}
}
