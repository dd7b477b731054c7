package pvesim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testNode returns a Node rooted in a fresh temp dir.
func testNode(t *testing.T) *Node {
	t.Helper()
	var out, errb bytes.Buffer
	return &Node{Root: t.TempDir(), Name: "pve", Stdout: &out, Stderr: &errb}
}

type member struct {
	hdr  tar.Header
	data string
}

func writeTar(t *testing.T, members []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := m.hdr
		h.Size = int64(len(m.data))
		if h.ModTime.IsZero() {
			h.ModTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleMembers() []member {
	return []member{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./etc/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./etc/hello", Mode: 0o640, Uid: 0, Gid: 42}, data: "hello\n"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/suid", Mode: 0o4755, Uid: 1000, Gid: 1000}, data: "x"},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "./etc/link", Linkname: "/etc/hello", Uid: 7, Gid: 8}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "./etc/hard", Linkname: "./etc/hello"}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "./run/fifo", Mode: 0o600}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "./lib/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./tmp/", Mode: 0o1777}},
	}
}

// compressWith runs the system compressor so detection is tested against
// archives made by the real tools, not by our own writer.
func compressWith(t *testing.T, raw []byte, tool string, args ...string) []byte {
	t.Helper()
	if tool == "" {
		return raw
	}
	cmd := exec.Command(tool, args...)
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out
}

func TestExtractTemplateCompressions(t *testing.T) {
	raw := writeTar(t, sampleMembers())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	cases := []struct {
		name string
		data []byte
	}{
		{"plain.tar", raw},
		{"t.tar.gz", gz.Bytes()},
		{"t.tar.xz", compressWith(t, raw, "xz", "-c")},
		{"t.tar.zst", compressWith(t, raw, "zstd", "-c", "-q")},
		{"t.tar.bz2", compressWith(t, raw, "bzip2", "-c")},
		// Compression is found by content, not by the file name.
		{"lying.tar.gz", compressWith(t, raw, "zstd", "-c", "-q")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := testNode(t)
			archive := filepath.Join(t.TempDir(), tc.name)
			if err := os.WriteFile(archive, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			rootfs := filepath.Join(n.Root, "rootfs")
			if err := n.extractTemplate(archive, rootfs, false); err != nil {
				t.Fatal(err)
			}
			checkExtracted(t, rootfs, 0)
		})
	}
}

func checkExtracted(t *testing.T, rootfs string, shift int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rootfs, "etc/hello"))
	if err != nil || string(b) != "hello\n" {
		t.Fatalf("etc/hello = %q, %v", b, err)
	}
	owner := func(rel string, wantUID, wantGID int, wantMode fs.FileMode) {
		t.Helper()
		st, err := os.Lstat(filepath.Join(rootfs, rel))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if int(sys.Uid) != wantUID+shift || int(sys.Gid) != wantGID+shift {
			t.Errorf("%s owned by %d:%d, want %d:%d", rel, sys.Uid, sys.Gid, wantUID+shift, wantGID+shift)
		}
		if wantMode != 0 && st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSticky) != wantMode {
			t.Errorf("%s mode %v, want %v", rel, st.Mode(), wantMode)
		}
	}
	owner(".", 0, 0, 0o755)
	owner("etc/hello", 0, 42, 0o640)
	owner("usr/bin/suid", 1000, 1000, 0o755|fs.ModeSetuid)
	owner("etc/link", 7, 8, 0)
	owner("tmp", 0, 0, 0o777|fs.ModeSticky)
	if l, err := os.Readlink(filepath.Join(rootfs, "etc/link")); err != nil || l != "/etc/hello" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(rootfs, "etc/hello"))
	h, _ := os.Stat(filepath.Join(rootfs, "etc/hard"))
	if !os.SameFile(a, h) {
		t.Error("etc/hard is not a hard link of etc/hello")
	}
	if st, err := os.Lstat(filepath.Join(rootfs, "run/fifo")); err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("run/fifo: %v %v", st, err)
	}
	if st, err := os.Lstat(filepath.Join(rootfs, "lib/null")); err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		t.Errorf("lib/null: %v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "dev/null")); err == nil {
		t.Error("dev/* must be skipped like Proxmox's --exclude './dev/*'")
	}
	if st, _ := os.Stat(filepath.Join(rootfs, "etc/hello")); !st.ModTime().Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("mtime not kept: %v", st.ModTime())
	}
}

