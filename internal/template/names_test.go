package template

import (
	"slices"
	"testing"
)

func TestParseName(t *testing.T) {
	cases := []struct {
		file string
		ok   bool
		want Name
	}{
		{"ubuntu-22.04-standard_22.04-1_amd64.tar.zst", true, Name{OS: "ubuntu", Version: "22.04", Flavour: "standard", PkgVersion: "22.04-1", Arch: "amd64", Ext: ".tar.zst"}},
		{"alpine-3.22-default_20250617_amd64.tar.xz", true, Name{OS: "alpine", Version: "3.22", Flavour: "default", PkgVersion: "20250617", Arch: "amd64", Ext: ".tar.xz"}},
		{"debian-12-turnkey-core_18.1-1_amd64.tar.gz", true, Name{OS: "debian", Version: "12", Flavour: "turnkey-core", PkgVersion: "18.1-1", Arch: "amd64", Ext: ".tar.gz"}},
		{"archlinux-base_20240911-1_amd64.tar.zst", true, Name{OS: "archlinux", Flavour: "base", PkgVersion: "20240911-1", Arch: "amd64", Ext: ".tar.zst"}},
		{"centos-9-stream-default_20240828_arm64.tar.xz", true, Name{OS: "centos", Version: "9", Flavour: "stream-default", PkgVersion: "20240828", Arch: "arm64", Ext: ".tar.xz"}},
		{"rootfs.tar.xz", false, Name{Ext: ".tar.xz"}},
		{"foo_1_sparc.tar", false, Name{Ext: ".tar"}},
		{"ubuntu.iso", false, Name{}},
	}
	for _, c := range cases {
		got, ok := ParseName(c.file)
		c.want.File = c.file
		if ok != c.ok || got != c.want {
			t.Errorf("ParseName(%q) = %+v, %v; want %+v, %v", c.file, got, ok, c.want, c.ok)
		}
	}
}

func TestValidFileName(t *testing.T) {
	good := []string{"ubuntu-22.04-standard_22.04-1_amd64.tar.zst", "x.tar", "a+b.tar.bz2"}
	bad := []string{"x.tar.zst.iso", "../x.tar", "x y.tar.gz", "-x.tar", ".hidden.tar", "x\n.tar", "dir/x.tar", ".tar"}
	for _, n := range good {
		if !ValidFileName(n) {
			t.Errorf("ValidFileName(%q) = false", n)
		}
	}
	for _, n := range bad {
		if ValidFileName(n) {
			t.Errorf("ValidFileName(%q) = true", n)
		}
	}
}

func TestArchFromFileName(t *testing.T) {
	for file, want := range map[string]string{
		"debian-12-standard_12.7-1_amd64.tar.zst":   "amd64",
		"alpine-3.22-default_20250617_arm64.tar.xz": "arm64",
		"rootfs-aarch64.tar.gz":                     "arm64",
		"rootfs.x86_64.tar.gz":                      "amd64",
		"rootfs.tar.xz":                             "",
	} {
		if got := ArchFromFileName(file); got != want {
			t.Errorf("ArchFromFileName(%q) = %q, want %q", file, got, want)
		}
	}
}

func names(files ...string) []Name {
	return parseNames(files)
}

func TestPickNewest(t *testing.T) {
	all := names(
		"ubuntu-20.04-standard_20.04-1_amd64.tar.gz",
		"ubuntu-22.04-standard_22.04-1_amd64.tar.zst",
		"ubuntu-24.04-standard_24.04-2_arm64.tar.zst",
		"debian-11-standard_11.7-1_amd64.tar.zst",
		"debian-12-standard_12.2-1_amd64.tar.zst",
		"debian-12-standard_12.7-1_amd64.tar.zst",
		"debian-12-turnkey-core_18.1-1_amd64.tar.gz",
		"debian-12-turnkey-wordpress_18.0-1_amd64.tar.gz",
		"alpine-3.9-default_20190101_amd64.tar.xz",
		"alpine-3.22-default_20250617_amd64.tar.xz",
		"alpine-3.21-default_20241217_amd64.tar.xz",
	)
	amd := []string{"amd64", "i386"}
	cases := map[string]string{
		"ubuntu":                 "ubuntu-22.04-standard_22.04-1_amd64.tar.zst", // 24.04 is arm64 only
		"ubuntu-20.04":           "ubuntu-20.04-standard_20.04-1_amd64.tar.gz",
		"debian":                 "debian-12-standard_12.7-1_amd64.tar.zst",
		"debian-12":              "debian-12-standard_12.7-1_amd64.tar.zst",
		"debian-11":              "debian-11-standard_11.7-1_amd64.tar.zst",
		"debian-12-turnkey-core": "debian-12-turnkey-core_18.1-1_amd64.tar.gz",
		"alpine":                 "alpine-3.22-default_20250617_amd64.tar.xz", // 3.22 > 3.9 numerically
		"alpine-3":               "alpine-3.22-default_20250617_amd64.tar.xz",
	}
	for short, want := range cases {
		best, amb := pickNewest(parseShort(short), all, amd)
		if amb != nil || best == nil || best.File != want {
			t.Errorf("%s: got %v (ambiguous %v), want %s", short, best, amb, want)
		}
	}
	if best, amb := pickNewest(parseShort("debian-12-turnkey"), all, amd); best != nil || len(amb) != 2 {
		t.Errorf("debian-12-turnkey: want ambiguity between two turnkey flavours, got %v %v", best, amb)
	}
	if best, amb := pickNewest(parseShort("fedora"), all, amd); best != nil || amb != nil {
		t.Errorf("fedora: want no match, got %v %v", best, amb)
	}
	tk := names("debian-12-turnkey-core_18.1-1_amd64.tar.gz", "debian-12-turnkey-nginx_18.0-1_amd64.tar.gz")
	if _, amb := pickNewest(parseShort("debian"), tk, amd); len(amb) != 2 {
		t.Errorf("debian among only turnkey flavours: want ambiguity, got %v", amb)
	}
}

func TestIsShortName(t *testing.T) {
	for _, s := range []string{"ubuntu", "ubuntu-22.04", "debian-12", "debian-12-standard", "alpine-3.22"} {
		if !IsShortName(s) {
			t.Errorf("IsShortName(%q) = false", s)
		}
	}
	for _, s := range []string{"Ubuntu", "alpine:3.20", "a/b", "-x", "x--y", ""} {
		if IsShortName(s) {
			t.Errorf("IsShortName(%q) = true", s)
		}
	}
}

func TestClosest(t *testing.T) {
	got := closest("ubuntu-22.04-standard_22.04-1_amd64.tar.zst", []string{
		"alpine-3.22-default_20250617_amd64.tar.xz",
		"ubuntu-22.04-standard_22.04-1_amd64.tar.gz",
		"ubuntu-20.04-standard_20.04-1_amd64.tar.gz",
		"ubuntu-22.04-standard_22.04-1_amd64.tar.gz", // also offered by pveam available
	}, 2)
	want := []string{"ubuntu-22.04-standard_22.04-1_amd64.tar.gz", "ubuntu-20.04-standard_20.04-1_amd64.tar.gz"}
	if !slices.Equal(got, want) {
		t.Errorf("closest = %v, want %v", got, want)
	}
}
