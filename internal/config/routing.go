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

// Annotations containerd's CRI plugin writes into a Kubernetes pod's
// bundles (reference: oci-runtime.md section 6); the routing rules'
// Kubernetes fields match them.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	// ContainerTypeSandbox and ContainerTypeContainer are the values of
	// AnnotationContainerType: the pod's pause container, an app container.
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// field is one Kubernetes field of a routing rule.
type field struct {
	key        string // config key, e.g. "pod_namespace"
	annotation string
	value      string // as written in the config
	exact      bool   // compared as is (container_type), else an anchored regexp
	re         func() *regexp.Regexp
}

func (f field) matches(ann map[string]string) bool {
	v, ok := ann[f.annotation]
	if !ok {
		return false
	}
	if f.exact {
		return v == f.value
	}
	return f.re().MatchString(v)
}

// rule is one checked runtime.routing entry.
type rule struct {
	index   int
	pattern string // as written in the config ("" when the rule has none)
	runtime string // as written in the config
	backend string // canonical, possibly backendVM
	// re is the anchored pattern, compiled on first use: most commands
	// load the config without routing anything. nil without a pattern.
	re     func() *regexp.Regexp
	fields []field
	// perContainer: the rule names an app container (container_name, or
	// container_type "container"), so it speaks about one container of a
	// pod rather than the pod.
	perContainer bool
}

// matches reports whether every field the rule sets matches.
func (rl rule) matches(id string, ann map[string]string) bool {
	if rl.re != nil && !rl.re().MatchString(id) {
		return false
	}
	for _, f := range rl.fields {
		if !f.matches(ann) {
			return false
		}
	}
	return true
}

// String is how decisions and warnings name the rule: `rule 0 "^x$"` for
// a pattern alone, else `rule 1 (pod_namespace "kube-system", ...)`.
func (rl rule) String() string {
	if len(rl.fields) == 0 {
		return fmt.Sprintf("rule %d %q", rl.index, rl.pattern)
	}
	var parts []string
	if rl.pattern != "" {
		parts = append(parts, fmt.Sprintf("pattern %q", rl.pattern))
	}
	for _, f := range rl.fields {
		parts = append(parts, fmt.Sprintf("%s %q", f.key, f.value))
	}
	return fmt.Sprintf("rule %d (%s)", rl.index, strings.Join(parts, ", "))
}

// checkRegexp parses expr alone (so errors quote what the user wrote) and
// anchored (so it must match the whole value) and returns the anchored
// form. Every error regexp.Compile reports comes from parsing
// (syntax.Parse with its Perl flags), so parsing is the whole check.
func checkRegexp(key, expr string) (string, error) {
	anchored := "^(?:" + expr + ")$"
	_, err := syntax.Parse(expr, syntax.Perl)
	if err == nil {
		_, err = syntax.Parse(anchored, syntax.Perl)
	}
	if err != nil {
		return "", errs.New(errs.KindInvalidConfig, "%s: %q is not a valid regular expression: %v", key, expr, err).
			WithHint("patterns use Go regexp syntax (RE2)")
	}
	return anchored, nil
}

func lazyRegexp(anchored string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(anchored) })
}

// compileRules checks rules; their patterns are parsed here (so a bad one
// fails config loading) and compiled when first matched.
func compileRules(rules []RoutingRule) ([]rule, error) {
	out := make([]rule, 0, len(rules))
	for i, r := range rules {
		key := fmt.Sprintf("runtime.routing[%d]", i)
		rl := rule{index: i, pattern: r.Pattern, runtime: r.Runtime}
		for _, f := range []struct{ key, annotation, value string }{
			{"pod_namespace", AnnotationSandboxNamespace, r.PodNamespace},
			{"pod_name", AnnotationSandboxName, r.PodName},
			{"container_name", AnnotationContainerName, r.ContainerName},
		} {
			if f.value == "" {
				continue
			}
			anchored, err := checkRegexp(key+"."+f.key, f.value)
			if err != nil {
				return nil, err
			}
			rl.fields = append(rl.fields, field{key: f.key, annotation: f.annotation, value: f.value, re: lazyRegexp(anchored)})
		}
		switch r.ContainerType {
		case "":
		case ContainerTypeSandbox, ContainerTypeContainer:
			rl.fields = append(rl.fields, field{key: "container_type", annotation: AnnotationContainerType, value: r.ContainerType, exact: true})
		default:
			return nil, errs.New(errs.KindInvalidConfig, "%s.container_type: %q is neither %q nor %q", key, r.ContainerType, ContainerTypeSandbox, ContainerTypeContainer).
				WithHint("container_type matches io.kubernetes.cri.container-type: the pod's sandbox (pause) container or an app container")
		}
		rl.perContainer = r.ContainerName != "" || r.ContainerType == ContainerTypeContainer
		switch {
		case r.Pattern != "":
			anchored, err := checkRegexp(key+".pattern", r.Pattern)
			if err != nil {
				return nil, err
			}
			rl.re = lazyRegexp(anchored)
		case len(rl.fields) == 0:
			return nil, errs.New(errs.KindInvalidConfig, "%s.pattern: empty", key).
				WithHint("use \".*\" to match every id, or match a Kubernetes pod with pod_namespace, pod_name, container_name or container_type")
		}
		b, err := normalize(r.Runtime, true)
		if err != nil {
			return nil, errs.Wrap(errs.KindInvalidConfig, err, "%s.runtime", key)
		}
		rl.backend = b
		out = append(out, rl)
	}
	return out, nil
}

