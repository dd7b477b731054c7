package pvecfg

import (
	"os"
	"reflect"
	"strconv"
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
	c, warns := ParseConfig([]byte(sampleConf), 101, V9_1)
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
	if s := c.Snapshots["snap1"]; s == nil || s.Options["snaptime"] != "1700000000" {
		t.Errorf("snapshots = %#v", c.Snapshots)
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
	back, warns := ParseConfig(out, 100, V9_1)
	if len(warns) > 0 {
		t.Fatalf("parse: %q", warns)
	}
	back.Digest = ""
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip:\n%#v\n%#v", c, back)
	}
	// Sorted keys, then env, then raw lines; '%' and ':' encoded.
	want := "#line one\n#line%3A two 100%25\nentrypoint: /bin/sh -c\tx\nhostname: a\nmemory: 64\nmp1: /x,mp=/y\n" +
		"lxc.environment.runtime: X=1\nlxc.environment.runtime: Y=a=b\n" +
		"lxc.mount.entry: tmpfs tmp tmpfs rw 0 0\nlxc.idmap: u 0 100000 65536\n"
	if string(out) != want {
		t.Errorf("got:\n%q\nwant:\n%q", out, want)
	}
}

func TestMarshalRefusesNewlines(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"newline in value", func(c *Config) { c.Set("hostname", "a\nlxc.hook.pre-start: /evil") }, "detected invalid newline inside property 'hostname'"},
		{"newline in env", func(c *Config) { c.Env = []string{"A=1\nlxc.hook.start: x"} }, "detected invalid newline inside property 'env'"},
		{"newline in raw", func(c *Config) { c.Raw = []RawLine{{"lxc.init.cwd", "/\nx"}} }, "detected invalid raw lxc line 'lxc.init.cwd'"},
		{"bad raw key", func(c *Config) { c.Raw = []RawLine{{"lxc.init.cwd: x\nlxc.a", "b"}} }, "detected invalid raw lxc line"},
		{"bad option key", func(c *Config) { c.Set("Foo: x\nbar", "1") }, "invalid property name"},
		{"newline in pending", func(c *Config) { c.Pending = NewConfig(); c.Pending.Set("memory", "1\n[x]") }, "detected invalid newline inside property 'memory'"},
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
		"lxc.utsname: x\nlxc.limit.nofile: 5\ngarbage line\ndelete: memory\nunprivileged: yes\nlxc.init.cmd = /bin/sh\n" +
		"net0: name=eth0,bogus=1\nlxc.cgroup.devices.allow: a\n"
	for _, v := range Versions {
		c, warns := ParseConfig([]byte(in), 105, v)
		want := []string{
			"vm 105 - unable to parse value of 'memory' - type check ('integer') failed - got 'abc'",
			"vm 105 - unable to parse value of 'foo' - unknown setting 'foo'",
			"vm 105 - lxc.rootfs.path: lxc.rootfs.path is auto generated from rootfs",
			`vm 105 - lxc.rootfs.options: lxc.rootfs.options is not supported, please use mount point options in the "rootfs" key`,
			"vm 105 - unable to parse config: lxc.no_new_privs: 1",
			"vm 105 - lxc.utsname is deprecated and was renamed to lxc.uts.name",
			"vm 105 - lxc.limit.nofile: lxc.limit.* was renamed to lxc.prlimit.*",
			"vm 105 - unable to parse config: garbage line",
			"vm 105 - property 'delete' is only allowed in [pve:pending]",
			"vm 105 - unable to parse value of 'net0' - format error\nbogus: property is not defined in schema and the schema does not allow additional properties",
		}
		if v.WarnsCgroupV1() {
			want = append(want, "vm 105 - lxc.cgroup.devices.allow is deprecated, this will be a hard error in the future!")
		}
		if !reflect.DeepEqual(warns, want) {
			t.Errorf("%s: warnings:\n%q\nwant:\n%q", v, warns, want)
		}
		if v, _ := c.Get("unprivileged"); v != "1" {
			t.Errorf("boolean not normalised: %q", v)
		}
		if _, ok := c.Get("foo"); !ok {
			t.Error("unknown option dropped; parse_pct_config keeps it")
		}
		wantRaw := []RawLine{{"lxc.utsname", "x"}, {"lxc.limit.nofile", "5"}, {"lxc.init.cmd", "/bin/sh"}, {"lxc.cgroup.devices.allow", "a"}}
		if !reflect.DeepEqual(c.Raw, wantRaw) {
			t.Errorf("%s: raw = %v", v, c.Raw)
		}
	}
}

