package config

import (
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestNormalizeRuntime(t *testing.T) {
	for in, want := range map[string]string{
		"lxc": BackendProxmox, "proxmox-lxc": BackendProxmox, "LXC": BackendProxmox,
		"runc": BackendRunc, "crun": BackendCrun, " crun ": BackendCrun,
	} {
		got, err := NormalizeRuntime(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRuntime(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"vm", "proxmox-vm"} {
		_, err := NormalizeRuntime(in)
		if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "(Proxmox VMs) is not supported by nexcage") {
			t.Errorf("NormalizeRuntime(%q) = %v, want unsupported", in, err)
		}
	}
	for _, in := range []string{"", "docker", "kata", "runc2"} {
		_, err := NormalizeRuntime(in)
		if errs.KindOf(err) != errs.KindUsage || !strings.Contains(err.Error(), "lxc, proxmox-lxc, runc, crun") {
			t.Errorf("NormalizeRuntime(%q) = %v, want usage error listing names", in, err)
		}
	}
}

func router(t *testing.T, c *Config) *Router {
	t.Helper()
	r, err := c.Router()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRouteCilium(t *testing.T) {
	// The acceptance case.
	c := Default()
	c.Runtime.Routing = []RoutingRule{{Pattern: "^cilium-.*$", Runtime: "crun"}}
	r := router(t, c)
	d, err := r.Route("cilium-x", "")
	if err != nil || d.Backend != BackendCrun || d.Reason != `rule 0 "^cilium-.*$"` {
		t.Errorf("cilium-x -> %+v, %v", d, err)
	}
	for _, id := range []string{"web", "x-cilium-y", "cilium", "ci"} {
		d, err := r.Route(id, "")
		if err != nil || d.Backend != BackendProxmox || d.Reason != `default_container_type "lxc"` {
			t.Errorf("%s -> %+v, %v; want default", id, d, err)
		}
	}
}

func TestRouteOrder(t *testing.T) {
	c := Default()
	c.Runtime.Routing = []RoutingRule{
		{Pattern: "kube-ovn-.*|cilium-.*", Runtime: "crun"},
		{Pattern: "cilium-special", Runtime: "runc"}, // shadowed by rule 0
		{Pattern: "ci", Runtime: "runc"},             // whole-id match only
		{Pattern: "test[0-9]+", Runtime: "proxmox-lxc"},
	}
	c.ContainerConfig.CrunNamePatterns = []string{"calico-*", "ci?"}
	c.ContainerConfig.DefaultContainerType = "runc"
	r := router(t, c)
	for _, tc := range []struct{ id, override, backend, reason string }{
		{"kube-ovn-cni", "", BackendCrun, `rule 0 "kube-ovn-.*|cilium-.*"`},
		{"cilium-special", "", BackendCrun, "rule 0"},
		{"ci", "", BackendRunc, `rule 2 "ci"`},
		{"cis", "", BackendCrun, `crun_name_patterns "ci?"`},
		{"test12", "", BackendProxmox, "rule 3"},
		{"test12x", "", BackendRunc, `default_container_type "runc"`},
		{"calico-node", "", BackendCrun, `crun_name_patterns "calico-*"`},
		{"xcalico-node", "", BackendRunc, "default_container_type"},
		{"web", "", BackendRunc, "default_container_type"},
		// --runtime beats every rule.
		{"cilium-x", "lxc", BackendProxmox, `--runtime "lxc"`},
		{"web", "crun", BackendCrun, `--runtime "crun"`},
	} {
		d, err := r.Route(tc.id, tc.override)
		if err != nil || d.Backend != tc.backend || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("Route(%q, %q) = %+v, %v; want %s because %s", tc.id, tc.override, d, err, tc.backend, tc.reason)
		}
	}
}

func TestRouteMatchAll(t *testing.T) {
	// ".*" matches everything (the original's hand-made matcher did not).
	c := Default()
	c.Runtime.Routing = []RoutingRule{{Pattern: ".*", Runtime: "runc"}}
	c.ContainerConfig.CrunNamePatterns = []string{"*"}
	r := router(t, c)
	for _, id := range []string{"a", "cilium-x", "x.y+z", "A_1"} {
		if d, err := r.Route(id, ""); err != nil || d.Backend != BackendRunc {
			t.Errorf("%s -> %+v, %v", id, d, err)
		}
	}
}

func TestRouteErrors(t *testing.T) {
	c := Default()
	r := router(t, c)
	if _, err := r.Route("x", "vm"); errs.KindOf(err) != errs.KindUnsupported {
		t.Errorf("--runtime vm: %v", err)
	}
	if _, err := r.Route("x", "docker"); errs.KindOf(err) != errs.KindUsage {
		t.Errorf("--runtime docker: %v", err)
	}

	c.ContainerConfig.DefaultContainerType = "proxmox-vm"
	r = router(t, c)
	if _, err := r.Route("x", ""); errs.KindOf(err) != errs.KindUnsupported {
		t.Errorf("default vm: %v", err)
	}
	if d, err := r.Route("x", "runc"); err != nil || d.Backend != BackendRunc {
		t.Errorf("override past a vm default: %+v %v", d, err)
	}

	for _, tc := range []struct {
		c    func(*Config)
		want string
	}{
		{func(c *Config) {
			c.Runtime.Routing = []RoutingRule{{Pattern: "a", Runtime: "runc"}, {Pattern: "[", Runtime: "runc"}}
		}, "runtime.routing[1].pattern"},
		// Valid once anchored ("^(?:)()$"), not alone: still refused.
		{func(c *Config) { c.Runtime.Routing = []RoutingRule{{Pattern: ")(", Runtime: "runc"}} }, "runtime.routing[0].pattern"},
		{func(c *Config) { c.Runtime.Routing = []RoutingRule{{Pattern: "a{2000}", Runtime: "runc"}} }, "invalid repeat count"},
		{func(c *Config) { c.Runtime.Routing = []RoutingRule{{Pattern: "a", Runtime: "podman"}} }, "runtime.routing[0].runtime"},
		{func(c *Config) { c.ContainerConfig.CrunNamePatterns = []string{"a", "[x"} }, "container_config.crun_name_patterns[1]"},
		{func(c *Config) { c.ContainerConfig.DefaultContainerType = "docker" }, "container_config.default_container_type"},
	} {
		c := Default()
		tc.c(c)
		_, err := c.Router()
		if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Router() = %v, want invalid-config naming %s", err, tc.want)
		}
	}
}

// criAnn is the annotations containerd's CRI plugin gives a sandbox
// (name "" ) or an app container of pod ns/pod.
func criAnn(ns, pod, sandbox, name string) map[string]string {
	a := map[string]string{
		AnnotationSandboxNamespace: ns, AnnotationSandboxName: pod, AnnotationSandboxID: sandbox,
		AnnotationContainerType: ContainerTypeSandbox,
	}
	if name != "" {
		a[AnnotationContainerType] = ContainerTypeContainer
		a[AnnotationContainerName] = name
	}
	return a
}

func TestRouteKubernetesIdentity(t *testing.T) {
	c := Default()
	c.Runtime.Routing = []RoutingRule{
		{PodNamespace: "kube-system", ContainerType: "sandbox", Runtime: "runc"},
		{PodNamespace: "lab", PodName: "db-.*", Runtime: "crun"},
		{Pattern: "^ci-.*$", PodNamespace: "ci", Runtime: "runc"},
		{PodNamespace: "lab", ContainerName: "pinned", Runtime: "lxc"},
	}
	r := router(t, c)
	const sb = "0123456789abcdef"
	for _, tc := range []struct {
		what, id string
		ann      map[string]string
		sandbox  string // recorded backend of sb
		want     string
		reason   string
	}{
		{"kube-system sandbox", sb, criAnn("kube-system", "coredns-1", sb, ""), "", BackendRunc, `rule 0 (pod_namespace "kube-system", container_type "sandbox")`},
		{"kube-system container without a record follows the sandbox's rule", "c1", criAnn("kube-system", "coredns-1", sb, "coredns"), "", BackendRunc, `its pod's sandbox 0123456789abcdef: rule 0 (pod_namespace "kube-system", container_type "sandbox")`},
		{"container follows the recorded sandbox", "c1", criAnn("kube-system", "coredns-1", sb, "coredns"), BackendCrun, BackendCrun, "its pod's sandbox 0123456789abcdef runs on crun"},
		{"namespace must match whole", sb, criAnn("kube-system-2", "x", sb, ""), "", BackendProxmox, `default_container_type "lxc"`},
		{"pod name", sb, criAnn("lab", "db-0", sb, ""), "", BackendCrun, `rule 1 (pod_namespace "lab", pod_name "db-.*")`},
		{"pattern and namespace both", "ci-1", criAnn("ci", "p", "ci-1", ""), "", BackendRunc, `rule 2 (pattern "^ci-.*$", pod_namespace "ci")`},
		{"pattern alone is not enough", "ci-1", nil, "", BackendProxmox, `default_container_type "lxc"`},
		{"no annotations: Kubernetes rules never match", "x", nil, "", BackendProxmox, `default_container_type "lxc"`},
		{"container rule agreeing with its pod", "c2", criAnn("lab", "web", sb, "pinned"), BackendProxmox, BackendProxmox, "its pod's sandbox 0123456789abcdef runs on proxmox-lxc"},
	} {
		lookups := 0
		q := Request{ID: tc.id, Annotations: tc.ann, SandboxBackend: func(id string) (string, error) {
			lookups++
			if id != sb {
				t.Errorf("%s: looked up sandbox %q", tc.what, id)
			}
			return tc.sandbox, nil
		}}
		d, err := r.Decide(q)
		if err != nil || d.Backend != tc.want || d.Reason != tc.reason {
			t.Errorf("%s: %+v, %v; want %s (%s)", tc.what, d, err, tc.want, tc.reason)
		}
		if isContainer := tc.ann[AnnotationContainerType] == ContainerTypeContainer; isContainer != (lookups == 1) {
			t.Errorf("%s: %d sandbox lookups", tc.what, lookups)
		}
	}
}

func TestRoutePodNeverSpansBackends(t *testing.T) {
	c := Default()
	c.Runtime.Routing = []RoutingRule{
		{PodNamespace: "lab", ContainerName: "pinned", Runtime: "lxc"},
		{PodNamespace: "lab", ContainerType: "container", Runtime: "crun"},
		{PodNamespace: "lab", Runtime: "runc"},
	}
	r := router(t, c)
	// The sandbox goes to runc (rule 2); its container "pinned" is pinned
	// to lxc by rule 0: refused, naming the rule.
	_, err := r.Decide(Request{ID: "c1", Annotations: criAnn("lab", "web", "sb1", "pinned")})
	if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), `"pinned" of pod lab/web`) ||
		!strings.Contains(err.Error(), `rule 0 (pod_namespace "lab", container_name "pinned") sends it to proxmox-lxc, but its pod runs on runc`) {
		t.Errorf("pinned container of a runc pod: %v", err)
	}
	// container_type "container" is a container rule too.
	_, err = r.Decide(Request{ID: "c2", Annotations: criAnn("lab", "web", "sb1", "other")})
	if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "rule 1") {
		t.Errorf("container_type container rule: %v", err)
	}
	// A sandbox lookup failure is reported with its kind.
	_, err = r.Decide(Request{ID: "c3", Annotations: criAnn("lab", "web", "sb1", "x"), SandboxBackend: func(string) (string, error) {
		return "", errs.New(errs.KindState, "state damaged")
	}})
	if errs.KindOf(err) != errs.KindState || !strings.Contains(err.Error(), "sandbox sb1") {
		t.Errorf("lookup failure: %v", err)
	}
}

