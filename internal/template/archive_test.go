package template

import (
	"archive/tar"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestInspectArchiveCompressions(t *testing.T) {
	dir := t.TempDir()
	raw := tarBytes(t, rootfsEntries(elfAmd64, debianOSRelease()))
	for _, comp := range []string{CompNone, CompGzip, CompXz, CompZstd, CompBzip2} {
		t.Run(comp, func(t *testing.T) {
			p := writeFile(t, filepath.Join(dir, "rootfs"+ExtForCompression(comp)), compress(t, comp, raw))
			info, err := InspectArchive(p)
			if err != nil {
				t.Fatal(err)
			}
			if info.Compression != comp || info.Arch != "amd64" || info.OSType != "debian" || info.Entries != 5 {
				t.Errorf("got %+v", info)
			}
			if !strings.HasPrefix(info.Digest, "sha256:") || len(info.Digest) != 71 {
				t.Errorf("digest %q", info.Digest)
			}
		})
	}
}

func TestInspectArchiveDetection(t *testing.T) {
	cases := []struct {
		name         string
		es           []entry
		file         string
		arch, ostype string
	}{
		{"no os-release", rootfsEntries(elfAmd64), "x.tar", "amd64", "unmanaged"},
		{"unknown distro", rootfsEntries(elfAmd64, entry{name: "./etc/os-release", body: "ID=plan9\n"}), "x.tar", "amd64", "unmanaged"},
		{"alias", rootfsEntries(elfAmd64, entry{name: "./etc/os-release", body: "ID=\"rocky\"\n"}), "x.tar", "amd64", "centos"},
		{"quoted ubuntu", rootfsEntries(elfAmd64, entry{name: "./etc/os-release", body: "NAME=\"Ubuntu\"\nID='ubuntu'\n"}), "x.tar", "amd64", "ubuntu"},
		{"marker file", rootfsEntries(elfAmd64, entry{name: "./etc/alpine-release", body: "3.22.0\n"}), "x.tar", "amd64", "alpine"},
		{"os-release symlink into usr/lib", rootfsEntries(elfAmd64,
			entry{name: "./usr/lib/os-release", body: "ID=arch\n"},
			entry{name: "./etc/os-release", typ: tar.TypeSymlink, link: "../usr/lib/os-release"}), "x.tar", "amd64", "archlinux"},
		{"usrmerge arm64 via absolute links", []entry{
			{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
			{name: "usr/bin/dash", body: elfArm64, mode: 0o755},
			{name: "usr/bin/sh", typ: tar.TypeSymlink, link: "/usr/bin/dash"},
		}, "x.tar", "arm64", "unmanaged"},
		{"hard link", []entry{
			{name: "bin/busybox", body: elfHeader(1, 3), mode: 0o755},
			{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		}, "x.tar", "i386", "unmanaged"},
		{"arch from the name when no ELF sh", []entry{{name: "etc/hostname", body: "x"}}, "x_arm64.tar", "arm64", "unmanaged"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, filepath.Join(t.TempDir(), c.file), tarBytes(t, c.es))
			info, err := InspectArchive(p)
			if err != nil {
				t.Fatal(err)
			}
			if info.Arch != c.arch || info.OSType != c.ostype {
				t.Errorf("arch %q ostype %q, want %q %q", info.Arch, info.OSType, c.arch, c.ostype)
			}
		})
	}
}

func TestInspectArchiveErrors(t *testing.T) {
	dir := t.TempDir()
	good := tarBytes(t, rootfsEntries(elfAmd64))
	cases := []struct {
		name, file string
		data       []byte
		kind       errs.Kind
		want       string
	}{
		{"empty archive", "e.tar", tarBytes(t, nil), errs.KindTemplate, "not a tar archive"},
		{"no entries compressed", "e.tar.gz", compress(t, CompGzip, tarBytes(t, nil)), errs.KindTemplate, "empty"},
		{"no root filesystem", "n.tar", tarBytes(t, []entry{{name: "rootfs/bin/sh", body: "x"}}), errs.KindTemplate, "no root filesystem"},
		{"not an archive", "j.tar.gz", []byte("<html>not found</html>"), errs.KindTemplate, "not a tar archive"},
		{"extension lies", "x.tar.zst", compress(t, CompGzip, good), errs.KindTemplate, "gzip"},
		{"truncated", "t.tar.xz", compress(t, CompXz, good)[:100], errs.KindTemplate, "reading"},
		{"missing", "absent.tar", nil, errs.KindNotFound, "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.file)
			if c.data != nil {
				writeFile(t, p, c.data)
			}
			_, err := InspectArchive(p)
			wantErr(t, err, c.kind, c.want)
		})
	}
}
