package proxmox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

func ptr[T any](v T) *T { return &v }

// baseInput is a runc-spec bundle with a bundle dir holding "data" and "file".
func baseInput(t *testing.T) Input {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"etc", "run", "usr/bin", "srv"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	// As in Debian images: /var/run is an absolute symlink to /run.
	if err := os.Symlink("/run", filepath.Join(rootfs, "var/run")); err != nil {
		t.Fatal(err)
	}
	s := bundle.DefaultSpec()
	s.Root.Readonly = false
	s.Process.NoNewPrivileges = false
	s.Process.Capabilities = nil
	s.Process.Rlimits = nil
	s.Hostname = ""
	return Input{ID: "test-oci", Spec: s, BundleDir: dir, Storage: "local-lvm", Bridge: "vmbr0", Unprivileged: true,
		InitHelperDir: testHelperDir, Rootfs: rootfs}
}

// testHelperDir is the init helper directory translations are given.
const testHelperDir = "/var/lib/lxc/.nexcage/test-oci-abc"

// droppedRawKeys are raw keys some Proxmox versions drop (proxmox-pct.md
// §9.3) or that would narrow LXC's own capability set below what the
// init helper needs: no translation of a process may write them.
var droppedRawKeys = []string{"lxc.init.uid", "lxc.init.gid", "lxc.init.groups", "lxc.init.cwd",
	"lxc.environment", "lxc.prlimit.", "lxc.cap.keep", "lxc.cap.drop", "lxc.no_new_privs"}

func checkNoDroppedKeys(t *testing.T, r *Request) {
	t.Helper()
	for _, l := range r.Raw {
		for _, k := range droppedRawKeys {
			if strings.HasPrefix(l.Key, k) {
				t.Errorf("raw key %s: %q written; the init helper carries it", l.Key, l.Value)
			}
		}
	}
}

// Node versions as `pveversion -v` reports them (proxmox-pct.md §9.1).
var (
	node84 = pve.NodeVersion{Manager: "8.4.1", Container: "5.3.5", LXC: "6.0.0-1"}
	node90 = pve.NodeVersion{Manager: "9.0.3", Container: "6.0.9", LXC: "6.0.4-2"}
	// node91 is a late 9.1, which keeps every raw key nexcage may write.
	node91 = pve.NodeVersion{Manager: "9.1.4", Container: "6.1.10", LXC: "6.0.5-3"}
)

func rawLines(r *Request) []string {
	out := make([]string, len(r.Raw))
	for i, l := range r.Raw {
		out[i] = l.Key + ": " + l.Value
	}
	return out
}

func optMap(r *Request) map[string]string {
	m := map[string]string{}
	for _, o := range r.Options {
		m[o.Name] = o.Value
	}
	return m
}

func TestTranslateDefaults(t *testing.T) {
	in := baseInput(t)
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []pve.Option{
		{Name: "hostname", Value: "test-oci"},
		{Name: "rootfs", Value: "local-lvm:4"},
		// No console and no gettys for an OCI process (privileged
		// unmanaged containers would not start with ttys but no console).
		{Name: "console", Value: "0"},
		{Name: "tty", Value: "0"},
		{Name: "net0", Value: "name=eth0,bridge=vmbr0,ip=dhcp"},
		{Name: "unprivileged", Value: "1"},
		{Name: "tags", Value: "nexcage"},
	}
	if len(r.Options) != len(want) {
		t.Fatalf("options = %v, want %v", r.Options, want)
	}
	for i := range want {
		if r.Options[i] != want[i] {
			t.Errorf("option %d = %v, want %v", i, r.Options[i], want[i])
		}
	}
	wantRaw := []string{
		"lxc.init.cmd: /.nexcage/nexcage __nexcage-init /.nexcage/init.sock",
		"lxc.mount.entry: " + testHelperDir + " .nexcage none bind,ro,create=dir 0 0",
		// runc's default spec's /dev/shm and /dev/mqueue are mounted by
		// the init helper under its fresh /dev (Rootfs, below).
	}
	if got := rawLines(r); strings.Join(got, "\n") != strings.Join(wantRaw, "\n") {
		t.Errorf("raw = %q, want %q", got, wantRaw)
	}
	if r.Template != "" || !r.Unprivileged {
		t.Errorf("unexpected request %+v", r)
	}
	p := r.Process
	if p == nil || strings.Join(p.Args, " ") != "sh" || p.Cwd != "/" ||
		strings.Join(p.Env, "|") != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|TERM=xterm" {
		t.Errorf("process for the init helper = %+v", p)
	}
}