func TestExtractTemplateUnprivilegedShiftsIDs(t *testing.T) {
	n := testNode(t)
	archive := filepath.Join(t.TempDir(), "t.tar")
	if err := os.WriteFile(archive, writeTar(t, sampleMembers()), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(n.Root, "rootfs")
	if err := n.extractTemplate(archive, rootfs, true); err != nil {
		t.Fatal(err)
	}
	checkExtracted(t, rootfs, 100000)
}

func TestExtractTemplateUnprivilegedRefusesUnmappableIDs(t *testing.T) {
	n := testNode(t)
	archive := filepath.Join(t.TempDir(), "t.tar")
	m := []member{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Uid: 70000}, data: "x"}}
	os.WriteFile(archive, writeTar(t, m), 0o644)
	err := n.extractTemplate(archive, filepath.Join(n.Root, "rootfs"), true)
	if err == nil || !strings.Contains(err.Error(), "cannot change ownership") {
		t.Fatalf("err = %v", err)
	}
}

func TestExtractTemplateRefusesEscapes(t *testing.T) {
	cases := map[string][]member{
		"dotdot":        {{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Mode: 0o644}, data: "x"}},
		"nested dotdot": {{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./a/../../evil", Mode: 0o644}, data: "x"}},
		"through symlink": {
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "./up", Linkname: "../.."}},
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./up/evil", Mode: 0o644}, data: "x"},
		},
		"absolute symlink dir": {
			{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "./abs", Linkname: "/tmp"}},
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./abs/evil", Mode: 0o644}, data: "x"},
		},
		"hardlink out": {{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "./h", Linkname: "../../etc/passwd"}}},
	}
	for name, members := range cases {
		t.Run(name, func(t *testing.T) {
			n := testNode(t)
			outer := t.TempDir()
			archive := filepath.Join(outer, "t.tar")
			os.WriteFile(archive, writeTar(t, members), 0o644)
			rootfs := filepath.Join(outer, "a", "rootfs")
			if err := n.extractTemplate(archive, rootfs, false); err == nil {
				t.Fatal("extraction succeeded")
			}
			for _, p := range []string{filepath.Join(outer, "evil"), filepath.Join(outer, "a", "evil"), "/tmp/evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s was written outside the rootfs", p)
				}
			}
		})
	}
}

func TestExtractTemplateSkipsExistingFiles(t *testing.T) {
	n := testNode(t)
	rootfs := filepath.Join(n.Root, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/hello"), []byte("mine"), 0o644)
	archive := filepath.Join(t.TempDir(), "t.tar")
	os.WriteFile(archive, writeTar(t, sampleMembers()), 0o644)
	if err := n.extractTemplate(archive, rootfs, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/hello")); string(b) != "mine" {
		t.Fatalf("existing file overwritten: %q", b)
	}
}

func TestExtractTemplateMissingArchive(t *testing.T) {
	n := testNode(t)
	err := n.extractTemplate(filepath.Join(n.Root, "nope.tar.zst"), filepath.Join(n.Root, "rootfs"), false)
	if err == nil || !strings.Contains(err.Error(), "nope.tar.zst") {
		t.Fatalf("err = %v", err)
	}
}

func TestExtractTemplateCorruptArchive(t *testing.T) {
	n := testNode(t)
	archive := filepath.Join(t.TempDir(), "t.tar.zst")
	os.WriteFile(archive, append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 100)...), 0o644)
	if err := n.extractTemplate(archive, filepath.Join(n.Root, "rootfs"), false); err == nil {
		t.Fatal("corrupt archive extracted")
	}
}
