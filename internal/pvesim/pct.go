package pvesim

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// vmidSchema is pve-common's standard option pve-vmid.
var vmidSchema = &pvecfg.Schema{
	Type:   pvecfg.TInteger,
	Format: func(s string) error { return vmidFormat(s) },
	Min:    fptr(100), Max: fptr(999999999),
}

func vmidFormat(s string) error {
	if !pvecfg.ValidVMID(s) {
		return errors.New("value does not look like a valid VM ID")
	}
	return nil
}

func fptr(f float64) *float64 { return &f }

var (
	boolOpt = &pvecfg.Schema{Type: pvecfg.TBoolean, Optional: true}
	strOpt  = &pvecfg.Schema{Type: pvecfg.TString, Optional: true}
)

// withConfigOptions returns the container config options of version v
// (every key of pve-container's $confdesc but parent/snaptime, as
// json_config_properties) plus extra.
func withConfigOptions(v pvecfg.Version, extra map[string]*pvecfg.Schema) map[string]*pvecfg.Schema {
	m := map[string]*pvecfg.Schema{}
	for k, v := range pvecfg.ConfigSchema(v) {
		if k == "parent" || k == "snaptime" {
			continue
		}
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

var (
	verbsOnce   [pvecfg.V9_1 + 1]sync.Once
	verbsByVers [pvecfg.V9_1 + 1]map[string]*verbDef
)

// verbsFor is the command table of pct on version v: create and set know
// only the options of that version's schema, so an option of a newer
// version is Getopt's `Unknown option` there, as on a real node.
func verbsFor(v pvecfg.Version) map[string]*verbDef {
	v = v.Or(pvecfg.DefaultVersion)
	verbsOnce[v].Do(func() { verbsByVers[v] = buildVerbs(v) })
	return verbsByVers[v]
}

func buildVerbs(ver pvecfg.Version) map[string]*verbDef {
	return map[string]*verbDef{
		"create": {name: "create", args: []string{"vmid", "ostemplate"}, run: (*Node).pctCreate,
			opts: withConfigOptions(ver, map[string]*pvecfg.Schema{
				"vmid":                 vmidSchema,
				"ostemplate":           {Type: pvecfg.TString, MaxLength: 255},
				"storage":              {Type: pvecfg.TString, Optional: true, Format: pvecfg.VerifyStorageID},
				"password":             {Type: pvecfg.TString, Optional: true},
				"ssh-public-keys":      strOpt,
				"start":                boolOpt,
				"force":                boolOpt,
				"unique":               boolOpt,
				"restore":              boolOpt,
				"pool":                 strOpt,
				"ignore-unpack-errors": boolOpt,
				"bwlimit":              {Type: pvecfg.TNumber, Optional: true, Min: fptr(0)},
				"ha-managed":           boolOpt,
			})},
		"set": {name: "set", args: []string{"vmid"}, run: (*Node).pctSet,
			opts: withConfigOptions(ver, map[string]*pvecfg.Schema{
				"vmid":   vmidSchema,
				"delete": strOpt,
				"revert": strOpt,
				"digest": {Type: pvecfg.TString, Optional: true, MaxLength: 64},
			})},
		"start": {name: "start", args: []string{"vmid"}, run: (*Node).pctStart,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "skiplock": boolOpt, "debug": boolOpt}},
		"stop": {name: "stop", args: []string{"vmid"}, run: (*Node).pctStop,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "skiplock": boolOpt, "overrule-shutdown": boolOpt}},
		"shutdown": {name: "shutdown", args: []string{"vmid"}, run: (*Node).pctShutdown,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "forceStop": boolOpt,
				"timeout": {Type: pvecfg.TInteger, Optional: true, Min: fptr(0)}}},
		"destroy": {name: "destroy", args: []string{"vmid"}, run: (*Node).pctDestroy,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "force": boolOpt, "purge": boolOpt,
				"destroy-unreferenced-disks": boolOpt}},
		"status": {name: "status", args: []string{"vmid"}, run: (*Node).pctStatus,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "verbose": boolOpt}},
		"config": {name: "config", args: []string{"vmid"}, run: (*Node).pctConfig,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "current": boolOpt,
				"snapshot": {Type: pvecfg.TString, Optional: true, MaxLength: 40}}},
		"list": {name: "list", run: (*Node).pctList, opts: map[string]*pvecfg.Schema{}},
		"exec": {name: "exec", args: []string{"vmid", extraArgs}, run: (*Node).pctExec,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema, "keep-env": boolOpt}},
		"unlock": {name: "unlock", args: []string{"vmid"}, run: (*Node).pctUnlock,
			opts: map[string]*pvecfg.Schema{"vmid": vmidSchema}},
	}
}

// exitFailure is what a Perl die at top level exits with.
const exitFailure = 255

// Pct runs the simulated pct command line (args without the program
// name) and returns its exit status.
func (n *Node) Pct(args []string) int {
	if os.Geteuid() != 0 {
		fmt.Fprint(n.Stderr, "please run as root\n")
		return exitFailure
	}
	if len(args) == 0 {
		n.pctAbort("no command specified")
		return exitFailure
	}
	name, ok := expandCommand(args[0])
	if !ok {
		n.pctAbort("unknown command 'pct " + args[0] + "'")
		return exitFailure
	}
	v := verbsFor(n.PVEVersion())[name]
	c, err := parseArgs(v, args[1:], func(s string) { fmt.Fprint(n.Stderr, s) })
	if err == nil {
		err = n.injectedFault("pct", name, c.args["vmid"])
	}
	if err == nil {
		err = v.run(n, c)
	}
	return n.report(err, v.usage())
}

// report prints a verb's error as pct does and returns the exit status.
func (n *Node) report(err error, usage string) int {
	if err == nil {
		return 0
	}
	var ec *exitCode
	if errors.As(err, &ec) {
		return ec.code
	}
	switch e := err.(type) {
	case *paramError, *badRequest:
		fmt.Fprint(n.Stderr, render400(e, usage))
	case *cliError:
		fmt.Fprint(n.Stderr, e.text)
	default:
		fmt.Fprint(n.Stderr, strings.TrimSuffix(err.Error(), "\n")+"\n")
	}
	return exitFailure
}

// exitCode carries a status without a message (pct exec passes the
// command's own status through).
type exitCode struct{ code int }

func (e *exitCode) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// expandCommand resolves a command name or its unique prefix, as
// CLIHandler's expand_command_name does.
func expandCommand(cmd string) (string, bool) {
	pctVerbs := verbsFor(pvecfg.DefaultVersion) // the verb names are the same on every version
	if _, ok := pctVerbs[cmd]; ok {
		return cmd, true
	}
	var hits []string
	for name := range pctVerbs {
		if strings.HasPrefix(name, cmd) {
			hits = append(hits, name)
		}
	}
	if len(hits) == 1 && cmd != "" {
		return hits[0], true
	}
	return "", false
}

// pctAbort prints CLIHandler's abort text: the error, then the short
// usage of every command.
func (n *Node) pctAbort(msg string) {
	var b strings.Builder
	b.WriteString("ERROR: " + msg + "\n")
	b.WriteString("USAGE: pct <COMMAND> [ARGS] [OPTIONS]\n")
	pctVerbs := verbsFor(n.PVEVersion())
	names := make([]string, 0, len(pctVerbs))
	for k := range pctVerbs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteString("       " + pctVerbs[k].usage())
	}
	fmt.Fprint(n.Stderr, b.String())
}