// TestTranslateRows checks one mapping row each: the options and raw lines
// a spec change must produce.
func TestTranslateRows(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(in *Input)
		opts     map[string]string // options that must have these values
		noOpts   []string          // options that must be absent
		raw      []string          // raw lines that must be present
		warn     string            // substring of a warning
		mountDir string
	}{
		{name: "hostname from spec", mutate: func(in *Input) { in.Spec.Hostname = "web1" }, opts: map[string]string{"hostname": "web1"}},
		{name: "hostname sanitized", mutate: func(in *Input) { in.ID = "My_App.01--"; in.Spec.Hostname = "" }, opts: map[string]string{"hostname": "my-app.01"}},
		{name: "hostname spec sanitized warns", mutate: func(in *Input) { in.Spec.Hostname = "Bad Host" }, opts: map[string]string{"hostname": "bad-host"}, warn: "not DNS-safe"},
		{name: "memory MiB rounded up", mutate: func(in *Input) { res(in).Memory = &specs.LinuxMemory{Limit: ptr(int64(256*mib + 1))} }, opts: map[string]string{"memory": "257"}},
		{name: "memory minimum 16", mutate: func(in *Input) { res(in).Memory = &specs.LinuxMemory{Limit: ptr(int64(1 * mib))} }, opts: map[string]string{"memory": "16"}, warn: "minimum"},
		{name: "swap is total minus memory", mutate: func(in *Input) {
			res(in).Memory = &specs.LinuxMemory{Limit: ptr(int64(512 * mib)), Swap: ptr(int64(768 * mib))}
		}, opts: map[string]string{"memory": "512", "swap": "256"}},
		{name: "swap equal memory is no swap", mutate: func(in *Input) {
			res(in).Memory = &specs.LinuxMemory{Limit: ptr(int64(512 * mib)), Swap: ptr(int64(512 * mib))}
		}, opts: map[string]string{"swap": "0"}},
		{name: "swap unlimited warns", mutate: func(in *Input) {
			res(in).Memory = &specs.LinuxMemory{Limit: ptr(int64(512 * mib)), Swap: ptr(int64(-1))}
		}, noOpts: []string{"swap"}, warn: "unlimited"},
		{name: "memory reservation", mutate: func(in *Input) { res(in).Memory = &specs.LinuxMemory{Reservation: ptr(int64(1000))} }, raw: []string{"lxc.cgroup2.memory.low: 1000"}},
		{name: "cores from cpuset", mutate: func(in *Input) { res(in).CPU = &specs.LinuxCPU{Cpus: "0-3,6"} }, opts: map[string]string{"cores": "5"}},
		{name: "cpulimit from quota", mutate: func(in *Input) {
			res(in).CPU = &specs.LinuxCPU{Quota: ptr(int64(150000)), Period: ptr(uint64(100000))}
		}, opts: map[string]string{"cpulimit": "1.5"}},
		{name: "cpulimit default period", mutate: func(in *Input) { res(in).CPU = &specs.LinuxCPU{Quota: ptr(int64(50000))} }, opts: map[string]string{"cpulimit": "0.5"}},
		{name: "cpuunits from shares", mutate: func(in *Input) { res(in).CPU = &specs.LinuxCPU{Shares: ptr(uint64(1024))} }, opts: map[string]string{"cpuunits": "100"}},
		{name: "pids", mutate: func(in *Input) { res(in).Pids = &specs.LinuxPids{Limit: ptr(int64(64))} }, raw: []string{"lxc.cgroup2.pids.max: 64"}},
		{name: "unified", mutate: func(in *Input) { res(in).Unified = map[string]string{"memory.high": "1G"} }, raw: []string{"lxc.cgroup2.memory.high: 1G"}},
		{name: "apparmor", mutate: func(in *Input) { in.Spec.Process.ApparmorProfile = "lxc-container-default-cgns" },
			raw: []string{"lxc.apparmor.profile: lxc-container-default-cgns"}},
		{name: "ipc sysctl", mutate: func(in *Input) { in.Spec.Linux.Sysctl = map[string]string{"kernel.shmmax": "1000000"} },
			raw: []string{"lxc.sysctl.kernel.shmmax: 1000000"}},
		{name: "devices", mutate: func(in *Input) {
			in.Spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: ptr(os.FileMode(0o666)), UID: ptr(uint32(0)), GID: ptr(uint32(0))}}
		}, opts: map[string]string{"dev0": "/dev/fuse,mode=0666,uid=0,gid=0"}},
		{name: "root readonly", mutate: func(in *Input) { in.Spec.Root.Readonly = true }, opts: map[string]string{"rootfs": "local-lvm:4,ro=1", "ostype": "unmanaged"}},
		{name: "root readonly replaces a detected ostype", mutate: func(in *Input) { in.Spec.Root.Readonly = true; in.OSType = "alpine" },
			opts: map[string]string{"rootfs": "local-lvm:4,ro=1", "ostype": "unmanaged"}, warn: `ostype "alpine" replaced by "unmanaged"`},
		{name: "root readonly replaces an asked ostype", mutate: func(in *Input) {
			in.Spec.Root.Readonly = true
			in.Spec.Annotations = map[string]string{AnnotationOSType: "debian"}
		}, opts: map[string]string{"ostype": "unmanaged"}, warn: `ostype "debian" replaced`},
		{name: "ostype detected", mutate: func(in *Input) { in.OSType = "alpine" }, opts: map[string]string{"ostype": "alpine"}},
		{name: "bind mount absolute", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: filepath.Join(in.BundleDir, "data"), Options: []string{"rbind", "rw"}})
		}, opts: map[string]string{"mp0": "DIR/data,mp=/data"}, mountDir: "/data"},
		{name: "bind mount relative source ro and options", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/etc/x.conf", Source: "file", Options: []string{"bind", "ro", "nosuid", "nodev", "noexec", "rprivate"}})
		}, noOpts: []string{"mp0"}, raw: []string{"lxc.mount.entry: DIR/file etc/x.conf none bind,ro,nosuid,nodev,noexec,create=file 0 0"}},
		{name: "bind destination with property characters is one fstab field", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/d,ro=0", Type: "bind", Source: "data"})
		}, noOpts: []string{"mp0"}, raw: []string{"lxc.mount.entry: DIR/data d,ro=0 none bind,create=dir 0 0"}},
		{name: "bind destination cleaned and relative", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "srv/a/../b/.", Type: "bind", Source: "data"})
		}, opts: map[string]string{"mp0": "DIR/data,mp=/srv/b"}},
		{name: "bind relatime warned", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/d", Type: "bind", Source: "data", Options: []string{"relatime"}})
		}, opts: map[string]string{"mp0": "DIR/data,mp=/d"}, warn: "relatime"},
		{name: "proxmox volume passes through", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: "local-lvm:8"},
				specs.Mount{Destination: "/vol2", Type: "bind", Source: "local-lvm:vm-100-disk-1"})
		}, opts: map[string]string{"mp0": "local-lvm:8,mp=/vol", "mp1": "local-lvm:vm-100-disk-1,mp=/vol2"}},
		{name: "standard mounts skipped", mutate: func(in *Input) {}, noOpts: []string{"mp0"}},
		{name: "tmpfs becomes mount entry", mutate: func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/run/cache", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=64m", "mode=1777"}})
		}, raw: []string{"lxc.mount.entry: tmpfs run/cache tmpfs nosuid,size=64m,mode=1777,create=dir 0 0"}, mountDir: "/run/cache"},
		{name: "network bridge from config", mutate: func(in *Input) { in.Bridge = "vmbr1" }, opts: map[string]string{"net0": "name=eth0,bridge=vmbr1,ip=dhcp"}},
		{name: "network bridge default", mutate: func(in *Input) { in.Bridge = "" }, opts: map[string]string{"net0": "name=eth0,bridge=vmbr0,ip=dhcp"}},
		{name: "netDevices", mutate: func(in *Input) {
			in.Spec.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth5": {Name: "data0"}, "dummy1": {}}
		}, raw: []string{"lxc.net.32.type: phys", "lxc.net.32.link: dummy1", "lxc.net.32.name: dummy1", "lxc.net.33.link: eth5", "lxc.net.33.name: data0", "lxc.net.33.flags: up"}},
		{name: "unprivileged from config", mutate: func(in *Input) { in.Unprivileged = false }, opts: map[string]string{"unprivileged": "0"}},
		{name: "idmap within the node's range", mutate: func(in *Input) {
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 1000, HostID: 101000, Size: 1}}
			in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		}, raw: []string{"lxc.idmap: u 0 100000 1000", "lxc.idmap: u 1000 101000 1", "lxc.idmap: g 0 100000 65536"}, opts: map[string]string{"unprivileged": "1"}},
		{name: "own idmap inside the node's range", mutate: func(in *Input) {
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = defaultIDMap
			in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 10}, {ContainerID: 1000, HostID: 100010, Size: 10}}
		}, raw: []string{"lxc.idmap: u 0 100000 65536", "lxc.idmap: g 0 100000 10", "lxc.idmap: g 1000 100010 10"}, opts: map[string]string{"unprivileged": "0"}},
		{name: "own idmap, privileged config (runtime-tools' linux_uid_mappings)", mutate: func(in *Input) {
			in.Unprivileged = false
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}
			in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 3000}}
		}, raw: []string{"lxc.idmap: u 0 1000 2000", "lxc.idmap: g 0 1000 3000"}, opts: map[string]string{"unprivileged": "0"}},
		{name: "idmap without a user namespace, privileged", mutate: func(in *Input) {
			in.Unprivileged = false
			in.Spec.Linux.UIDMappings = defaultIDMap
			in.Spec.Linux.GIDMappings = defaultIDMap
		}, raw: []string{"lxc.idmap: u 0 100000 65536", "lxc.idmap: g 0 100000 65536"}, opts: map[string]string{"unprivileged": "0"}},
		{name: "default idmap adds nothing", mutate: func(in *Input) {
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = defaultIDMap
			in.Spec.Linux.GIDMappings = defaultIDMap
		}, opts: map[string]string{"unprivileged": "1"}},
		{name: "annotation storage and size", mutate: func(in *Input) {
			in.Spec.Annotations = map[string]string{AnnotationStorage: "fast", AnnotationRootfsSize: "8G"}
		}, opts: map[string]string{"rootfs": "fast:8"}},
		{name: "annotation bridge", mutate: func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationBridge: "vmbr9"} },
			opts: map[string]string{"net0": "name=eth0,bridge=vmbr9,ip=dhcp"}},
		{name: "annotation features", mutate: func(in *Input) {
			in.Spec.Annotations = map[string]string{AnnotationFeatures: "nesting=1,keyctl=on,mount=nfs;cifs"}
		}, opts: map[string]string{"features": "nesting=1,keyctl=1,mount=nfs;cifs"}},
		{name: "annotation unprivileged", mutate: func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationUnprivileged: "0"} },
			opts: map[string]string{"unprivileged": "0"}},
		{name: "annotation ostype", mutate: func(in *Input) {
			in.OSType = "debian"
			in.Spec.Annotations = map[string]string{AnnotationOSType: "unmanaged"}
		},
			opts: map[string]string{"ostype": "unmanaged"}},
		{name: "annotation tags", mutate: func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationTags: "web;Prod,nexcage"} },
			opts: map[string]string{"tags": "nexcage;web;prod"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			tc.mutate(&in)
			r, err := Translate(in)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got := optMap(r)
			for k, v := range tc.opts {
				v = strings.ReplaceAll(v, "DIR", in.BundleDir)
				if got[k] != v {
					t.Errorf("option %s = %q, want %q (all: %v)", k, got[k], v, r.Options)
				}
			}
			for _, k := range tc.noOpts {
				if _, ok := got[k]; ok {
					t.Errorf("option %s set to %q, want absent", k, got[k])
				}
			}
			lines := strings.Join(rawLines(r), "\n") + "\n"
			for _, l := range tc.raw {
				l = strings.ReplaceAll(l, "DIR", in.BundleDir)
				if !strings.Contains(lines, l+"\n") {
					t.Errorf("raw line %q missing in:\n%s", l, lines)
				}
			}
			if tc.warn != "" && !strings.Contains(strings.Join(r.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q lack %q", r.Warnings, tc.warn)
			}
			checkNoDroppedKeys(t, r)
			if tc.mountDir != "" {
				found := false
				for _, m := range r.MountTargets {
					found = found || m.Path == tc.mountDir
				}
				if !found {
					t.Errorf("MountTargets %v lack %s", r.MountTargets, tc.mountDir)
				}
			}
		})
	}
}

