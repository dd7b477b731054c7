package proxmox

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
)

// mountInput is baseInput with a host tree for mount sources: DIR/data
// (directory), DIR/file, DIR/hosts, DIR/sock (a unix socket), DIR/link ->
// data, DIR/with space (directory), and in the image: /var/run -> /run,
// /etc/resolv.conf -> ../run/resolv.conf, /etc/dirhere (directory),
// /etc/filehere (file), /slash -> /, /up -> ../../../../etc.
func mountInput(t *testing.T) Input {
	t.Helper()
	in := baseInput(t)
	in.Spec.Mounts = nil // only the mounts of the row
	dir := in.BundleDir
	for name, data := range map[string]string{"hosts": "127.0.0.1 localhost\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"with space", "rootfs/etc/dirhere"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs/etc/filehere"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"link": "data", "rootfs/etc/resolv.conf": "../run/resolv.conf", "rootfs/slash": "/", "rootfs/up": "../../../../etc"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return in
}

func bind(dest, src string, opts ...string) specs.Mount {
	return specs.Mount{Destination: dest, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
}

// TestTranslateMounts checks every mount rule of docs/MAPPING.md: which
// mounts become mpN, which lxc.mount.entry (and exactly how), and which
// mount targets the packer must create.
func TestTranslateMounts(t *testing.T) {
	tests := []struct {
		name    string
		mounts  []specs.Mount
		mutate  func(in *Input)
		mps     []string // exact mpN values, in order
		entries []string // exact lxc.mount.entry values, in order
		targets []MountTarget
		warn    string
	}{
		{name: "directory without symlinks stays mpN",
			mounts:  []specs.Mount{bind("/srv/data", "data", "ro", "nosuid")},
			mps:     []string{"DIR/data,mp=/srv/data,ro=1,mountoptions=nosuid"},
			targets: []MountTarget{{Path: "/srv/data"}}},
		{name: "host source through a symlink is resolved",
			mounts:  []specs.Mount{bind("/srv/data", "link")},
			mps:     []string{"DIR/data,mp=/srv/data"},
			targets: []MountTarget{{Path: "/srv/data"}}},
		{name: "containerd's file binds",
			mounts: []specs.Mount{bind("/etc/hosts", "hosts", "rw"), bind("/etc/hostname", "file", "ro"), bind("/etc/resolv.conf", "hosts")},
			entries: []string{
				"DIR/hosts etc/hosts none rbind,create=file 0 0",
				"DIR/file etc/hostname none rbind,ro,create=file 0 0",
				// /etc/resolv.conf is a symlink to ../run/resolv.conf in the image.
				"DIR/hosts run/resolv.conf none rbind,create=file 0 0",
			},
			targets: []MountTarget{{Path: "/etc/hosts", File: true}, {Path: "/etc/hostname", File: true}, {Path: "/run/resolv.conf", File: true}}},
		{name: "socket bind",
			mounts:  []specs.Mount{{Destination: "/run/app.sock", Type: "bind", Source: "sock", Options: []string{"bind"}}},
			entries: []string{"DIR/sock run/app.sock none bind,create=file 0 0"},
			targets: []MountTarget{{Path: "/run/app.sock", File: true}}},
		{name: "secret file under /run",
			mounts:  []specs.Mount{bind("/run/secrets/x", "file", "ro")},
			entries: []string{"DIR/file run/secrets/x none rbind,ro,create=file 0 0"},
			targets: []MountTarget{{Path: "/run/secrets/x", File: true}}},
		{name: "destination under a symlinked /var/run",
			mounts:  []specs.Mount{bind("/var/run/x", "data"), bind("/var/run/y.sock", "sock")},
			entries: []string{"DIR/data run/x none rbind,create=dir 0 0", "DIR/sock run/y.sock none rbind,create=file 0 0"},
			targets: []MountTarget{{Path: "/run/x"}, {Path: "/run/y.sock", File: true}}},
		{name: "symlink leaving the rootfs stays inside",
			mounts:  []specs.Mount{bind("/up/x", "data")},
			entries: []string{"DIR/data etc/x none rbind,create=dir 0 0"},
			targets: []MountTarget{{Path: "/etc/x"}}},
		{name: "directory under /dev",
			mounts:  []specs.Mount{bind("/dev/foo", "data")},
			entries: []string{"DIR/data dev/foo none rbind,create=dir 0 0"}},
		{name: "dev shm tmpfs with the spec's options",
			mounts:  []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=1g"}}},
			entries: []string{"shm dev/shm tmpfs nosuid,noexec,nodev,mode=1777,size=1g,create=dir 0 0"}},
		{name: "dev shm tmpfs without options gets runc's defaults",
			mounts:  []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Source: "shm"}},
			entries: []string{"shm dev/shm tmpfs nosuid,noexec,nodev,mode=1777,size=65536k,create=dir 0 0"}},
		{name: "dev shm of type shm",
			mounts:  []specs.Mount{{Destination: "/dev/shm", Type: "shm", Source: "shm"}},
			entries: []string{"shm dev/shm tmpfs nosuid,noexec,nodev,mode=1777,size=65536k,create=dir 0 0"}},
		{name: "dev shm bound from the host (a sandbox's shm)",
			mounts:  []specs.Mount{bind("/dev/shm", "data")},
			entries: []string{"DIR/data dev/shm none rbind,create=dir 0 0"}},
		{name: "dev mqueue",
			mounts:  []specs.Mount{{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}}},
			entries: []string{"mqueue dev/mqueue mqueue nosuid,noexec,nodev,create=dir 0 0"}},
		{name: "tmpfs with ordinary options",
			mounts:  []specs.Mount{{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1g", "nosuid", "nodev", "noexec", "nr_inodes=1k", "huge=within_size", "rw"}}},
			entries: []string{"tmpfs tmp tmpfs mode=755,size=1g,nosuid,nodev,noexec,nr_inodes=1k,huge=within_size,rw,create=dir 0 0"},
			targets: []MountTarget{{Path: "/tmp"}}},
		{name: "tmpfs under a symlinked destination",
			mounts:  []specs.Mount{{Destination: "/var/run/t", Type: "tmpfs", Source: "tmpfs"}},
			entries: []string{"tmpfs run/t tmpfs create=dir 0 0"},
			targets: []MountTarget{{Path: "/run/t"}}},
		{name: "a directory nested in an earlier entry keeps the spec's order",
			mounts: []specs.Mount{{Destination: "/srv", Type: "tmpfs", Source: "tmpfs"}, bind("/srv/data", "data"), bind("/opt", "data")},
			mps:    []string{"DIR/data,mp=/opt"},
			entries: []string{
				"tmpfs srv tmpfs create=dir 0 0",
				"DIR/data srv/data none rbind,create=dir 0 0",
			},
			targets: []MountTarget{{Path: "/srv"}, {Path: "/srv/data"}, {Path: "/opt"}}},
		{name: "blanks and backslashes are escaped for getmntent",
			mounts:  []specs.Mount{bind("/my dir/a\\b", "with space")},
			entries: []string{`DIR/with\040space my\040dir/a\134b none rbind,create=dir 0 0`},
			targets: []MountTarget{{Path: "/my dir/a\\b"}}},
		{name: "template rootfs nexcage cannot see: entries, resolved by LXC",
			mutate:  func(in *Input) { in.Rootfs = "" },
			mounts:  []specs.Mount{bind("/srv/data", "data"), bind("/var/run/x", "file")},
			entries: []string{"DIR/data srv/data none rbind,create=dir 0 0", "DIR/file var/run/x none rbind,create=file 0 0"}},
		{name: "Proxmox volume at a symlinked destination gets the resolved path",
			mounts:  []specs.Mount{bind("/var/run/vol", "local-lvm:8")},
			mps:     []string{"local-lvm:8,mp=/run/vol"},
			targets: []MountTarget{{Path: "/run/vol"}}},
		{name: "options a mount point cannot carry are warned",
			mounts: []specs.Mount{bind("/srv/data", "data", "relatime")},
			mps:    []string{"DIR/data,mp=/srv/data"}, targets: []MountTarget{{Path: "/srv/data"}}, warn: `"relatime"`},
		{name: "options an entry cannot carry are warned",
			mounts:  []specs.Mount{bind("/etc/hosts", "hosts", "discard")},
			entries: []string{"DIR/hosts etc/hosts none rbind,create=file 0 0"},
			targets: []MountTarget{{Path: "/etc/hosts", File: true}}, warn: `"discard"`},
		{name: "standard mounts are LXC's own",
			mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
				{Destination: "/dev/pts", Type: "devpts", Source: "devpts"}, {Destination: "/sys", Type: "sysfs", Source: "sysfs"},
				{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := mountInput(t)
			in.Spec.Mounts = tc.mounts
			if tc.mutate != nil {
				tc.mutate(&in)
			}
			r, err := Translate(in)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			var mps, entries []string
			for _, o := range r.Options {
				if strings.HasPrefix(o.Name, "mp") {
					mps = append(mps, strings.ReplaceAll(o.Value, in.BundleDir, "DIR"))
				}
			}
			// The init helper's own mount (when translation is given a
			// helper directory) is not the spec's.
			helperDest := " " + strings.TrimPrefix(inithelper.MountPoint, "/") + " "
			for _, l := range r.Raw {
				if l.Key == "lxc.mount.entry" && !strings.Contains(l.Value, helperDest) {
					entries = append(entries, strings.ReplaceAll(l.Value, in.BundleDir, "DIR"))
				}
			}
			var targets []MountTarget
			for _, m := range r.MountTargets {
				if m.Path != inithelper.MountPoint {
					targets = append(targets, m)
				}
			}
			if strings.Join(mps, "\n") != strings.Join(tc.mps, "\n") {
				t.Errorf("mount points\n%q\nwant\n%q", mps, tc.mps)
			}
			if strings.Join(entries, "\n") != strings.Join(tc.entries, "\n") {
				t.Errorf("lxc.mount.entry lines\n%q\nwant\n%q", entries, tc.entries)
			}
			if len(targets) != len(tc.targets) {
				t.Errorf("mount targets %v, want %v", targets, tc.targets)
			} else {
				for i := range tc.targets {
					if targets[i] != tc.targets[i] {
						t.Errorf("mount targets %v, want %v", targets, tc.targets)
						break
					}
				}
			}
			if w := strings.Join(r.Warnings, "\n"); (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want one with %q", r.Warnings, tc.warn)
			}
		})
	}
}

// TestTranslateMountErrors checks the mount refusals: kind, field, and why.
func TestTranslateMountErrors(t *testing.T) {
	tests := []struct {
		name  string
		mount specs.Mount
		kind  errs.Kind
		want  string
	}{
		{"missing source", bind("/d", "nope"), errs.KindInvalidBundle, "mounts[0] (/d) source"},
		{"file source onto a directory of the image", bind("/etc/dirhere", "file"), errs.KindInvalidBundle, "is a file but /etc/dirhere in the image is a directory"},
		{"directory source onto a file of the image", bind("/etc/filehere", "data"), errs.KindInvalidBundle, "is a directory but /etc/filehere in the image is not"},
		{"destination resolving to /", bind("/slash", "data"), errs.KindInvalidBundle, "resolves to /"},
		{"source with a newline", bind("/d", "da\nta"), errs.KindInvalidBundle, "control character"},
		{"destination with a newline", bind("/d\nlxc.hook.start: /x", "data"), errs.KindInvalidBundle, "destination"},
		{"Proxmox volume under /dev", bind("/dev/vol", "local-lvm:8"), errs.KindUnsupported, "under /dev"},
		{"mqueue elsewhere", specs.Mount{Destination: "/mq", Type: "mqueue", Source: "mqueue"}, errs.KindUnsupported, "mounts[0] (/mq)"},
		{"tmpfs option injection", specs.Mount{Destination: "/t", Type: "tmpfs", Options: []string{"size=1m 0 0\nlxc.x"}}, errs.KindUnsupported, "tmpfs option"},
		{"tmpfs over a file of the image", specs.Mount{Destination: "/etc/filehere", Type: "tmpfs"}, errs.KindInvalidBundle, "not a directory"},
		{"bind option not allowed", bind("/d", "data", "errors=remount-ro"), errs.KindUnsupported, `mount option "errors=remount-ro"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := mountInput(t)
			in.Spec.Mounts = []specs.Mount{tc.mount}
			_, err := Translate(in)
			if err == nil {
				t.Fatal("Translate succeeded, want an error")
			}
			if k := errs.KindOf(err); k != tc.kind {
				t.Errorf("kind %v, want %v (%v)", k, tc.kind, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "test-oci") {
				t.Errorf("error %q lacks %q or the container", err, tc.want)
			}
		})
	}
}

func TestFstabEscape(t *testing.T) {
	for in, want := range map[string]string{"/a/b": "/a/b", "a b": `a\040b`, `a\b`: `a\134b`, "a\tb": `a\011b`, "": ""} {
		if got := fstabEscape(in); got != want {
			t.Errorf("fstabEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
