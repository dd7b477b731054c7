package fastpath

import (
	"strconv"
	"strings"
)

// PassthroughVerbs are runc verbs whose arguments nexcage does not parse:
// it finds the container id, routes, and hands the rest to the runtime.
// The value of each entry is the set of the verb's flags that take a
// value (nil: every flag does). internal/cli uses the same table.
var PassthroughVerbs = map[string]map[string]bool{
	"exec": {"console-socket": true, "pidfd-socket": true, "cwd": true, "env": true, "e": true, "user": true, "u": true,
		"additional-gids": true, "g": true, "process": true, "p": true, "process-label": true, "apparmor": true,
		"cap": true, "c": true, "preserve-fds": true, "cgroup": true, "pid-file": true},
	"ps":     {"format": true, "f": true},
	"pause":  {},
	"resume": {},
	"update": nil, // every update flag takes a value
	"events": {"interval": true},
}

// PassthroughID finds the container id among a passthrough verb's
// arguments: the first argument that is neither a flag nor a flag value.
func PassthroughID(verb string, args []string) (string, bool) {
	valued := PassthroughVerbs[verb]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return args[i+1], true
			}
			break
		}
		if !isFlag(a) {
			return a, true
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if valued == nil || valued[name] {
			i++
		}
	}
	return "", false
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// globals are nexcage's global flags (internal/cli root.go) as the fast
// path reads them.
type globals struct {
	root, log, logFormat, config, runtime, rootless string
	rootSet, debug, systemdCgroup                   bool
}

// call is a command line the fast path can carry out.
type call struct {
	g    globals
	verb string
	id   string

	// create
	bundle, pidFile, consoleSocket string
	noPivot, noNewKeyring          bool
	preserveFDs                    int
	// kill
	signal string
	all    bool
	// delete
	force bool
	// passthrough verbs: the arguments after the verb, unchanged
	pass []string
}

// flagSpec says whether a verb flag takes a value; short is its one-letter
// form.
type flagSpec struct {
	long, short string
	value       bool
}

var verbFlags = map[string][]flagSpec{
	"create": {{"bundle", "b", true}, {"pid-file", "", true}, {"console-socket", "", true},
		{"no-pivot", "", false}, {"no-new-keyring", "", false}, {"preserve-fds", "", true}},
	"start":  nil,
	"state":  nil,
	"delete": {{"force", "f", false}},
	"kill":   {{"all", "a", false}, {"signal", "s", true}},
}

// global sets a global flag from name/value; ok is false for a name
// that is not one. hasValue tells whether value came with "=".
func (g *globals) set(name, value string, hasValue bool, next func() (string, bool)) (known, ok bool) {
	str := func(dst *string) bool {
		if !hasValue {
			v, more := next()
			if !more {
				return false
			}
			value = v
		}
		*dst = value
		return true
	}
	boolean := func(dst *bool) bool {
		if !hasValue {
			*dst = true
			return true
		}
		b, err := strconv.ParseBool(value)
		*dst = b
		return err == nil
	}
	switch name {
	case "root":
		g.rootSet = true
		return true, str(&g.root)
	case "log":
		return true, str(&g.log)
	case "log-format":
		return true, str(&g.logFormat)
	case "config":
		return true, str(&g.config)
	case "runtime":
		return true, str(&g.runtime)
	case "rootless":
		return true, str(&g.rootless)
	case "debug":
		return true, boolean(&g.debug)
	case "systemd-cgroup":
		return true, boolean(&g.systemdCgroup)
	}
	return false, false
}

// parse reads argv the way internal/cli does for the verbs and flags the
// fast path handles; ok is false for anything else (another verb, an
// unknown or shorthand-combined flag, help, a usage error): the full CLI
// then handles, and reports, it.
func parse(argv []string) (c call, ok bool) {
	c.g.logFormat = "text"
	i := 0
	next := func() (string, bool) {
		if i+1 >= len(argv) {
			return "", false
		}
		i++
		return argv[i], true
	}
	// Global flags before the verb.
	for ; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "--") || a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		if known, good := c.g.set(name, value, hasValue, next); !known || !good {
			return c, false
		}
	}
	if i >= len(argv) || isFlag(argv[i]) {
		return c, false
	}
	c.verb = argv[i]
	rest := argv[i+1:]
	if _, pass := PassthroughVerbs[c.verb]; pass {
		id, found := PassthroughID(c.verb, rest)
		if !found {
			return c, false
		}
		c.id, c.pass = id, rest
		return c, true
	}
	specs, known := verbFlags[c.verb]
	if !known {
		return c, false
	}
	var pos []string
	for i = 0; i < len(rest); i++ {
		a := rest[i]
		if !isFlag(a) {
			pos = append(pos, a)
			continue
		}
		if a == "--" {
			return c, false
		}
		var name, value string
		var hasValue bool
		var spec *flagSpec
		if strings.HasPrefix(a, "--") {
			name, value, hasValue = strings.Cut(a[2:], "=")
			for j := range specs {
				if specs[j].long == name {
					spec = &specs[j]
				}
			}
		} else {
			short, v, hv := strings.Cut(a[1:], "=")
			if len(short) != 1 {
				return c, false // combined shorthands: the full CLI
			}
			value, hasValue = v, hv
			for j := range specs {
				if specs[j].short == short {
					spec = &specs[j]
				}
			}
		}
		if spec == nil {
			if strings.HasPrefix(a, "--") {
				next := func() (string, bool) {
					if i+1 >= len(rest) {
						return "", false
					}
					i++
					return rest[i], true
				}
				if known, good := c.g.set(name, value, hasValue, next); known && good {
					continue
				}
			}
			return c, false
		}
		if spec.value && !hasValue {
			if i+1 >= len(rest) {
				return c, false
			}
			i++
			value = rest[i]
		}
		if !spec.value && hasValue {
			return c, false // --force=false and the like: the full CLI
		}
		if !c.setVerbFlag(spec.long, value) {
			return c, false
		}
	}
	switch {
	case len(pos) == 1:
		c.id = pos[0]
	case len(pos) == 2 && c.verb == "kill" && c.signal == "":
		c.id, c.signal = pos[0], pos[1]
	default:
		return c, false
	}
	if c.verb == "kill" && c.signal == "" {
		c.signal = "SIGTERM"
	}
	return c, true
}

func (c *call) setVerbFlag(name, value string) bool {
	switch name {
	case "bundle":
		c.bundle = value
	case "pid-file":
		c.pidFile = value
	case "console-socket":
		c.consoleSocket = value
	case "no-pivot":
		c.noPivot = true
	case "no-new-keyring":
		c.noNewKeyring = true
	case "preserve-fds":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return false
		}
		c.preserveFDs = n
	case "force":
		c.force = true
	case "all":
		c.all = true
	case "signal":
		c.signal = value
	default:
		return false
	}
	return true
}
