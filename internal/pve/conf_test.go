package pve

import (
	"reflect"
	"strings"
	"testing"
)

const sampleConf = `#web server
#second%3A line
arch: amd64
cores: 2
features: nesting=1
hostname: web1
memory: 1024
mp0: /srv/data,mp=/data,ro=1
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:7A:10,ip=dhcp,type=veth
ostype: debian
rootfs: local-lvm:vm-101-disk-0,size=8G
swap: 512
unprivileged: 1
lxc.environment.runtime: A=1
lxc.environment.runtime: B=two words
lxc.init.cwd: /srv
lxc.cgroup2.pids.max: 100

[snap1]
arch: amd64
snaptime: 1700000000
`

func TestParseConfigSample(t *testing.T) {
	c, warns, err := ParseConfig([]byte(sampleConf))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("unexpected warnings: %q", warns)
	}
	if c.Description != "web server\nsecond: line\n" {
		t.Errorf("description = %q", c.Description)
	}
	if v, _ := c.Get("memory"); v != "1024" {
		t.Errorf("memory = %q", v)
	}
	if !reflect.DeepEqual(c.Env, []string{"A=1", "B=two words"}) {
		t.Errorf("env = %q", c.Env)
	}
	want := []RawLine{{"lxc.init.cwd", "/srv"}, {"lxc.cgroup2.pids.max", "100"}}
	if !reflect.DeepEqual(c.Raw, want) {
		t.Errorf("raw = %v", c.Raw)
	}
	if !strings.HasPrefix(c.Sections, "[snap1]\n") {
		t.Errorf("sections = %q", c.Sections)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != sampleConf {
		t.Errorf("marshal differs:\n%s\nwant:\n%s", out, sampleConf)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	c := NewConfig()
	c.Description = "line one\nline: two 100%\n"
	c.Set("hostname", "a")
	c.Set("memory", "64")
	c.Set("mp1", "/x,mp=/y")
	c.Set("entrypoint", "/bin/sh -c\tx")
	c.Env = []string{"X=1", "Y=a=b"}
	c.Raw = []RawLine{{"lxc.mount.entry", "tmpfs tmp tmpfs rw 0 0"}, {"lxc.idmap", "u 0 100000 65536"}}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, warns, err := ParseConfig(out)
	if err != nil || len(warns) > 0 {
		t.Fatalf("parse: %v %q", err, warns)
	}
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip:\n%#v\n%#v", c, back)
	}
	// Sorted keys, then env, then raw lines.
	want := "#line one\n#line%3A two 100%\nentrypoint: /bin/sh -c\tx\nhostname: a\nmemory: 64\nmp1: /x,mp=/y\n" +
		"lxc.environment.runtime: X=1\nlxc.environment.runtime: Y=a=b\n" +
		"lxc.mount.entry: tmpfs tmp tmpfs rw 0 0\nlxc.idmap: u 0 100000 65536\n"
	if string(out) != want {
		t.Errorf("got:\n%q\nwant:\n%q", out, want)
	}
}

