package pve

import (
	"reflect"
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
