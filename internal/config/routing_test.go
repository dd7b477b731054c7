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
