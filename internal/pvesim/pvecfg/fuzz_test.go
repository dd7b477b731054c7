package pvecfg

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzConfigRoundTrip parses arbitrary .conf text. Parsing never fails on
// text (problems are warnings), and whatever Marshal writes is a fixed
// point: parsing it back gives the same config and writing that again
// gives the same bytes. (A description holding '%' is left out of the
// fixed-point check: like Proxmox's encode_text, Marshal does not escape
// '%', so "%41" written as text reads back as "A".)
func FuzzConfigRoundTrip(f *testing.F) {
	for _, s := range []string{
		"arch: amd64\ncores: 2\nhostname: web1\nmemory: 1024\nmp0: /srv/data,mp=/data,ro=1\n" +
			"net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:7A:10,ip=dhcp,type=veth\n" +
			"ostype: debian\nrootfs: local-lvm:vm-101-disk-0,size=8G\nswap: 512\nunprivileged: 1\nlxc.init.cwd: /srv\n",
		"#my%20container%3A\n#second\nhostname: a\nlxc.environment.runtime: A=b c\nlxc.cgroup2.pids.max = 10\n",
		"hostname: a\n\n[pve:pending]\nmemory: 64\n[snap1]\nsnapstate: prepare\n",
		"lxc.rootfs.path: /x\nlxc.bogus: 1\nfoo: bar\ndelete: memory\ngarbage line\n",
		"description: a%0Ab\nmemory: abc\nmp0: /x\r\n", "\x00", "", "\n\n\n", "lxc.init.cmd: /bin/sh -c 'x'\t\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := ParseConfig(data)
		if err != nil {
			if !bytes.Contains(data, []byte{0}) {
				t.Fatalf("ParseConfig failed on text without NUL: %v", err)
			}
			return
		}
		out, err := c.Marshal()
		if err != nil {
			return // a parsed value that cannot be written back is refused, not written
		}
		// From the first written form on, write and read agree.
		c2, _, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-parse of marshalled config: %v\n%q", err, out)
		}
		if strings.Contains(c2.Description, "%") {
			return
		}
		out2, err := c2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not a fixed point (err %v):\n%q\n%q", err, out, out2)
		}
		c3, _, err := ParseConfig(out2)
		if err != nil || !sameConfig(c2, c3) {
			t.Fatalf("round trip changed the config (err %v):\n%#v\n%#v\nfile:\n%q", err, c2, c3, out2)
		}
		if len(c2.Options) != len(c.Options) || len(c2.Env) != len(c.Env) || len(c2.Raw) != len(c.Raw) {
			t.Fatalf("writing changed the number of entries:\n%#v\n%#v", c, c2)
		}
	})
}

