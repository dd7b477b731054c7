package pvesim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// fakeHost points the generator at a made-up cgroup v1 host and LXC
// config directory, so the golden texts do not depend on this machine.
func fakeHost(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"cgroup/memory/cgroup.procs":                "",
		"cgroup/memory/memory.memsw.limit_in_bytes": "",
		"cgroup/cpu/cgroup.procs":                   "",
		"cgroup/devices/cgroup.procs":               "",
		"cgroup/cpuset/cgroup.procs":                "",
		"cgroup/cpuset/cpuset.effective_cpus":       "0-3\n",
		"lxc/common.conf":                           "",
		"lxc/userns.conf":                           "",
		"lxc/debian.common.conf":                    "",
		"lxc/debian.userns.conf":                    "",
		"lxc/common.seccomp":                        "2\ndenylist\nkexec_load errno 1\n",
		"net/vmbr0/bridge/bridge_id":                "",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	saved := []string{cgroupV1Root, lxcConfigDir, sysClassNet, hostDevicePath}
	cgroupV1Root = filepath.Join(dir, "cgroup")
	lxcConfigDir = "/usr/share/lxc/config" // printed as on a real host...
	sysClassNet = filepath.Join(dir, "net")
	hostDevicePath = filepath.Join(dir, "dev")
	t.Cleanup(func() {
		cgroupV1Root, lxcConfigDir, sysClassNet, hostDevicePath = saved[0], saved[1], saved[2], saved[3]
	})
	lxcConfigDir = filepath.Join(dir, "lxc") // ...but read from the fake
	return dir
}

// confOf builds a Config from `key: value` lines the way the loader
// fills it (options, lxc.environment.runtime as Env, other lxc.* lines as
// Raw in file order), without depending on the parser.
func confOf(t *testing.T, text string) *pvecfg.Config {
	t.Helper()
	c := pvecfg.NewConfig()
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		v = strings.TrimSpace(v)
		switch {
		case k == pvecfg.EnvKey:
			c.Env = append(c.Env, v)
		case strings.HasPrefix(k, "lxc."):
			c.Raw = append(c.Raw, pvecfg.RawLine{Key: k, Value: v})
		default:
			c.Set(k, v)
		}
	}
	return c
}

