package pvecfg

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseProps(t *testing.T) {
	cases := []struct {
		in, def string
		want    Props
		err     string
	}{
		{"name=eth0,bridge=vmbr0,ip=dhcp", "", Props{{"name", "eth0"}, {"bridge", "vmbr0"}, {"ip", "dhcp"}}, ""},
		{"local:8,mp=/data,ro=1", "volume", Props{{"volume", "local:8"}, {"mp", "/data"}, {"ro", "1"}}, ""},
		{"mp=/data,/srv", "volume", Props{{"mp", "/data"}, {"volume", "/srv"}}, ""},
		{"a==b", "", Props{{"a", "=b"}}, ""},
		{" ,a=1,, ", "", Props{{"a", "1"}}, ""},
		{"a=1,a=2", "", nil, "duplicate key in comma-separated list property: a"},
		{"x,y", "volume", nil, "duplicate key in comma-separated list property: volume"},
		{"volume=x,y", "volume", nil, "duplicate key in comma-separated list property: volume"},
		{"eth0", "", nil, "value without key, but schema does not define a default key"},
		{"=x", "", nil, "missing key in comma-separated list property"},
		{"a=", "", nil, "missing key in comma-separated list property"},
	}
	for _, tc := range cases {
		got, err := ParseProps(tc.in, tc.def)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %v, %v", tc.in, got, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	p, _ := ParseProps("ip=dhcp,type=veth,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,name=eth0", "")
	if got := NetFormat.Canonical(p); got != "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth" {
		t.Errorf("net canonical = %q", got)
	}
	p, _ = ParseProps("ro=1,backup=1,mp=/data,size=8G,volume=local:vm-1-disk-0", "volume")
	if got := MountFormat.Canonical(p); got != "local:vm-1-disk-0,mp=/data,backup=1,ro=1,size=8G" {
		t.Errorf("mp canonical = %q", got)
	}
	p, _ = ParseProps("keyctl=1,nesting=1", "")
	if got := FeaturesFormat.Canonical(p); got != "keyctl=1,nesting=1" {
		t.Errorf("features canonical = %q", got)
	}
}

func TestPropFormatParse(t *testing.T) {
	cases := []struct {
		f    PropFormat
		path string
		in   string
		err  string
	}{
		{NetFormat, "net0", "name=eth0,bridge=vmbr0,ip=dhcp", ""},
		{NetFormat, "net0", "bridge=vmbr0", "format error\nnet0.name: property is missing and it is not optional\n"},
		{NetFormat, "net0", "name=eth0,ip=10.0.0.5", "format error\nnet0.ip: invalid format - value does not look like a valid ipv4 network configuration\n\n"},
		{NetFormat, "net0", "name=eth0,ip=10.0.0.5/24,gw=10.0.0.1", ""},
		{NetFormat, "net0", "name=eth0,ip6=fd00::1/64", ""},
		{NetFormat, "net0", "name=eth0,mtu=10", "format error\nnet0.mtu: value must have a minimum value of 64\n"},
		{NetFormat, "net0", "name=eth0,tag=5000", "format error\nnet0.tag: value must have a maximum value of 4094\n"},
		{NetFormat, "net0", "name=eth0,foo=1", "format error\nnet0.foo: property is not defined in schema and the schema does not allow additional properties\n"},
		{NetFormat, "net0", "name=eth 0", "format error\nnet0.name: value does not match the regex pattern\n"},
		{NetFormat, "net0", "name=eth0,hwaddr=01:00:00:00:00:00", "format error\nnet0.hwaddr: invalid format - value does not look like a valid unicast MAC address\n\n"},
		{NetFormat, "net0", "name=eth0,firewall=maybe", "format error\nnet0.firewall: type check ('boolean') failed - got 'maybe'\n"},
		{MountFormat, "mp0", "/srv,mp=/data,ro=yes", ""},
		{MountFormat, "mp0", "/srv", "format error\nmp0.mp: property is missing and it is not optional\n"},
		{MountFormat, "mp0", "/srv,mp=/a/../b", "format error\nmp0.mp: invalid format - /a/../b contains illegal character sequences\n\n"},
		{MountFormat, "mp0", "/srv,mp=/d,mountoptions=noatime;nodev", ""},
		{MountFormat, "mp0", "/srv,mp=/d,mountoptions=rw", "format error\nmp0.mountoptions: value does not match the regex pattern\n"},
		{RootfsFormat, "rootfs", "local:4,size=4G", ""},
		{RootfsFormat, "rootfs", "local:4,size=4X", "format error\nrootfs.size: invalid format - value does not look like a valid disk size: 4X\n\n"},
		{FeaturesFormat, "features", "nesting=1,keyctl=1,mount=nfs;cifs", ""},
		{FeaturesFormat, "features", "nesting=2", "format error\nfeatures.nesting: type check ('boolean') failed - got '2'\n"},
		{DevFormat, "dev0", "/dev/null,mode=0666", ""},
		{DevFormat, "dev0", "/tmp/x", "format error\ndev0.path: invalid format - /tmp/x is not a valid device path\n\n"},
	}
	for _, tc := range cases {
		_, err := tc.f.Parse(tc.path, tc.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.err {
			t.Errorf("%s=%q: err = %q, want %q", tc.path, tc.in, got, tc.err)
		}
	}
	p, _ := MountFormat.Parse("mp0", "/srv,mp=/data,ro=yes")
	if v, _ := p.Get("ro"); v != "1" {
		t.Errorf("boolean not normalised: %q", v)
	}
}

func TestValidatePropValue(t *testing.T) {
	for _, v := range []string{"a,b", "a\nb", "a\x00", ""} {
		if ValidatePropValue("k", v, false) == nil {
			t.Errorf("%q accepted", v)
		}
	}
	if ValidatePropValue("volume", "/a=b", true) == nil {
		t.Error("= in bare value accepted")
	}
	if err := ValidatePropValue("mp", "/a=b", false); err != nil {
		t.Errorf("= in keyed value refused: %v", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"4G": 4 << 30, "512M": 512 << 20, "1.5K": 1536, "100": 100, "1T": 1 << 40} {
		if got, ok := ParseSize(in); !ok || got != want {
			t.Errorf("ParseSize(%q) = %d %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "G", "4g", "-1G", "4 G"} {
		if _, ok := ParseSize(bad); ok {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	for n, want := range map[int64]string{4 << 30: "4G", 512 << 20: "512M", 1536: "1536", 2048: "2K", 1 << 40: "1T", 1536 << 20: "1536M"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q want %q", n, got, want)
		}
	}
}

func TestSchemaCheck(t *testing.T) {
	cases := map[string][2]string{
		"memory=8":           {"memory", "value must have a minimum value of 16"},
		"memory=abc":         {"memory", "type check ('integer') failed - got 'abc'"},
		"memory=-5":          {"memory", "value must have a minimum value of 16"},
		"cores=0":            {"cores", "value must have a minimum value of 1"},
		"cores=9000":         {"cores", "value must have a maximum value of 8192"},
		"cpulimit=1.5":       {"cpulimit", ""},
		"cpulimit=x":         {"cpulimit", "type check ('number') failed - got 'x'"},
		"cpuunits=600000":    {"cpuunits", "value must have a maximum value of 500000"},
		"hostname=a_b":       {"hostname", "invalid format - value does not look like a valid DNS name\n"},
		"hostname=web-1.lan": {"hostname", ""},
		"ostype=windows":     {"ostype", "value 'windows' does not have a value in the enumeration 'debian, devuan, ubuntu, centos, fedora, opensuse, archlinux, alpine, gentoo, nixos, unmanaged'"},
		"arch=amd64":         {"arch", ""},
		"tags=a;b":           {"tags", ""},
		"timezone=Etc/UTC":   {"timezone", "invalid format - invalid time zone 'Etc/UTC'\n"},
	}
	if got := ConfigSchema(V9_1)["net0"].Check("net0", "bridge=x"); got != "invalid format - format error\nnet0.name: property is missing and it is not optional\n" {
		t.Errorf("net0: %q", got)
	}
	for in, c := range cases {
		v := in[strings.IndexByte(in, '=')+1:]
		if got := ConfigSchema(V9_1)[c[0]].Check(c[0], v); got != c[1] {
			t.Errorf("%s: %q want %q", in, got, c[1])
		}
	}
}
