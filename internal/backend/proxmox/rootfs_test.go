package proxmox

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
)

// planString renders the init helper's mounts one per line:
// kind destination source flags data.
func planString(r *inithelper.RootfsSetup) []string {
	var out []string
	for _, m := range r.Mounts {
		out = append(out, strings.TrimSpace(strings.Join([]string{m.Kind, m.Destination, m.Source, strings.Join(m.Flags, ","), strings.Join(m.Data, ",")}, " ")))
	}
	return out
}

// TestRootfsPlanDefaultSpec: runc's default spec becomes, in its order, a
// rebind of LXC's /proc, a fresh /dev with the spec's options, fresh
// devpts (newinstance), shm and mqueue under it, and rebinds of LXC's
// /sys and cgroups with the spec's flags; then the masked and read-only
// paths; and no lxc.mount.entry for /dev/shm or /dev/mqueue (LXC would
// mount them in its own /dev, hidden by the fresh one).
func TestRootfsPlanDefaultSpec(t *testing.T) {
	in := baseInput(t)
	in.Spec.Mounts = append(in.Spec.Mounts,
		specs.Mount{Destination: "/srv/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/run/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1k"}},
		specs.Mount{Destination: "/var/run/x", Type: "tmpfs", Source: "tmpfs"})
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rootfs == nil {
		t.Fatal("no rootfs setup for the init helper")
	}
	want := []string{
		"rebind /proc",
		"dev /dev tmpfs nosuid,strictatime mode=755,size=65536k",
		"devpts /dev/pts devpts nosuid,noexec newinstance,ptmxmode=0666,mode=0620,gid=5",
		"tmpfs /dev/shm shm nosuid,noexec,nodev mode=1777,size=65536k",
		"mqueue /dev/mqueue mqueue nosuid,noexec,nodev",
		"rebind /sys  nosuid,noexec,nodev,ro",
		"rebind /sys/fs/cgroup  nosuid,noexec,nodev,relatime,ro",
		"rebind /srv/data",
		"rebind /run/t",
		// resolved inside the image: /var/run -> /run
		"rebind /run/x",
	}
	if got := planString(r.Rootfs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := strings.Join(r.Rootfs.MaskedPaths, " "); got != strings.Join(in.Spec.Linux.MaskedPaths, " ") {
		t.Errorf("masked paths = %s", got)
	}
	if got := strings.Join(r.Rootfs.ReadonlyPaths, " "); got != strings.Join(in.Spec.Linux.ReadonlyPaths, " ") {
		t.Errorf("read-only paths = %s", got)
	}
	for _, l := range rawLines(r) {
		if strings.Contains(l, "dev/shm") || strings.Contains(l, "dev/mqueue") {
			t.Errorf("raw line %q: /dev/shm and /dev/mqueue belong to the init helper's /dev", l)
		}
	}
	if err := r.Rootfs.Validate(); err != nil {
		t.Errorf("the helper would refuse the plan: %v", err)
	}
	// It travels in the init protocol's process message.
	data, _ := json.Marshal(inithelper.Message{Type: inithelper.MsgProcess, Process: r.Process, Rootfs: r.Rootfs})
	var back inithelper.Message
	if err := json.Unmarshal(data, &back); err != nil || back.Rootfs == nil || len(back.Rootfs.Mounts) != len(want) {
		t.Errorf("message round trip: %v %+v", err, back.Rootfs)
	}
}

// TestRootfsPlanWithoutDev: without a /dev mount in the spec, LXC's /dev
// stays, and /dev/pts, /dev/shm, /dev/mqueue are LXC's (entries) bound
// again in order.
func TestRootfsPlanWithoutDev(t *testing.T) {
	in := baseInput(t)
	var ms []specs.Mount
	for _, m := range in.Spec.Mounts {
		if m.Destination != "/dev" {
			ms = append(ms, m)
		}
	}
	in.Spec.Mounts = ms
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rebind /proc", "rebind /dev/pts  nosuid,noexec", "rebind /dev/shm", "rebind /dev/mqueue",
		"rebind /sys  nosuid,noexec,nodev,ro", "rebind /sys/fs/cgroup  nosuid,noexec,nodev,relatime,ro"}
	if got := planString(r.Rootfs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if raw := strings.Join(rawLines(r), "\n"); !strings.Contains(raw, "shm dev/shm tmpfs") || !strings.Contains(raw, "mqueue dev/mqueue mqueue") {
		t.Errorf("LXC entries for /dev/shm and /dev/mqueue missing: %s", raw)
	}
}