func TestMarshalRefusesInjection(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"newline in value", func(c *Config) { c.Set("hostname", "a\nlxc.hook.pre-start: /evil") }, "detected invalid newline inside property 'hostname'"},
		{"cr in value", func(c *Config) { c.Set("hostname", "a\rb") }, "detected invalid newline inside property 'hostname'"},
		{"nul in env", func(c *Config) { c.Env = []string{"A=\x00"} }, "control character inside property 'env'"},
		{"newline in env", func(c *Config) { c.Env = []string{"A=1\nlxc.hook.start: x"} }, "detected invalid newline inside property 'env'"},
		{"newline in raw", func(c *Config) { c.Raw = []RawLine{{"lxc.init.cwd", "/\nx"}} }, "detected invalid newline inside property 'lxc.init.cwd'"},
		{"bad raw key", func(c *Config) { c.Raw = []RawLine{{"lxc.init.cwd: x\nlxc.a", "b"}} }, "invalid lxc key"},
		{"bad option key", func(c *Config) { c.Set("Foo: x\nbar", "1") }, "invalid property name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			tc.mod(c)
			_, err := c.Marshal()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigWarnings(t *testing.T) {
	in := "memory: abc\nfoo: 1\nlxc.rootfs.path: /x\nlxc.rootfs.options: ro\nlxc.no_new_privs: 1\n" +
		"lxc.utsname: x\nlxc.limit.nofile: 5\ngarbage line\ndelete: memory\nunprivileged: yes\nlxc.init.cmd = /bin/sh\n"
	c, warns, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"lxc.rootfs.path: lxc.rootfs.path is auto generated from rootfs",
		`lxc.rootfs.options: lxc.rootfs.options is not supported, please use mount point options in the "rootfs" key`,
		"unable to parse config: lxc.no_new_privs: 1",
		"lxc.utsname is deprecated and was renamed to lxc.uts.name",
		"lxc.limit.nofile: lxc.limit.* was renamed to lxc.prlimit.*",
		"unable to parse config: garbage line",
		"property 'delete' is only allowed in [pve:pending]",
	}
	if !reflect.DeepEqual(warns, want) {
		t.Errorf("warnings:\n%q\nwant:\n%q", warns, want)
	}
	if v, _ := c.Get("unprivileged"); v != "yes" {
		t.Errorf("value not kept as written: %q", v)
	}
	wantRaw := []RawLine{{"lxc.utsname", "x"}, {"lxc.limit.nofile", "5"}, {"lxc.init.cmd", "/bin/sh"}}
	if !reflect.DeepEqual(c.Raw, wantRaw) {
		t.Errorf("raw = %v", c.Raw)
	}
}

func TestCheckRawKey(t *testing.T) {
	ok := []string{"lxc.apparmor.profile", "lxc.init.cmd", "lxc.init.uid", "lxc.init.gid", "lxc.mount.entry",
		"lxc.cgroup2.memory.max", "lxc.prlimit.nofile", "lxc.net.0.type", "lxc.sysctl.kernel.msgmax",
		"lxc.sysctl.fs.mqueue", "lxc.idmap", "lxc.hook.pre-start", "lxc.environment.runtime", "lxc.devtty.dir",
		"lxc.cgroup.memory.limit_in_bytes", "lxc.utsname"}
	for _, k := range ok {
		if err := CheckRawKey(k); err != nil {
			t.Errorf("%s refused: %v", k, err)
		}
	}
	bad := map[string]string{
		"lxc.rootfs.path":                "lxc.rootfs.path: lxc.rootfs.path is auto generated from rootfs",
		"lxc.rootfs.options":             "lxc.rootfs.options: lxc.rootfs.options is not supported",
		"lxc.no_new_privs":               "not in Proxmox's allow-list",
		"lxc.proc.oom_score_adj":         "not in Proxmox's allow-list",
		"lxc.namespace.share.net":        "not in Proxmox's allow-list",
		"lxc.execute.cmd":                "not in Proxmox's allow-list",
		"lxc.hook.start-host":            "not in Proxmox's allow-list",
		"lxc.sysctl.net.ipv4.ip_forward": "not in Proxmox's allow-list",
		"lxc.sysctl.fs.mqueue.msg_max":   "not in Proxmox's allow-list",
		"lxc.tty.dir":                    "not in Proxmox's allow-list",
		"LXC.init.cmd":                   "not in Proxmox's allow-list",
		"lxc.init.cmd\n":                 "not in Proxmox's allow-list",
	}
	for k, want := range bad {
		err := CheckRawKey(k)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", k, err, want)
		}
	}
}

func TestEncodeDecodeText(t *testing.T) {
	if got := EncodeText("a:b\tc\xff"); got != "a%3Ab%09c%FF" {
		t.Errorf("encode = %q", got)
	}
	if got := DecodeText("a%3Ab%0A%zz%4"); got != "a:b\n%zz%4" {
		t.Errorf("decode = %q", got)
	}
}
