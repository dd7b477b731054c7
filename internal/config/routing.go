package config

import (
	"fmt"
	"path"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"

	"github.com/nexcage/nexcage/internal/errs"
)

// Canonical backend names, as stored in state and shown by `list`.
const (
	BackendProxmox = "proxmox-lxc"
	BackendRunc    = "runc"
	BackendCrun    = "crun"
)

// backendVM marks a Proxmox VM route: a known name nexcage refuses to use.
const backendVM = "proxmox-vm"

// runtimeNames maps every accepted runtime name to its canonical backend.
var runtimeNames = map[string]string{
	"lxc": BackendProxmox, "proxmox-lxc": BackendProxmox,
	"runc": BackendRunc,
	"crun": BackendCrun,
	"vm":   backendVM, "proxmox-vm": backendVM,
}

const validNames = "lxc, proxmox-lxc, runc, crun"

// NormalizeRuntime returns the canonical backend for a runtime name
// (--runtime, routing rules, default_container_type): "lxc" and
// "proxmox-lxc" give BackendProxmox; "runc"; "crun". Proxmox VMs ("vm",
// "proxmox-vm") are KindUnsupported; anything else is KindUsage.
func NormalizeRuntime(name string) (string, error) {
	return normalize(name, false)
}

// normalize is NormalizeRuntime; with allowVM it returns backendVM for VM
// names instead of an error (config validation accepts them with a warning).
func normalize(name string, allowVM bool) (string, error) {
	b, ok := runtimeNames[strings.ToLower(strings.TrimSpace(name))]
	switch {
	case !ok:
		return "", errs.New(errs.KindUsage, "unknown runtime %q", name).
			WithHint("valid runtimes: %s", validNames)
	case b == backendVM && !allowVM:
		return "", unsupportedVM(name)
	}
	return b, nil
}

func unsupportedVM(name string) *errs.Error {
	return errs.New(errs.KindUnsupported, "runtime %q (Proxmox VMs) is not supported by nexcage", name).
		WithHint("use lxc (a Proxmox container), runc or crun")
}

// rule is one checked runtime.routing entry.
type rule struct {
	index   int
	pattern string // as written in the config
	runtime string // as written in the config
	backend string // canonical, possibly backendVM
	// re is the anchored pattern, compiled on first use: most commands
	// load the config without routing anything.
	re func() *regexp.Regexp
}

// compileRules checks rules; their patterns are parsed here (so a bad one
// fails config loading) and compiled when first matched.
func compileRules(rules []RoutingRule) ([]rule, error) {
	out := make([]rule, 0, len(rules))
	for i, r := range rules {
		key := fmt.Sprintf("runtime.routing[%d]", i)
		if r.Pattern == "" {
			return nil, errs.New(errs.KindInvalidConfig, "%s.pattern: empty", key).
				WithHint("use \".*\" to match every id")
		}
		// The pattern alone first, so errors quote what the user wrote;
		// then anchored so it must match the whole id. Every error
		// regexp.Compile reports comes from parsing (syntax.Parse with
		// its Perl flags), so parsing is the whole check.
		anchored := "^(?:" + r.Pattern + ")$"
		_, err := syntax.Parse(r.Pattern, syntax.Perl)
		if err == nil {
			_, err = syntax.Parse(anchored, syntax.Perl)
		}
		if err != nil {
			return nil, errs.New(errs.KindInvalidConfig, "%s.pattern: %q is not a valid regular expression: %v", key, r.Pattern, err).
				WithHint("patterns use Go regexp syntax (RE2)")
		}
		b, err := normalize(r.Runtime, true)
		if err != nil {
			return nil, errs.Wrap(errs.KindInvalidConfig, err, "%s.runtime", key)
		}
		out = append(out, rule{index: i, pattern: r.Pattern, runtime: r.Runtime, backend: b,
			re: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(anchored) })})
	}
	return out, nil
}

// Router decides which backend runs a container id.
type Router struct {
	rules        []rule
	crunPatterns []string
	defName      string
	def          string
}

// Decision is a routing result: the canonical backend and why it was
// chosen (for logs and `nexcage route`).
type Decision struct {
	Backend string
	Reason  string
}

// Router compiles c's routing rules. Errors are KindInvalidConfig naming
// the offending key (e.g. runtime.routing[2].pattern).
func (c *Config) Router() (*Router, error) {
	rules, err := compileRules(c.Runtime.Routing)
	if err != nil {
		return nil, err
	}
	for i, p := range c.ContainerConfig.CrunNamePatterns {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return nil, errs.New(errs.KindInvalidConfig, "container_config.crun_name_patterns[%d]: %q is not a valid shell wildcard pattern", i, p)
		}
	}
	name := c.ContainerConfig.DefaultContainerType
	if name == "" {
		name = "lxc"
	}
	def, err := normalize(name, true)
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "container_config.default_container_type")
	}
	return &Router{rules: rules, crunPatterns: c.ContainerConfig.CrunNamePatterns, defName: name, def: def}, nil
}

// Default is the decision for an id that no runtime.routing rule and no
// crun_name_patterns entry matches: container_config.default_container_type
// (a Proxmox VM there is KindUnsupported).
func (r *Router) Default() (Decision, error) {
	reason := fmt.Sprintf("default_container_type %q", r.defName)
	if r.def == backendVM {
		return Decision{}, errs.Wrap(errs.KindUnsupported, unsupportedVM(r.defName), "%s", reason)
	}
	return Decision{Backend: r.def, Reason: reason}, nil
}

// Route picks the backend for id: override (--runtime) wins, then the
// first runtime.routing rule whose pattern matches the whole id, then
// container_config.crun_name_patterns (shell wildcards, to crun), then
// container_config.default_container_type. A route to a Proxmox VM is a
// KindUnsupported error; an unknown override is KindUsage.
func (r *Router) Route(id, override string) (Decision, error) {
	if override != "" {
		b, err := NormalizeRuntime(override)
		if err != nil {
			return Decision{}, err
		}
		return Decision{Backend: b, Reason: fmt.Sprintf("--runtime %q", override)}, nil
	}
	for _, rl := range r.rules {
		if !rl.re().MatchString(id) {
			continue
		}
		reason := fmt.Sprintf("rule %d %q", rl.index, rl.pattern)
		if rl.backend == backendVM {
			return Decision{}, errs.Wrap(errs.KindUnsupported, unsupportedVM(rl.runtime), "container %s: routing %s", id, reason)
		}
		return Decision{Backend: rl.backend, Reason: reason}, nil
	}
	for _, p := range r.crunPatterns {
		if ok, _ := path.Match(p, id); ok {
			return Decision{Backend: BackendCrun, Reason: fmt.Sprintf("crun_name_patterns %q", p)}, nil
		}
	}
	reason := fmt.Sprintf("default_container_type %q", r.defName)
	if r.def == backendVM {
		return Decision{}, errs.Wrap(errs.KindUnsupported, unsupportedVM(r.defName), "container %s: %s", id, reason)
	}
	return Decision{Backend: r.def, Reason: reason}, nil
}
