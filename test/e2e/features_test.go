package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestFeaturesPerBackend: `features` answers for the backend a container
// would get, with the installed runtimes: runc's own output passed
// through, crun's own output or (crun before 1.8.6) what its --version
// states, and the Proxmox backend's mapping with the five hooks it runs and no seccomp.
func TestFeaturesPerBackend(t *testing.T) {
	n := NewNexcage(t, WriteConfig(t, `{"runtime": {"routing": [{"pattern": "^ci-.*$", "runtime": "crun"}]}}`))
	type doc struct {
		OCIVersionMax string
		Hooks         *[]string
		Linux         *struct {
			Seccomp *struct{ Enabled *bool }
		}
		Annotations map[string]string
	}
	get := func(args ...string) doc {
		t.Helper()
		var d doc
		out := n.Must(args...).Stdout
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
		return d
	}

	runcOwn, err := exec.Command("runc", "features").Output()
	if err != nil {
		t.Fatalf("runc features: %v (runc >= 1.1 is installed by make deps)", err)
	}
	var own doc
	if err := json.Unmarshal(runcOwn, &own); err != nil {
		t.Fatal(err)
	}
	d := get("--runtime", "runc", "features")
	if d.Annotations["org.nexcage.backend"] != "runc" || d.OCIVersionMax != own.OCIVersionMax || d.Hooks == nil || len(*d.Hooks) != len(*own.Hooks) ||
		d.Annotations["org.opencontainers.runc.version"] != own.Annotations["org.opencontainers.runc.version"] {
		t.Errorf("runc: %+v, runc's own: %+v", d, own)
	}

	d = get("features", "--id", "ci-1")
	if d.Annotations["org.nexcage.backend"] != "crun" || !strings.Contains(d.Annotations["org.nexcage.route"], "^ci-.*$") {
		t.Errorf("crun by route: %+v", d)
	}
	if crunOwn, err := exec.Command("crun", "features").Output(); err == nil {
		var own doc
		if err := json.Unmarshal(crunOwn, &own); err != nil || d.OCIVersionMax != own.OCIVersionMax {
			t.Errorf("crun: %+v, crun's own: %s", d, crunOwn)
		}
	} else if !strings.Contains(d.Annotations["org.nexcage.features.source"], "--version") || d.Hooks != nil {
		// An old crun: only its --version's statements, hooks unknown.
		t.Errorf("crun without a features command: %+v", d)
	}

	for _, args := range [][]string{{"features"}, {"--runtime", "lxc", "features"}} {
		d := get(args...)
		if d.Annotations["org.nexcage.backend"] != "proxmox-lxc" || d.Hooks == nil || len(*d.Hooks) != 5 ||
			d.Linux == nil || d.Linux.Seccomp == nil || *d.Linux.Seccomp.Enabled || d.OCIVersionMax != "1.3.0" {
			t.Errorf("%q: %+v", args, d)
		}
	}
}