func res(in *Input) *specs.LinuxResources {
	if in.Spec.Linux.Resources == nil {
		in.Spec.Linux.Resources = &specs.LinuxResources{}
	}
	return in.Spec.Linux.Resources
}

// TestTranslateErrors checks refusals, including injection attempts: the
// error must have the right kind and name the field.
func TestTranslateErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(in *Input)
		kind   errs.Kind
		field  string
	}{
		{"env not NAME=value", func(in *Input) { in.Spec.Process.Env = []string{"JUSTNAME"} }, errs.KindInvalidBundle, "process.env[0]"},
		{"env NUL", func(in *Input) { in.Spec.Process.Env = []string{"A=\x00"} }, errs.KindInvalidBundle, "process.env[0]"},
		{"cwd relative", func(in *Input) { in.Spec.Process.Cwd = "srv" }, errs.KindInvalidBundle, "process.cwd"},
		{"args NUL", func(in *Input) { in.Spec.Process.Args = []string{"sh", "-c", "x\x00y"} }, errs.KindInvalidBundle, "process.args[2]"},
		{"no args", func(in *Input) { in.Spec.Process.Args = nil }, errs.KindInvalidBundle, "process.args"},
		{"username", func(in *Input) { in.Spec.Process.User.Username = "nobody" }, errs.KindUnsupported, "process.user.username"},
		{"umask too wide", func(in *Input) { in.Spec.Process.User.Umask = ptr(uint32(0o1777)) }, errs.KindInvalidBundle, "process.user.umask"},
		{"oomScoreAdj out of range", func(in *Input) { in.Spec.Process.OOMScoreAdj = ptr(1001) }, errs.KindInvalidBundle, "process.oomScoreAdj"},
		{"bad rlimit", func(in *Input) { in.Spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}} }, errs.KindInvalidBundle, "process.rlimits[0]"},
		{"rlimit soft above hard", func(in *Input) {
			in.Spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 5}}
		}, errs.KindInvalidBundle, "process.rlimits[0]"},
		{"rlimit twice", func(in *Input) {
			in.Spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1, Hard: 5}, {Type: "RLIMIT_NOFILE", Soft: 1, Hard: 5}}
		}, errs.KindInvalidBundle, "process.rlimits[1]"},
		{"unknown ambient capability", func(in *Input) {
			in.Spec.Process.Capabilities = &specs.LinuxCapabilities{Ambient: []string{"CAP_FLY"}}
		}, errs.KindInvalidBundle, "process.capabilities.ambient[0]"},
		{"bad capability", func(in *Input) {
			in.Spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_X\nlxc.x"}}
		}, errs.KindInvalidBundle, "process.capabilities.bounding[0]"},
		{"apparmor injection", func(in *Input) { in.Spec.Process.ApparmorProfile = "unconfined\nlxc.hook.mount: /x" }, errs.KindInvalidBundle, "process.apparmorProfile"},
		{"sysctl not allowed", func(in *Input) { in.Spec.Linux.Sysctl = map[string]string{"vm.swappiness": "1"} }, errs.KindUnsupported, "linux.sysctl[vm.swappiness]"},
		{"net sysctl leaving /proc/sys/net", func(in *Input) { in.Spec.Linux.Sysctl = map[string]string{"net.ipv4/../../kernel.x": "1"} }, errs.KindInvalidBundle, "linux.sysctl[net.ipv4/../../kernel.x]"},
		{"net sysctl value newline", func(in *Input) { in.Spec.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1\n0"} }, errs.KindInvalidBundle, "linux.sysctl[net.ipv4.ip_forward]"},
		{"sysctl value newline", func(in *Input) { in.Spec.Linux.Sysctl = map[string]string{"kernel.sem": "1\nlxc.x: y"} }, errs.KindInvalidBundle, "linux.sysctl[kernel.sem]"},
		{"unified key injection", func(in *Input) { res(in).Unified = map[string]string{"memory.max: 1\nlxc.hook": "1"} }, errs.KindInvalidBundle, "linux.resources.unified"},
		{"unified value newline", func(in *Input) { res(in).Unified = map[string]string{"memory.max": "1\nlxc.hook.start: /x"} }, errs.KindInvalidBundle, "linux.resources.unified[memory.max]"},
		{"swap below memory", func(in *Input) {
			res(in).Memory = &specs.LinuxMemory{Limit: ptr(int64(512 * mib)), Swap: ptr(int64(256 * mib))}
		}, errs.KindInvalidBundle, "linux.resources.memory.swap"},
		{"bad cpuset", func(in *Input) { res(in).CPU = &specs.LinuxCPU{Cpus: "a-b"} }, errs.KindInvalidBundle, "linux.resources.cpu.cpus"},
		{"bind source missing", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/d", Type: "bind", Source: "nope"})
		}, errs.KindInvalidBundle, "mounts[7] (/d)"},
		{"bind source comma smuggling", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/d", Type: "bind", Source: "/tmp,mp=/etc"})
		}, errs.KindInvalidBundle, "mounts[7] (/d) source"},
		{"bind destination newline", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/d\nlxc.hook.start: /x", Type: "bind", Source: "data"})
		}, errs.KindInvalidBundle, "destination"},
		{"bind over root", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/x/..", Type: "bind", Source: "data"})
		}, errs.KindInvalidBundle, "mounts[7]"},
		{"bind option not allowed", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/d", Type: "bind", Source: "data", Options: []string{"errors=remount-ro"}})
		}, errs.KindUnsupported, "mounts[7] (/d)"},
		{"unknown mount type", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/nfs", Type: "nfs", Source: "srv:/x"})
		}, errs.KindUnsupported, "mounts[7] (/nfs)"},
		{"proc elsewhere", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/proc2", Type: "proc", Source: "proc"})
		}, errs.KindUnsupported, "mounts[7] (/proc2)"},
		{"tmpfs bad option", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/t", Type: "tmpfs", Options: []string{"size=1m 0 0\nlxc.x"}})
		}, errs.KindUnsupported, "mounts[7] (/t)"},
		{"no network namespace", func(in *Input) { in.Spec.Linux.Namespaces = in.Spec.Linux.Namespaces[:1] }, errs.KindUnsupported, "linux.namespaces"},
		{"netns path", func(in *Input) {
			in.Spec.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}}
		}, errs.KindUnsupported, "linux.namespaces (network)"},
		{"netDevice name injection", func(in *Input) {
			in.Spec.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth5": {Name: "x\nlxc.hook"}}
		}, errs.KindInvalidBundle, "linux.netDevices[eth5].name"},
		{"bridge injection", func(in *Input) { in.Bridge = "vmbr0,firewall=0" }, errs.KindInvalidConfig, "network.bridge"},
		{"idmap outside the node's range", func(in *Input) {
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
			in.Spec.Linux.GIDMappings = defaultIDMap
		}, errs.KindUnsupported, "linux.uidMappings[0]"},
		{"idmap without root", func(in *Input) {
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 1000, HostID: 101000, Size: 1}}
			in.Spec.Linux.GIDMappings = defaultIDMap
		}, errs.KindUnsupported, "container root (id 0) is not mapped"},
		{"idmap with one mapping only", func(in *Input) {
			in.Unprivileged = false
			in.Spec.Linux.Namespaces = append(in.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		}, errs.KindUnsupported, "linux.gidMappings"},
		{"idmap overlapping", func(in *Input) {
			in.Unprivileged = false
			in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100}, {ContainerID: 100, HostID: 1050, Size: 10}}
			in.Spec.Linux.GIDMappings = defaultIDMap
		}, errs.KindInvalidBundle, "linux.uidMappings[1]: overlaps linux.uidMappings[0]"},
		{"idmap empty range", func(in *Input) {
			in.Unprivileged = false
			in.Spec.Linux.UIDMappings = defaultIDMap
			in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 0}}
		}, errs.KindInvalidBundle, "linux.gidMappings[0]: size 0"},
		{"device outside /dev", func(in *Input) { in.Spec.Linux.Devices = []specs.LinuxDevice{{Path: "/etc/shadow"}} }, errs.KindInvalidBundle, "linux.devices[0]"},
		{"device smuggling", func(in *Input) { in.Spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x,mode=0777"}} }, errs.KindInvalidBundle, "linux.devices[0]"},
		{"createContainer hook", func(in *Input) { in.Spec.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{{Path: "/bin/true"}}} }, errs.KindUnsupported, "hooks.createContainer"},
		{"annotation unknown", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationPrefix + "nope": "1"} }, errs.KindInvalidBundle, "nope"},
		{"annotation storage injection", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationStorage: "local,size=1"} }, errs.KindInvalidBundle, AnnotationStorage},
		{"annotation size bad", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationRootfsSize: "8,ro=1"} }, errs.KindInvalidBundle, AnnotationRootfsSize},
		{"annotation features injection", func(in *Input) {
			in.Spec.Annotations = map[string]string{AnnotationFeatures: "nesting=1\nlxc.hook.start: /x"}
		}, errs.KindInvalidBundle, AnnotationFeatures},
		{"annotation features unknown", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationFeatures: "evil=1"} }, errs.KindInvalidBundle, AnnotationFeatures},
		{"annotation ostype", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationOSType: "windows"} }, errs.KindInvalidBundle, AnnotationOSType},
		{"annotation tags injection", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationTags: "a\nb"} }, errs.KindInvalidBundle, AnnotationTags},
		{"annotation template injection", func(in *Input) {
			in.Spec.Annotations = map[string]string{AnnotationTemplate: "local:vztmpl/x.tar.zst\n--force"}
		}, errs.KindInvalidBundle, AnnotationTemplate},
		{"annotation unprivileged", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationUnprivileged: "maybe"} }, errs.KindInvalidBundle, AnnotationUnprivileged},
		{"no storage", func(in *Input) { in.Storage = "" }, errs.KindInvalidConfig, "storage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			tc.mutate(&in)
			_, err := Translate(in)
			if err == nil {
				t.Fatal("Translate succeeded, want an error")
			}
			if k := errs.KindOf(err); k != tc.kind {
				t.Errorf("kind = %v, want %v (%v)", k, tc.kind, err)
			}
			if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "test-oci") {
				t.Errorf("error %q does not name field %q and the container", err, tc.field)
			}
		})
	}
}

