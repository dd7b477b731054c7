package pve

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
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

// FuzzParseList checks the `pct list` parser: no panic, and every row has
// a status and a VMID that appeared in the text.
func FuzzParseList(f *testing.F) {
	f.Add("VMID       Status     Lock         Name                \n100        running                 web1                \n101        stopped    snapshot-delete ct101\n")
	f.Add("")
	f.Add("100\n1000000000000000000000 running x\n-1 stopped\n")
	f.Fuzz(func(t *testing.T, out string) {
		for _, e := range ParseList(out) {
			if e.Status == "" || strings.ContainsAny(e.Status+e.Lock+e.Name, " \t\n") {
				t.Fatalf("bad row %+v from %q", e, out)
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
