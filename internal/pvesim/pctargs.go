package pvesim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// extraArgs is the positional parameter that swallows the rest of argv
// (pct exec).
const extraArgs = "extra-args"

// verbDef describes one pct command as pve-common's CLIHandler sees it:
// positional parameters, options with their schema, and the handler.
type verbDef struct {
	name string
	args []string                  // positional parameter names, in order
	opts map[string]*pvecfg.Schema // every option (positional ones included)
	run  func(n *Node, c *call) error
}

// call is one parsed invocation.
type call struct {
	verb  *verbDef
	vmid  int
	args  map[string]string // positional values
	extra []string          // extra-args
	opts  map[string]string // options given (booleans as 0/1)
}

func (c *call) has(k string) bool { _, ok := c.opts[k]; return ok }

func (c *call) flag(k string) bool { return c.opts[k] == "1" }

// usage is the short usage line CLIHandler appends to 400 errors
// (RESTHandler::getopt_usage 'short'): note the blank after the verb
// when it takes no arguments, as Proxmox prints it.
func (v *verbDef) usage() string {
	var args []string
	for _, a := range v.args {
		if a == extraArgs {
			args = append(args, "[<"+a+">]")
		} else {
			args = append(args, "<"+a+">")
		}
	}
	s := "pct " + v.name + " " + strings.Join(args, " ")
	if len(v.optionNames()) > 0 {
		s += " [OPTIONS]"
	}
	return s + "\n"
}

// optionNames are the names Getopt knows: every option but the positional ones.
func (v *verbDef) optionNames() []string {
	pos := map[string]bool{}
	for _, a := range v.args {
		pos[a] = true
	}
	var names []string
	for k := range v.opts {
		if !pos[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// cliError is a failure whose full stderr text is known (ends in "\n").
type cliError struct{ text string }

func (e *cliError) Error() string { return strings.TrimSuffix(e.text, "\n") }

// dief builds a plain failure as Perl's `die "...\n"` prints it.
func dief(format string, a ...any) error {
	return &cliError{text: fmt.Sprintf(format, a...) + "\n"}
}

// paramError is PVE::Exception with code 400 and per-parameter errors.
type paramError struct {
	errors map[string]string
}

func (e *paramError) Error() string { return "Parameter verification failed." }

// badRequest is a 400 error without a parameter list (`400 not enough arguments`).
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// render400 prints a 400 exception as PVE::Exception::stringify does,
// with the usage line CLIHandler adds. Error values that already end in a
// newline (die texts of format checks) leave a blank line, as in Proxmox.
func render400(err error, usage string) string {
	var b strings.Builder
	switch e := err.(type) {
	case *paramError:
		b.WriteString("400 Parameter verification failed.\n")
		keys := make([]string, 0, len(e.errors))
		for k := range e.errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(k + ": " + e.errors[k] + "\n")
		}
	case *badRequest:
		b.WriteString("400 " + e.msg + "\n")
	}
	b.WriteString(usage)
	return b.String()
}

// parseArgs parses argv for a verb the way PVE::JSONSchema::get_options
// does with Getopt::Long (prefix `--` or `-`, `--name=value`, case
// insensitive, unique abbreviations, permuted positionals, `--` ends
// options; booleans take an optional value, other options swallow the
// next word). Getopt's warnings go to warn; the returned error is a
// *badRequest or *paramError.
func parseArgs(v *verbDef, argv []string, warn func(string)) (*call, error) {
	names := v.optionNames()
	lower := map[string]string{}
	for _, n := range names {
		lower[strings.ToLower(n)] = n
	}
	c := &call{verb: v, args: map[string]string{}, opts: map[string]string{}}
	var positional []string
	failed := false
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			positional = append(positional, argv[i+1:]...)
			break
		}
		prefix := ""
		switch {
		case strings.HasPrefix(a, "--") && len(a) > 2:
			prefix = "--"
		case strings.HasPrefix(a, "-") && len(a) > 1:
			prefix = "-"
		}
		if prefix == "" {
			positional = append(positional, a)
			continue
		}
		name := a[len(prefix):]
		val, hasVal := "", false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, val, hasVal = name[:j], name[j+1:], true
		}
		key := strings.ToLower(name)
		opt, ok := lower[key]
		if !ok {
			var hits []string
			for _, n := range names {
				if strings.HasPrefix(strings.ToLower(n), key) {
					hits = append(hits, strings.ToLower(n))
				}
			}
			switch {
			case len(hits) == 1 && key != "":
				opt = lower[hits[0]]
			case len(hits) > 1:
				warn(fmt.Sprintf("Option %s is ambiguous (%s)\n", key, strings.Join(hits, ", ")))
				failed = true
				continue
			default:
				warn("Unknown option: " + key + "\n")
				failed = true
				continue
			}
		}
		sc := v.opts[opt]
		if sc.Type == pvecfg.TBoolean {
			if !hasVal {
				// Optional value: take the next word unless it looks like an option.
				if i+1 < len(argv) && !(argv[i+1] == "--" || (strings.HasPrefix(argv[i+1], "-") && len(argv[i+1]) > 1)) {
					val = argv[i+1]
					i++
				}
			}
		} else if !hasVal {
			if i+1 >= len(argv) {
				warn("Option " + key + " requires an argument\n")
				failed = true
				continue
			}
			val = argv[i+1]
			i++
		}
		c.opts[opt] = val
	}
	if failed {
		return nil, &badRequest{"unable to parse option"}
	}
	// Positional parameters.
	for _, a := range v.args {
		if a == extraArgs {
			c.extra = positional
			positional = nil
			break
		}
		if len(positional) == 0 {
			return nil, &badRequest{"not enough arguments"}
		}
		c.args[a] = positional[0]
		positional = positional[1:]
	}
	if len(positional) > 0 {
		return nil, &badRequest{"too many arguments"}
	}
	for k, val := range c.opts {
		if v.opts[k].Type != pvecfg.TBoolean {
			continue
		}
		if val == "" {
			c.opts[k] = "1"
		} else if b, ok := pvecfg.ParseBool(val); ok {
			c.opts[k] = map[bool]string{true: "1", false: "0"}[b]
		} else {
			return nil, &badRequest{"unable to parse boolean option"}
		}
	}
	// Schema verification of every parameter (RESTHandler::handle).
	errs := map[string]string{}
	check := func(k, val string) {
		if msg := v.opts[k].Check(k, val); msg != "" {
			errs[k] = msg
		}
	}
	for k, val := range c.args {
		check(k, val)
	}
	for k, val := range c.opts {
		check(k, val)
	}
	if len(errs) > 0 {
		return nil, &paramError{errors: errs}
	}
	if s, ok := c.args["vmid"]; ok {
		c.vmid, _ = pvecfg.ParseVMID(s)
	}
	return c, nil
}