func sameConfig(a, b *Config) bool {
	norm := func(c *Config) Config {
		x := *c
		if len(x.Options) == 0 {
			x.Options = nil
		}
		if len(x.Env) == 0 {
			x.Env = nil
		}
		if len(x.Raw) == 0 {
			x.Raw = nil
		}
		return x
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// FuzzConfigInjection writes one option, one env entry, one raw line and
// a description holding arbitrary text. Marshal either refuses them or
// writes a file that reads back as exactly those entries: no value can
// add a line, key or section of its own.
func FuzzConfigInjection(f *testing.F) {
	f.Add("hostname", "web1", "A=b", "/bin/sh", "desc")
	f.Add("hostname", "x\nlxc.hook.pre-start: /evil", "A=b\nlxc.apparmor.profile: unconfined", "/x\r\n[snap]", "a\n[pve:pending]\nmemory: 1")
	f.Add("memory", " 64 ", "A=\x00", "a\x1bb", "#\n#")
	f.Add("mp0", "/a,mp=/b", "", "", "\x85\u2028")
	f.Fuzz(func(t *testing.T, key, value, env, raw, desc string) {
		c := NewConfig()
		c.Description = desc
		c.Set(key, value)
		c.Env = []string{env}
		c.Raw = []RawLine{{Key: "lxc.init.cmd", Value: raw}}
		out, err := c.Marshal()
		if err != nil {
			return
		}
		got, _, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("parse of written config: %v\n%q", err, out)
		}
		if got.Sections != "" {
			t.Fatalf("a value opened a section %q:\n%q", got.Sections, out)
		}
		if keys := got.Keys(); len(keys) != 1 || keys[0] != key {
			t.Fatalf("options %q, want only %q:\n%q", keys, key, out)
		}
		if !reflect.DeepEqual(got.Env, []string{env}) {
			t.Fatalf("env %q, want [%q]:\n%q", got.Env, env, out)
		}
		if len(got.Raw) != 1 || got.Raw[0] != c.Raw[0] {
			t.Fatalf("raw %q, want %q:\n%q", got.Raw, c.Raw, out)
		}
	})
}

// FuzzProps checks the property-string parser and writer: whatever
// ParseProps accepts, Canonical writes in a form that parses back to the
// same set of properties. Schema-checked formats (mpN, netN, rootfs)
// stay accepted after canonicalisation.
func FuzzProps(f *testing.F) {
	for _, s := range []string{
		"name=eth0,bridge=vmbr0,ip=dhcp", "/srv/data,mp=/data,ro=1", "local-lvm:8,size=8G",
		"a=b=c", ",,", "=x", "x", "a=1,a=2", "nesting=1,keyctl=on", "/a,mp=/b,mountoptions=noatime;nodev",
		"volume=/x,mp=/../y", "name=eth0,ip=10.0.0.5", " a = b ",
	} {
		f.Add(s)
	}
	formats := map[string]PropFormat{"mp0": MountFormat, "net0": NetFormat, "rootfs": RootfsFormat, "features": FeaturesFormat, "dev0": DevFormat}
	f.Fuzz(func(t *testing.T, s string) {
		for _, def := range []string{"", "volume"} {
			p, err := ParseProps(s, def)
			if err != nil || !writable(p, def) {
				continue
			}
			canon := p.Canonical(def)
			p2, err := ParseProps(canon, def)
			if err != nil {
				t.Fatalf("canonical %q of %q does not parse: %v", canon, s, err)
			}
			if !sameProps(p, p2) {
				t.Fatalf("canonical %q of %q parses to %v, want %v", canon, s, p2, p)
			}
		}
		for name, pf := range formats {
			p, err := pf.Parse(name, s)
			if err != nil || !writable(p, pf.DefaultKey()) {
				continue
			}
			canon := pf.Canonical(p)
			if _, err := pf.Parse(name, canon); err != nil {
				t.Fatalf("%s: canonical %q of accepted %q refused: %v", name, canon, s, err)
			}
			if strings.ContainsAny(canon, "\n\r") {
				t.Fatalf("%s: accepted %q holding a line break", name, s)
			}
		}
	})
}

// writable reports whether every value passes ValidatePropValue, the
// check writers run before Canonical. A blank bare value (" ") passes it
// but is skipped by the parser, as Proxmox's parse_property_string skips
// blank parts; writers never produce one, so it is left out here.
func writable(p Props, def string) bool {
	for _, kv := range p {
		bare := kv.Key == def
		if ValidatePropValue(kv.Key, kv.Value, bare) != nil || (bare && strings.TrimSpace(kv.Value) == "") {
			return false
		}
	}
	return true
}

func sameProps(a, b Props) bool {
	if len(a) != len(b) {
		return false
	}
	for _, kv := range a {
		if v, ok := b.Get(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// FuzzStorageConfig checks that storage.cfg parsing never panics and that
// what MarshalStorageConfig writes is a fixed point of parse + marshal.
func FuzzStorageConfig(f *testing.F) {
	for _, s := range []string{
		"dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n",
		"dir: local\n\tdisable\n\tcontent  a , b\n", "# comment\n", "\tpath /x\n", "dir: 1bad\n", "dir: a\n\n\tpath /x\n",
		"dir: a b\n", "a:b: c\n\tk v v\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseStorageConfig(data)
		if err != nil {
			return
		}
		out, err := MarshalStorageConfig(list)
		if err != nil {
			return
		}
		list2, err := ParseStorageConfig(out)
		if err != nil {
			t.Fatalf("written storage.cfg does not parse: %v\n%q", err, out)
		}
		out2, err := MarshalStorageConfig(list2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("MarshalStorageConfig not a fixed point (err %v):\n%q\n%q", err, out, out2)
		}
		if len(list2) != len(list) {
			t.Fatalf("%d storages written, %d read back", len(list), len(list2))
		}
	})
}

// FuzzVMList checks .vmlist parsing and that its writer is a fixed point;
// NextID always returns a free id inside the range, or 0.
func FuzzVMList(f *testing.F) {
	for _, s := range []string{
		`{"version": 7, "ids": {"100": {"node": "pve1", "type": "lxc", "version": 3}}}`,
		`{"version": 3}`, ``, `{}`, `{"ids": {"abc": {}}}`, `{"ids": null}`, `[1]`, `{"version":"x"}`,
	} {
		f.Add([]byte(s), 100, 110)
	}
	f.Fuzz(func(t *testing.T, data []byte, lo, hi int) {
		l, err := ParseVMList(data)
		if err != nil {
			return
		}
		out, err := l.Marshal()
		if err != nil {
			t.Fatalf("marshal parsed list: %v", err)
		}
		l2, err := ParseVMList(out)
		if err != nil {
			t.Fatalf("written .vmlist does not parse: %v\n%s", err, out)
		}
		out2, err := l2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf(".vmlist writer not a fixed point (err %v):\n%s\n%s", err, out, out2)
		}
		if hi-lo > 1<<16 || lo > hi {
			return // keep NextID's scan short
		}
		if id := l.NextID(lo, hi); id != 0 {
			if id < lo || id > hi {
				t.Fatalf("NextID(%d, %d) = %d outside the range", lo, hi, id)
			}
			if _, taken := l.Lookup(id); taken {
				t.Fatalf("NextID(%d, %d) = %d is taken", lo, hi, id)
			}
		}
	})
}