// TestRootfsPlanTemplateInit: a container keeping its template's init has
// no init helper: no plan, masked paths ignored with a warning.
func TestRootfsPlanTemplateInit(t *testing.T) {
	in := baseInput(t)
	in.Spec.Process = nil
	in.KeepTemplateInit, in.InitHelperDir = true, ""
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rootfs != nil {
		t.Errorf("rootfs setup without an init helper: %+v", r.Rootfs)
	}
	if !strings.Contains(strings.Join(r.Warnings, "\n"), "linux.maskedPaths/readonlyPaths") {
		t.Errorf("no warning about the ignored paths: %q", r.Warnings)
	}
}

// TestRootfsOptionsChecked: options of the helper's mounts come from a
// known set; anything else is refused, naming the mount.
func TestRootfsOptionsChecked(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(in *Input)
		kind   errs.Kind
		want   string
	}{
		{"unknown /dev option", func(in *Input) { in.Spec.Mounts[1].Options = append(in.Spec.Mounts[1].Options, "exec=1") },
			errs.KindUnsupported, `mounts[1] (/dev): tmpfs option "exec=1"`},
		{"bad tmpfs mode", func(in *Input) { in.Spec.Mounts[1].Options = []string{"mode=9x"} },
			errs.KindUnsupported, `mounts[1] (/dev): tmpfs option "mode=9x"`},
		{"unknown devpts option", func(in *Input) { in.Spec.Mounts[2].Options = []string{"newinstance", "size=1"} },
			errs.KindUnsupported, `mounts[2] (/dev/pts): devpts option "size=1"`},
		{"shm source with a comma", func(in *Input) { in.Spec.Mounts[3].Source = "a,b" },
			errs.KindInvalidBundle, `mounts[3] (/dev/shm): source "a,b"`},
		{"relative masked path", func(in *Input) { in.Spec.Linux.MaskedPaths = []string{"masked-relpath"} },
			errs.KindInvalidBundle, `linux.maskedPaths[0]: path "masked-relpath" is not absolute`},
		{"masked helper dir", func(in *Input) { in.Spec.Linux.MaskedPaths = []string{"/.nexcage/x"} },
			errs.KindInvalidBundle, `linux.maskedPaths[0]`},
		{"read-only root", func(in *Input) { in.Spec.Linux.ReadonlyPaths = []string{"/x/../"} },
			errs.KindInvalidBundle, `linux.readonlyPaths[0]`},
		{"control character", func(in *Input) { in.Spec.Linux.ReadonlyPaths = []string{"/a\nb"} },
			errs.KindInvalidBundle, `control character`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			tc.mutate(&in)
			_, err := Translate(in)
			if err == nil {
				t.Fatal("Translate succeeded, want an error")
			}
			if errs.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v (kind %v), want kind %v containing %q", err, errs.KindOf(err), tc.kind, tc.want)
			}
		})
	}
}

// TestBindIgnoresTmpfsData: runtime-tools' mounts test gives its bind
// mounts tmpfs options (mode=755, size=1k); the kernel ignores a bind's
// data, as runc does: accepted with a warning.
func TestBindIgnoresTmpfsData(t *testing.T) {
	in := baseInput(t)
	in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/mnt/etc-shared", Source: "data",
		Options: []string{"nosuid", "strictatime", "mode=755", "size=1k", "bind", "shared"}})
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(r.Warnings, "\n"); !strings.Contains(w, `option "mode=755" has no effect on a bind mount`) {
		t.Errorf("warnings = %q", r.Warnings)
	}
	if got := planString(r.Rootfs); got[len(got)-1] != "rebind /mnt/etc-shared" {
		t.Errorf("plan = %q", got)
	}
}

// TestOOMScoreAdj: process.oomScoreAdj goes to the init helper.
func TestOOMScoreAdj(t *testing.T) {
	in := baseInput(t)
	v := 500
	in.Spec.Process.OOMScoreAdj = &v
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Process.OOMScoreAdj == nil || *r.Process.OOMScoreAdj != 500 {
		t.Errorf("oomScoreAdj = %v", r.Process.OOMScoreAdj)
	}
	v = 1001
	if _, err := Translate(in); errs.KindOf(err) != errs.KindInvalidBundle {
		t.Errorf("oomScoreAdj 1001: %v", err)
	}
}