// ProgramBackend is the backend a program name forces: nexcage called as
// nexcage-runc, nexcage-crun, nexcage-lxc, nexcage-proxmox or
// nexcage-proxmox-lxc (a link, e.g. containerd's BinaryName for one
// RuntimeClass handler) runs every container on that backend. name is
// argv[0]'s base name; any other name forces nothing.
func ProgramBackend(name string) (string, bool) {
	suffix, ok := strings.CutPrefix(name, "nexcage-")
	if !ok {
		return "", false
	}
	if suffix == "proxmox" {
		return BackendProxmox, true
	}
	b, ok := runtimeNames[suffix]
	if !ok || b == backendVM {
		return "", false
	}
	return b, true
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

// Request is what a routing decision is made on.
type Request struct {
	ID string
	// Override is --runtime ("" routes by the rest).
	Override string
	// Program is the base name nexcage was called by (ProgramBackend).
	Program string
	// Annotations are the bundle's (nil without a bundle): the
	// Kubernetes identity the rules' pod and container fields match.
	Annotations map[string]string
	// SandboxBackend returns the backend recorded for a pod's sandbox
	// id, "" when no container of that id is known; nil: none known.
	SandboxBackend func(id string) (string, error)
}

// Route is Decide for an id alone (no bundle, no program name).
func (r *Router) Route(id, override string) (Decision, error) {
	return r.Decide(Request{ID: id, Override: override})
}

// Decide picks the backend: the override (--runtime) wins, then the name
// nexcage was called by (ProgramBackend), then, for an app container of
// a Kubernetes pod, its sandbox's backend (a pod runs on one backend),
// then the first runtime.routing rule that matches, then
// container_config.crun_name_patterns (shell wildcards, to crun), then
// container_config.default_container_type. A route to a Proxmox VM is a
// KindUnsupported error; an unknown override is KindUsage.
func (r *Router) Decide(q Request) (Decision, error) {
	if q.Override != "" {
		b, err := NormalizeRuntime(q.Override)
		if err != nil {
			return Decision{}, err
		}
		return Decision{Backend: b, Reason: fmt.Sprintf("--runtime %q", q.Override)}, nil
	}
	if b, ok := ProgramBackend(q.Program); ok {
		return Decision{Backend: b, Reason: fmt.Sprintf("called as %q", q.Program)}, nil
	}
	if sb := q.Annotations[AnnotationSandboxID]; q.Annotations[AnnotationContainerType] == ContainerTypeContainer && sb != "" {
		return r.followSandbox(q, sb)
	}
	return r.byRules(q.ID, q.Annotations)
}

// followSandbox routes an app container to its pod's sandbox's backend:
// the one recorded for the sandbox, or, without a record, the decision
// the rules make for the sandbox (the pod's identity, as in the
// container's annotations). A rule naming this container (container_name
// or container_type "container") that sends it elsewhere is refused: one
// pod cannot span backends.
func (r *Router) followSandbox(q Request, sandbox string) (Decision, error) {
	var d Decision
	recorded := ""
	if q.SandboxBackend != nil {
		b, err := q.SandboxBackend(sandbox)
		if err != nil {
			return Decision{}, errs.Wrap(errs.KindOf(err), err, "container %s: cannot read the backend of its pod's sandbox %s", q.ID, sandbox)
		}
		recorded = b
	}
	if recorded != "" {
		d = Decision{Backend: recorded, Reason: fmt.Sprintf("its pod's sandbox %s runs on %s", sandbox, recorded)}
	} else {
		view := map[string]string{}
		for k, v := range q.Annotations {
			view[k] = v
		}
		view[AnnotationContainerType] = ContainerTypeSandbox
		delete(view, AnnotationContainerName)
		sd, err := r.byRules(sandbox, view)
		if err != nil {
			return Decision{}, errs.Wrap(errs.KindOf(err), err, "container %s follows its pod's sandbox %s", q.ID, sandbox)
		}
		d = Decision{Backend: sd.Backend, Reason: fmt.Sprintf("its pod's sandbox %s: %s", sandbox, sd.Reason)}
	}
	for _, rl := range r.rules {
		if !rl.matches(q.ID, q.Annotations) {
			continue
		}
		if rl.perContainer && rl.backend != d.Backend {
			name := q.Annotations[AnnotationContainerName]
			return Decision{}, errs.New(errs.KindUnsupported,
				"container %s (%q of pod %s/%s): routing %s sends it to %s, but its pod runs on %s (%s); all containers of a pod run on one backend",
				q.ID, name, q.Annotations[AnnotationSandboxNamespace], q.Annotations[AnnotationSandboxName], rl, runtimeLabel(rl), d.Backend, d.Reason).
				WithHint("route the pod instead (pod_namespace, pod_name, or container_type \"sandbox\"), or remove the rule")
		}
		break
	}
	return d, nil
}

func runtimeLabel(rl rule) string {
	if rl.backend == backendVM {
		return rl.runtime
	}
	return rl.backend
}

// byRules is the decision of the routing rules, crun_name_patterns and
// default_container_type for id with the bundle annotations ann.
func (r *Router) byRules(id string, ann map[string]string) (Decision, error) {
	for _, rl := range r.rules {
		if !rl.matches(id, ann) {
			continue
		}
		reason := rl.String()
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