func TestRouteProgramName(t *testing.T) {
	c := Default()
	c.Runtime.Routing = []RoutingRule{{Pattern: ".*", Runtime: "runc"}}
	r := router(t, c)
	for prog, want := range map[string]string{
		"nexcage-proxmox": BackendProxmox, "nexcage-lxc": BackendProxmox, "nexcage-proxmox-lxc": BackendProxmox,
		"nexcage-runc": BackendRunc, "nexcage-crun": BackendCrun,
		"nexcage": BackendRunc, "nexcage-vm": BackendRunc, "nexcage-x": BackendRunc, "runc": BackendRunc,
	} {
		d, err := r.Decide(Request{ID: "c1", Program: prog, Annotations: criAnn("lab", "web", "sb", "app")})
		if err != nil || d.Backend != want {
			t.Errorf("called as %s: %+v, %v; want %s", prog, d, err, want)
		}
		if _, forced := ProgramBackend(prog); forced && d.Reason != `called as "`+prog+`"` {
			t.Errorf("called as %s: reason %q", prog, d.Reason)
		}
	}
	// --runtime still wins.
	if d, err := r.Decide(Request{ID: "c1", Program: "nexcage-proxmox", Override: "crun"}); err != nil || d.Backend != BackendCrun {
		t.Errorf("override: %+v, %v", d, err)
	}
}

func TestRoutingRuleValidation(t *testing.T) {
	for _, tc := range []struct {
		rule RoutingRule
		want string
	}{
		{RoutingRule{Runtime: "runc"}, "runtime.routing[0].pattern: empty"},
		{RoutingRule{PodNamespace: "(", Runtime: "runc"}, `runtime.routing[0].pod_namespace: "(" is not a valid regular expression`},
		{RoutingRule{PodName: "a)", Runtime: "runc"}, "runtime.routing[0].pod_name"},
		{RoutingRule{ContainerName: "[", Runtime: "runc"}, "runtime.routing[0].container_name"},
		{RoutingRule{ContainerType: "pod", Runtime: "runc"}, `runtime.routing[0].container_type: "pod" is neither "sandbox" nor "container"`},
		{RoutingRule{PodName: "x", Runtime: "docker"}, "runtime.routing[0].runtime"},
	} {
		c := Default()
		c.Runtime.Routing = []RoutingRule{tc.rule}
		_, err := c.Router()
		if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.rule, err, tc.want)
		}
	}
}
