package proxmox

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
)

// TestFeaturesTellTheTruth checks the Proxmox backend's features against
// its translator: the hooks claimed are accepted, the others refused; seccomp is
// not claimed and a seccomp profile is not applied (only warned about);
// AppArmor and SELinux follow the host; every mount option claimed is
// accepted on a bind mount, and options the translator refuses or only
// warns about are not claimed.
func TestFeaturesTellTheTruth(t *testing.T) {
	f := Features(HostLSM{AppArmor: true}, "1.0.0", "1.3.0")
	if !slices.Equal(f.Hooks, []string{"prestart", "createRuntime", "startContainer", "poststart", "poststop"}) {
		t.Errorf("hooks %v, want the five nexcage runs", f.Hooks)
	}
	for _, h := range f.Hooks {
		in := baseInput(t)
		in.Spec.Hooks = &specs.Hooks{}
		l := []specs.Hook{{Path: "/bin/true"}}
		switch h {
		case "prestart":
			//lint:ignore SA1019 the deprecated prestart hooks are still run
			in.Spec.Hooks.Prestart = l
		case "createRuntime":
			in.Spec.Hooks.CreateRuntime = l
		case "startContainer":
			in.Spec.Hooks.StartContainer = l
		case "poststart":
			in.Spec.Hooks.Poststart = l
		case "poststop":
			in.Spec.Hooks.Poststop = l
		}
		if _, err := Translate(in); err != nil {
			t.Errorf("a %s hook: %v, want accepted", h, err)
		}
	}
	for name, hk := range map[string]*specs.Hooks{
		"createContainer": {CreateContainer: []specs.Hook{{Path: "/bin/true"}}},
	} {
		in := baseInput(t)
		in.Spec.Hooks = hk
		if _, err := Translate(in); errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "hooks."+name) {
			t.Errorf("a %s hook: %v, want refused by name", name, err)
		}
	}
	in := baseInput(t)
	if f.Linux.Seccomp == nil || f.Linux.Seccomp.Enabled == nil || *f.Linux.Seccomp.Enabled {
		t.Errorf("seccomp claimed: %+v", f.Linux.Seccomp)
	}
	in = baseInput(t)
	in.Spec.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "linux.seccomp") }) {
		t.Errorf("seccomp profile not reported as ignored: %q", r.Warnings)
	}
	if !*f.Linux.Apparmor.Enabled || *f.Linux.Selinux.Enabled {
		t.Errorf("LSMs %v %v, want the host's (apparmor only)", *f.Linux.Apparmor.Enabled, *f.Linux.Selinux.Enabled)
	}
	if g := Features(HostLSM{}, "1.0.0", "1.3.0"); *g.Linux.Apparmor.Enabled || *g.Linux.Selinux.Enabled {
		t.Errorf("LSMs claimed on a host without them")
	}
	if *f.Linux.Cgroup.V1 || !*f.Linux.Cgroup.V2 || slices.Contains(f.Linux.Namespaces, "time") {
		t.Errorf("cgroup %+v namespaces %v", f.Linux.Cgroup, f.Linux.Namespaces)
	}
	for _, o := range f.MountOptions {
		in := baseInput(t)
		in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/srv", Type: "bind", Source: filepath.Join(in.BundleDir, "data"), Options: []string{"rbind", o}})
		r, err := Translate(in)
		if err != nil {
			t.Errorf("claimed mount option %q refused: %v", o, err)
			continue
		}
		if slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, `"`+o+`"`) }) {
			t.Errorf("claimed mount option %q is only warned about: %q", o, r.Warnings)
		}
	}
	for _, o := range []string{"nosymfollow", "atime", "diratime", "mand", "remount", "iversion"} {
		if slices.Contains(f.MountOptions, o) {
			t.Errorf("mount option %q claimed", o)
		}
	}
	if len(f.Linux.Capabilities) < 38 || !slices.Contains(f.Linux.Capabilities, "CAP_NET_ADMIN") {
		t.Errorf("capabilities %v", f.Linux.Capabilities)
	}
}