// TestBuildLxcConfigGolden checks the order and content of the generated
// config against update_lxc_config (pve-container master, with PVE 8's
// cgroup v1 keys): includes first, the default idmap only without a raw
// one, hostname, limits, rootfs, entrypoint, env, then the raw lines in
// file order, then the cpuset.
func TestBuildLxcConfigGolden(t *testing.T) {
	dir := fakeHost(t)
	cfg := filepath.Join(dir, "lxc")
	n := &Node{Root: "/srv/sim", Name: "pve"}
	cases := []struct {
		name, conf, want, seccomp string
		version                   pvecfg.Version
	}{
		{"privileged application container", `arch: amd64
cores: 2
cpulimit: 1.5
cpuunits: 2048
entrypoint: /bin/app --flag
hostname: h1
memory: 256
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=1G
swap: 128
lxc.environment.runtime: GREETING=hi
lxc.cap.drop:
lxc.cap.keep: chown kill
lxc.mount.entry: /srv/x srv/x none bind,create=dir 0 0
`, `lxc.arch = amd64
lxc.include = ` + cfg + `/debian.common.conf
lxc.apparmor.profile = generated
lxc.apparmor.raw = allow mqueue,
lxc.apparmor.raw = deny mount -> /proc/,
lxc.apparmor.raw = deny mount -> /sys/,
lxc.mount.entry = shm dev/shm tmpfs rw,nosuid,nodev,create=dir 0 0
lxc.monitor.unshare = 1
lxc.console.path = none
lxc.cgroup.devices.deny = c 5:1 rwm
lxc.tty.max = 2
lxc.environment = TERM=linux
lxc.uts.name = h1
lxc.cgroup.memory.limit_in_bytes = 268435456
lxc.cgroup.memory.memsw.limit_in_bytes = 402653184
lxc.cgroup.cpu.cfs_period_us = 100000
lxc.cgroup.cpu.cfs_quota_us = 150000
lxc.cgroup.cpu.shares = 2048
lxc.rootfs.path = /srv/sim/var/lib/lxc/100/rootfs
lxc.init.cmd = /bin/app --flag
lxc.environment = GREETING=hi
lxc.cap.drop = 
lxc.cap.keep = chown kill
lxc.mount.entry = /srv/x srv/x none bind,create=dir 0 0
lxc.cgroup.cpuset.cpus = 0,1
`, "", pvecfg.V9_1},
		{"unprivileged system container", `arch: amd64
features: nesting=1,keyctl=1
ostype: alpine
rootfs: local:100/vm-100-disk-0.raw,size=1G
unprivileged: 1
`, `lxc.arch = amd64
lxc.include = ` + cfg + `/common.conf
lxc.include = ` + cfg + `/userns.conf
lxc.seccomp.profile = /srv/sim/var/lib/lxc/100/rules.seccomp
lxc.apparmor.profile = generated
lxc.apparmor.raw = allow mqueue,
lxc.apparmor.allow_nesting = 1
lxc.apparmor.raw = allow userns,
lxc.mount.auto = sys:mixed
lxc.monitor.unshare = 1
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.console.path = none
lxc.cgroup.devices.deny = c 5:1 rwm
lxc.tty.max = 2
lxc.environment = TERM=linux
lxc.uts.name = CT100
lxc.cgroup.memory.limit_in_bytes = 536870912
lxc.cgroup.memory.memsw.limit_in_bytes = 536870912
lxc.cgroup.cpu.shares = 1024
lxc.rootfs.path = /srv/sim/var/lib/lxc/100/rootfs
`, "2\ndenylist\nkexec_load errno 1\nioctl errno 1 [1,0x9400,SCMP_CMP_MASKED_EQ,0xff00]\nsocket errno 97 [0,38,SCMP_CMP_EQ]\n", pvecfg.V9_1},
		{"raw idmap and profiles", `arch: amd64
hostname: raw
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=1G
lxc.apparmor.profile: unconfined
lxc.idmap: u 0 200000 65536
lxc.seccomp.profile: /etc/my.seccomp
lxc.idmap: g 0 200000 65536
lxc.cgroup2.cpuset.cpus: 3
`, `lxc.arch = amd64
lxc.include = ` + cfg + `/debian.common.conf
lxc.include = ` + cfg + `/debian.userns.conf
lxc.mount.auto = sys:mixed
lxc.monitor.unshare = 1
lxc.console.path = none
lxc.cgroup.devices.deny = c 5:1 rwm
lxc.tty.max = 2
lxc.environment = TERM=linux
lxc.uts.name = raw
lxc.cgroup.memory.limit_in_bytes = 536870912
lxc.cgroup.memory.memsw.limit_in_bytes = 536870912
lxc.cgroup.cpu.shares = 1024
lxc.rootfs.path = /srv/sim/var/lib/lxc/100/rootfs
lxc.apparmor.profile = unconfined
lxc.idmap = u 0 200000 65536
lxc.seccomp.profile = /etc/my.seccomp
lxc.idmap = g 0 200000 65536
lxc.cgroup2.cpuset.cpus = 3
`, "", pvecfg.V9_0},
		{"PVE 8.4: no abi/4.0 AppArmor rules, entrypoint unknown", `arch: amd64
entrypoint: /bin/app
features: nesting=1
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=1G
`, `lxc.arch = amd64
lxc.include = ` + cfg + `/debian.common.conf
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.monitor.unshare = 1
lxc.console.path = none
lxc.cgroup.devices.deny = c 5:1 rwm
lxc.tty.max = 2
lxc.environment = TERM=linux
lxc.uts.name = CT100
lxc.cgroup.memory.limit_in_bytes = 536870912
lxc.cgroup.memory.memsw.limit_in_bytes = 536870912
lxc.cgroup.cpu.shares = 1024
lxc.rootfs.path = /srv/sim/var/lib/lxc/100/rootfs
`, "", pvecfg.V8_4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := *n
			n.Version = tc.version
			c, err := n.buildLxcConfig(100, confOf(t, tc.conf))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.text.String(); got != tc.want {
				t.Errorf("generated config:\n%s\nwant:\n%s", got, tc.want)
			}
			if got := string(c.files["rules.seccomp"]); got != tc.seccomp {
				t.Errorf("rules.seccomp:\n%s\nwant:\n%s", got, tc.seccomp)
			}
			if len(c.warnings) > 0 {
				t.Errorf("warnings: %q", c.warnings)
			}
		})
	}
}

// TestBuildLxcConfigOverrideWarnings: a raw profile that overrides what
// features asked for warns as make_seccomp_config/make_apparmor_config do.
func TestBuildLxcConfigOverrideWarnings(t *testing.T) {
	fakeHost(t)
	n := &Node{Root: "/srv/sim", Name: "pve"}
	c, err := n.buildLxcConfig(100, confOf(t, "features: nesting=1,keyctl=1\nostype: debian\nrootfs: local:100/vm-100-disk-0.raw\nunprivileged: 1\n"+
		"lxc.apparmor.profile: unconfined\nlxc.seccomp.profile: /x\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"explicitly configured lxc.seccomp.profile overrides the following settings: keyctl",
		"explicitly configured lxc.apparmor.profile overrides the following settings: features:nesting",
	}
	if strings.Join(c.warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings %q, want %q", c.warnings, want)
	}
}