// TestRawKeysByVersion checks the allow-list of each version against
// pve-container's $valid_lxc_conf_keys (5.3.5, 6.0.14, 6.1.10).
func TestRawKeysByVersion(t *testing.T) {
	everywhere := []string{"lxc.apparmor.profile", "lxc.init.cmd", "lxc.mount.entry",
		"lxc.cgroup2.memory.max", "lxc.prlimit.nofile", "lxc.net.0.type", "lxc.sysctl.kernel.msgmax",
		"lxc.sysctl.fs.mqueue", "lxc.idmap", "lxc.hook.pre-start", "lxc.devtty.dir", "lxc.environment",
		"lxc.cgroup.memory.limit_in_bytes", "lxc.utsname", "lxc.cap.keep", "lxc.seccomp.notify.proxy"}
	nowhere := []string{"lxc.no_new_privs", "lxc.proc.oom_score_adj", "lxc.namespace.share.net", "lxc.execute.cmd",
		"lxc.hook.start-host", "lxc.sysctl.net.ipv4.ip_forward", "lxc.sysctl.fs.mqueue.msg_max", "lxc.tty.dir",
		"lxc.rootfs.path", "lxc.rootfs.options", "lxc.init.user"}
	byVersion := map[string][3]bool{ // 8.4, 9.0, 9.1
		"lxc.init.cwd":            {false, true, true},
		"lxc.environment.runtime": {false, false, true},
		"lxc.environment.hooks":   {false, false, true},
		"lxc.init.uid":            {false, false, true},
		"lxc.init.gid":            {false, false, true},
		"lxc.init.groups":         {false, false, true},
	}
	for i, v := range Versions {
		for _, k := range everywhere {
			if ok, _ := RawKeyAllowed(k, v); !ok {
				t.Errorf("%s refuses %s", v, k)
			}
		}
		for _, k := range nowhere {
			if ok, _ := RawKeyAllowed(k, v); ok {
				t.Errorf("%s keeps %s", v, k)
			}
		}
		for k, want := range byVersion {
			if ok, _ := RawKeyAllowed(k, v); ok != want[i] {
				t.Errorf("%s: %s kept = %v, want %v", v, k, ok, want[i])
			}
		}
	}
	if _, r := RawKeyAllowed("lxc.rootfs.path", V8_4); r != "lxc.rootfs.path is auto generated from rootfs" {
		t.Errorf("reason = %q", r)
	}
	if w := RawKeyWarnings("lxc.aa_profile", V8_4); len(w) != 1 || w[0] != "lxc.aa_profile is deprecated and was renamed to lxc.apparmor.profile" {
		t.Errorf("warning = %q", w)
	}
}

func TestEncodeDecodeText(t *testing.T) {
	// pve-common's encode_text escapes control and hi-bit bytes, ':' and '%'.
	if got := EncodeText("a:b\tc\xff 100%"); got != "a%3Ab%09c%FF 100%25" {
		t.Errorf("encode = %q", got)
	}
	if got := DecodeText("a%3Ab%0A%zz%4"); got != "a:b\n%zz%4" {
		t.Errorf("decode = %q", got)
	}
}

func TestCurrentConfigAppliesPending(t *testing.T) {
	in := "#desc\nmemory: 512\nswap: 512\nhostname: a\n\n[pve:pending]\nmemory: 1024\ndelete: swap,!hostname\n"
	c, warns := ParseConfig([]byte(in), 100, V8_4)
	if len(warns) > 0 {
		t.Fatal(warns)
	}
	cur := c.CurrentConfig()
	if !reflect.DeepEqual(cur.Options, map[string]string{"memory": "1024"}) || cur.Description != "desc\n" {
		t.Errorf("current = %#v", cur)
	}
	if c.Options["memory"] != "512" || c.Pending.Options["delete"] != "swap,!hostname" {
		t.Errorf("parsed config changed: %#v", c)
	}
}

// TestParseMarshalMatchesPerl compares ParseConfig+Marshal with what the
// real Perl code printed for the same files (testdata/pvereal/README.md).
func TestParseMarshalMatchesPerl(t *testing.T) {
	for _, n := range []string{"100", "101"} {
		data, err := os.ReadFile("testdata/pvereal/" + n + ".conf")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []Version{V8_4, V9_1} {
			prefix := "testdata/pvereal/" + n + ".pve" + v.String()
			wantOut, err1 := os.ReadFile(prefix + ".write")
			wantWarn, err2 := os.ReadFile(prefix + ".warnings")
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			id, _ := strconv.Atoi(n)
			c, warns := ParseConfig(data, id, v)
			out, err := c.Marshal()
			if err != nil || string(out) != string(wantOut) {
				t.Errorf("%s as %s: written (err %v):\n%s\nPerl wrote:\n%s", n, v, err, out, wantOut)
			}
			got := ""
			for _, w := range warns {
				got += w + "\n"
			}
			if got != string(wantWarn) {
				t.Errorf("%s as %s: warnings:\n%s\nPerl warned:\n%s", n, v, got, wantWarn)
			}
		}
	}
}

// RawKeyAllowed reports whether a node of version v keeps the raw key
// (with or without a warning), and Proxmox's reason when it refuses a key
// it knows (lxc.rootfs.path, lxc.rootfs.options).
func RawKeyAllowed(key string, v Version) (kept bool, reason string) {
	reason, kept = rawKeyValidity(key, v, func(string) {})
	return kept, reason
}

// RawKeyWarnings returns the warnings (without `vm <vmid> - `) a node of
// version v prints for a kept key on every load, e.g. deprecated names.
func RawKeyWarnings(key string, v Version) []string {
	var w []string
	rawKeyValidity(key, v, func(s string) { w = append(w, s) })
	return w
}
