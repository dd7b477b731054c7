package pvecfg

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// FuzzConfigRoundTrip parses arbitrary .conf text as every version.
// Parsing never fails (problems are warnings), and whatever Marshal
// writes is a fixed point: parsing it back gives the same config and
// writing that again gives the same bytes.
func FuzzConfigRoundTrip(f *testing.F) {
	for _, s := range []string{
		"arch: amd64\ncores: 2\nhostname: web1\nmemory: 1024\nmp0: /srv/data,mp=/data,ro=1\n" +
			"net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:7A:10,ip=dhcp,type=veth\n" +
			"ostype: debian\nrootfs: local-lvm:vm-101-disk-0,size=8G\nswap: 512\nunprivileged: 1\nlxc.init.cwd: /srv\n",
		"#my%20container%3A\n#second\nhostname: a\nlxc.environment.runtime: A=b c\nlxc.cgroup2.pids.max = 10\n",
		"hostname: a\n\n[pve:pending]\nmemory: 64\ndelete: swap\n[snap1]\nsnapstate: prepare\n",
		"lxc.rootfs.path: /x\nlxc.bogus: 1\nfoo: bar\ndelete: memory\ngarbage line\n",
		"description: a%0Ab\nmemory: abc\nmp0: /x\r\n", "\x00", "", "\n\n\n", "lxc.init.cmd: /bin/sh -c 'x'\t\n",
		"#100%\n[b]\n#x\n[a]\nlxc.environment.runtime: A=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range Versions {
			c, _ := ParseConfig(data, 100, v)
			out, err := c.Marshal()
			if err != nil {
				t.Fatalf("%s: a parsed config cannot be written: %v", v, err)
			}
			c2, warns := ParseConfig(out, 100, v)
			out2, err := c2.Marshal()
			if err != nil || !bytes.Equal(out, out2) {
				t.Fatalf("%s: Marshal not a fixed point (err %v):\n%q\n%q", v, err, out, out2)
			}
			c3, _ := ParseConfig(out2, 100, v)
			if !sameConfig(c2, c3) {
				t.Fatalf("%s: round trip changed the config:\n%#v\n%#v\nfile:\n%q", v, c2, c3, out2)
			}
			for _, w := range warns {
				if strings.Contains(w, "unable to parse config") {
					t.Fatalf("%s: a written file has a line Proxmox cannot parse: %s\n%q", v, w, out)
				}
			}
		}
	})
}

func sameConfig(a, b *Config) bool { return reflect.DeepEqual(normConfig(a), normConfig(b)) }

// normConfig drops what a round trip may change without meaning
// anything: the digest, and empty versus nil collections.
func normConfig(c *Config) *Config {
	if c == nil {
		return nil
	}
	x := *c
	x.Digest = ""
	if len(x.Options) == 0 {
		x.Options = nil
	}
	if len(x.Env) == 0 {
		x.Env = nil
	}
	if len(x.Raw) == 0 {
		x.Raw = nil
	}
	if x.Pending.empty() {
		x.Pending = nil
	} else {
		x.Pending = normConfig(x.Pending)
	}
	if len(x.Snapshots) == 0 {
		x.Snapshots = nil
	} else {
		snaps := map[string]*Config{}
		for k, v := range x.Snapshots {
			snaps[k] = normConfig(v)
		}
		x.Snapshots = snaps
	}
	return &x
}

// FuzzConfigInjection writes one option, one env entry, one raw line and
// a description holding arbitrary text. Marshal either refuses them
// (a newline, as Proxmox refuses it) or writes a file that reads back
// with no line, section or key the values did not name: no value can
// inject configuration.
func FuzzConfigInjection(f *testing.F) {
	f.Add("hostname", "web1", "A=b", "/bin/sh", "desc")
	f.Add("hostname", "x\nlxc.hook.pre-start: /evil", "A=b\nlxc.apparmor.profile: unconfined", "/x\r\n[snap]", "a\n[pve:pending]\nmemory: 1")
	f.Add("memory", " 64 ", "A=\x00", "a\x1bb", "#\n#")
	f.Add("mp0", "/a,mp=/b", "", "", "\x85\u2028")
	f.Fuzz(func(t *testing.T, key, value, env, raw, desc string) {
		if !reOptionLine.MatchString(key+": x") || key == "snapstate" || key == "delete" {
			return // not a key anything of ours writes
		}
		c := NewConfig()
		c.Description = desc
		c.Set(key, value)
		c.Env = []string{env}
		c.Raw = []RawLine{{Key: "lxc.init.cmd", Value: raw}}
		out, err := c.Marshal()
		if err != nil {
			return
		}
		got, _ := ParseConfig(out, 100, V9_1)
		if got.Pending != nil || len(got.Snapshots) > 0 {
			t.Fatalf("a value opened a section:\n%q", out)
		}
		for k := range got.Options {
			if k != key {
				t.Fatalf("options %q, want only %q:\n%q", got.Keys(), key, out)
			}
		}
		if len(got.Env) > 1 || len(got.Raw) > 1 || (len(got.Raw) == 1 && got.Raw[0].Key != "lxc.init.cmd") {
			t.Fatalf("env %q raw %q:\n%q", got.Env, got.Raw, out)
		}
		want := strings.TrimRight(desc, "\n")
		if want != "" {
			want += "\n"
		}
		if got.Description != want {
			t.Fatalf("description %q, want %q", got.Description, desc)
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

// MarshalStorageConfig (a test helper: nothing writes storage.cfg) writes storage.cfg: per stanza `path` and `content`
// first (as Proxmox's own files read), then the other keys sorted.
func MarshalStorageConfig(list []Storage) ([]byte, error) {
	var b strings.Builder
	for i, s := range list {
		if err := VerifyStorageID(s.Name); err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %s\n", s.Type, s.Name)
		props := map[string]string{}
		for k, v := range s.Props {
			props[k] = v
		}
		if s.Path != "" {
			props["path"] = s.Path
		}
		if len(s.Content) > 0 {
			props["content"] = strings.Join(s.Content, ",")
		}
		keys := make([]string, 0, len(props))
		for k := range props {
			if k != "path" && k != "content" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range append([]string{"path", "content"}, keys...) {
			v, ok := props[k]
			if !ok {
				continue
			}
			if strings.ContainsAny(k+v, "\n\r") || strings.ContainsAny(k, " \t") {
				return nil, fmt.Errorf("storage %s: invalid property %q", s.Name, k)
			}
			fmt.Fprintf(&b, "\t%s %s\n", k, v)
		}
	}
	return []byte(b.String()), nil
}

// ValidatePropValue refuses a value that cannot travel inside a property
// string unchanged: a comma (it would start a new property), a control
// character (it could end the config line), or, for the bare default-key
// value, an `=` (it would be read as key=value).
func ValidatePropValue(key, value string, bare bool) error {
	if value == "" {
		return fmt.Errorf("property '%s': empty value", key)
	}
	if strings.Contains(value, ",") {
		return fmt.Errorf("illegal value with commas for %s", key)
	}
	if bare && strings.Contains(value, "=") {
		return fmt.Errorf("property '%s': value '%s' must not contain '='", key, value)
	}
	for _, r := range value {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("property '%s': value contains a control character", key)
		}
	}
	return nil
}
