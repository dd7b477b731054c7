package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/nexcage/nexcage/"

// allowedProductPackages are the packages of this module outside pvesim's
// own tree that pvesim may import: generic helpers that neither validate
// nor write Proxmox configs. None are needed today; adding one needs a
// reason next to it.
var allowedProductPackages = map[string]string{}

// TestPvesimIndependentOfProduct fails when the pvesim binary depends on
// nexcage's own code (internal/pve, internal/backend/..., internal/config,
// internal/bundle, internal/lazyre, ...): pvesim checks what nexcage
// writes, so it must not share the code that wrote it (issue 12 item 8).
func TestPvesimIndependentOfProduct(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go tool to list dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var own []string
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		rel := strings.TrimPrefix(pkg, module)
		switch {
		case rel == "cmd/pvesim", rel == "internal/pvesim", strings.HasPrefix(rel, "internal/pvesim/"):
			own = append(own, rel)
		case allowedProductPackages[rel] != "":
		default:
			t.Errorf("pvesim depends on product package %s; give pvesim its own copy under internal/pvesim (or name a generic helper in allowedProductPackages with the reason)", pkg)
		}
	}
	if len(own) < 2 {
		t.Fatalf("go list -deps found only %q: the check would pass vacuously", own)
	}
}
