package pve

import (
	"strings"
	"testing"
)

func TestParseVolumeID(t *testing.T) {
	s, v, err := ParseVolumeID("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
	if err != nil || s != "local" || v != "vztmpl/debian-12-standard_12.7-1_amd64.tar.zst" {
		t.Fatalf("%q %q %v", s, v, err)
	}
	for _, bad := range []string{"x", "/abs/path.tar", "Local:x", "l:x", "local-:x", "local:"} {
		if _, _, err := ParseVolumeID(bad); err == nil || err.Error() != "unable to parse volume ID '"+bad+"'" {
			t.Errorf("%q: %v", bad, err)
		}
	}
	f, err := TemplateVolume("vztmpl/alpine-3.22-default_20250617_amd64.tar.xz")
	if err != nil || f != "alpine-3.22-default_20250617_amd64.tar.xz" {
		t.Errorf("%q %v", f, err)
	}
	if _, err := TemplateVolume("iso/x.iso"); err == nil {
		t.Error("iso accepted as template")
	}
	if ContentType("iso/x.iso") != "iso" || ContentType("vztmpl/a.tar") != "vztmpl" || ContentType("100/subvol-100-disk-0") != "rootdir" {
		t.Error("content types")
	}
}

func TestValidateTemplateName(t *testing.T) {
	for _, ok := range []string{"a.tar", "a.tar.gz", "a.tar.xz", "a.tar.zst", "a.tar.bz2"} {
		if err := ValidateTemplateName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"a.zip", ".tar", "a/b.tar", "../a.tar", "a.tgz", strings.Repeat("a", 252) + ".tar", "a\n.tar"} {
		if ValidateTemplateName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