// TestTranslateProcessToHelper: the whole process goes to the init
// helper (Request.Process) and none of it into raw keys that PVE 8 and
// 9.0 drop; net.* sysctls go to the helper, IPC ones stay raw keys.
func TestTranslateProcessToHelper(t *testing.T) {
	in := baseInput(t)
	p := in.Spec.Process
	p.Args = []string{"sh", "-c", "echo 'a b'\necho \"c\""}
	p.Env = []string{"A=1", "B=two words\nand a line", "C="}
	p.Cwd = "/srv/app/../www"
	p.User = specs.User{UID: 1000, GID: 100, AdditionalGids: []uint32{10, 20}, Umask: ptr(uint32(0o027))}
	p.NoNewPrivileges = true
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 4096}, {Type: "RLIMIT_CORE", Soft: ^uint64(0), Hard: ^uint64(0)}}
	p.Capabilities = &specs.LinuxCapabilities{
		Bounding: []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}, Effective: []string{"CAP_KILL"},
		Permitted: []string{"CAP_KILL"}, Inheritable: []string{"CAP_KILL"}, Ambient: []string{"CAP_KILL"},
	}
	in.Spec.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000000"}
	p.OOMScoreAdj = ptr(500)
	r, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	checkNoDroppedKeys(t, r)
	lines := strings.Join(rawLines(r), "\n")
	if !strings.Contains(lines, "lxc.sysctl.kernel.shmmax: 1000000") || strings.Contains(lines, "net.ipv4") {
		t.Errorf("sysctl raw lines:\n%s", lines)
	}
	if strings.Contains(strings.Join(r.Warnings, "\n"), "noNewPrivileges") || strings.Contains(strings.Join(r.Warnings, "\n"), "umask") {
		t.Errorf("honoured fields warned about: %q", r.Warnings)
	}
	hp := r.Process
	switch {
	case hp == nil:
		t.Fatal("no process for the init helper")
	case strings.Join(hp.Args, "|") != strings.Join(p.Args, "|"), strings.Join(hp.Env, "|") != strings.Join(p.Env, "|"):
		t.Errorf("args/env = %q %q", hp.Args, hp.Env)
	case hp.Cwd != "/srv/www", hp.UID != 1000, hp.GID != 100, len(hp.AdditionalGids) != 2, hp.AdditionalGids[1] != 20:
		t.Errorf("cwd/user = %q %d %d %v", hp.Cwd, hp.UID, hp.GID, hp.AdditionalGids)
	case hp.Umask == nil || *hp.Umask != 0o027, !hp.NoNewPrivileges:
		t.Errorf("umask/noNewPrivileges = %v %v", hp.Umask, hp.NoNewPrivileges)
	case len(hp.Rlimits) != 2 || hp.Rlimits[0] != p.Rlimits[0] || hp.Rlimits[1] != p.Rlimits[1]:
		t.Errorf("rlimits = %+v", hp.Rlimits)
	case hp.Capabilities == nil || strings.Join(hp.Capabilities.Bounding, ",") != "CAP_KILL,CAP_NET_BIND_SERVICE" ||
		strings.Join(hp.Capabilities.Ambient, ",") != "CAP_KILL" || strings.Join(hp.Capabilities.Effective, ",") != "CAP_KILL":
		t.Errorf("capabilities = %+v", hp.Capabilities)
	case len(hp.Sysctl) != 1 || hp.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0":
		t.Errorf("sysctl = %v", hp.Sysctl)
	case hp.OOMScoreAdj == nil || *hp.OOMScoreAdj != 500:
		t.Errorf("oomScoreAdj = %v, want 500", hp.OOMScoreAdj)
	}
	// A template-only container (no process) keeps its init: no helper,
	// and a net.* sysctl has nobody to write it.
	in2 := baseInput(t)
	in2.Spec.Process, in2.KeepTemplateInit, in2.InitHelperDir = nil, true, ""
	in2.Spec.Mounts = nil // the default spec's /dev/shm and /dev/mqueue are raw mount entries
	r2, err := Translate(in2)
	if err != nil || r2.Process != nil || len(r2.Raw) != 0 {
		t.Errorf("template init: %v %v %v", r2, rawLines(r2), err)
	}
	in2.Spec.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	if _, err := Translate(in2); errs.KindOf(err) != errs.KindUnsupported {
		t.Errorf("net sysctl without a process: %v", err)
	}
	// A process without a helper directory is a bug of the caller.
	in3 := baseInput(t)
	in3.InitHelperDir = ""
	if _, err := Translate(in3); errs.KindOf(err) != errs.KindInternal {
		t.Errorf("no helper directory: %v", err)
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{2: 1, 1024: 100, 262144: 10000, 0: 1, 1 << 30: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestSanitizeHostname(t *testing.T) {
	for in, want := range map[string]string{
		"web1": "web1", "My_App": "my-app", "--x--": "x", "a..b": "a.b", "": "nexcage", "___": "nexcage",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
	} {
		if got := SanitizeHostname(in); got != want {
			t.Errorf("SanitizeHostname(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOwnIDMapDelegated: a bundle's own mapping must lie in the host
// ranges delegated to root in the node's subuid/subgid files (LXC maps
// through newuidmap, which refuses anything else at start); it is refused
// at create, naming the file and the line to add.
func TestOwnIDMapDelegated(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subuid")
	if err := os.WriteFile(sub, []byte("someone:1000:10\nroot:100000:65536\nroot:1000:2000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := baseInput(t)
	in.Unprivileged = false
	in.SubUID, in.SubGID = sub, sub
	in.Spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}
	in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 3000}}
	_, err := Translate(in)
	if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "linux.gidMappings[0]: host ids 1000-3999 are not delegated to root in "+sub) ||
		!strings.Contains(err.Error(), "root:1000:3000") {
		t.Fatalf("err = %v", err)
	}
	in.Spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 2000}}
	if _, err := Translate(in); err != nil {
		t.Fatalf("delegated mapping refused: %v", err)
	}
}
