package template

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	goruntime "runtime"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/ulikunitz/xz"
)

// Compression names as recognised from an archive's first bytes.
const (
	CompGzip  = "gzip"
	CompXz    = "xz"
	CompZstd  = "zstd"
	CompBzip2 = "bzip2"
	CompNone  = "none" // plain tar
)

// compExt maps a compression to the template file extension pct expects.
var compExt = map[string]string{
	CompGzip: ".tar.gz", CompXz: ".tar.xz", CompZstd: ".tar.zst", CompBzip2: ".tar.bz2", CompNone: ".tar",
}

// ExtForCompression returns the template extension for a compression name.
func ExtForCompression(c string) string { return compExt[c] }

// sniffCompression recognises a compression by its magic bytes; "" when
// the data is neither compressed in a known way nor a tar archive.
func sniffCompression(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return CompGzip
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return CompXz
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return CompZstd
	case bytes.HasPrefix(b, []byte("BZh")):
		return CompBzip2
	case len(b) >= 262 && bytes.Equal(b[257:262], []byte("ustar")):
		return CompNone
	}
	return ""
}

// decompress wraps r (positioned at the start of the data) in the reader
// for compression c. The returned close function releases decoder state.
func decompress(r io.Reader, c string) (io.Reader, func(), error) {
	nop := func() {}
	switch c {
	case CompGzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nop, err
		}
		return z, func() { z.Close() }, nil
	case CompXz:
		z, err := xz.NewReader(r)
		return z, nop, err
	case CompZstd:
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nop, err
		}
		return z, z.Close, nil
	case CompBzip2:
		return bzip2.NewReader(r), nop, nil
	case CompNone:
		return r, nop, nil
	}
	return nil, nop, fmt.Errorf("unknown compression %q", c)
}

// openCompressed sniffs br and returns a decompressing reader over it.
func openCompressed(br *bufio.Reader) (io.Reader, string, func(), error) {
	head, _ := br.Peek(512)
	c := sniffCompression(head)
	if c == "" {
		return nil, "", func() {}, errors.New("not a tar archive and not compressed with gzip, xz, zstd or bzip2")
	}
	r, done, err := decompress(br, c)
	return r, c, done, err
}

// Info is what inspecting a template archive found.
type Info struct {
	Compression string `json:"compression"`
	Size        int64  `json:"size"`
	Digest      string `json:"digest"` // sha256:<hex> of the archive file
	Arch        string `json:"arch"`   // Proxmox arch name; "" when unknown
	OSType      string `json:"ostype"` // Proxmox ostype or "unmanaged"
	Entries     int    `json:"entries"`
}

// archiveIndex collects, in one pass over a tar stream, what is needed to
// answer questions that involve links (such as "what is /bin/sh").
type archiveIndex struct {
	entries   int
	hasRoot   bool
	symlinks  map[string]string // cleaned path -> link target as written
	hardlinks map[string]string // cleaned path -> cleaned target
	elf       map[string]elfInfo
	files     map[string][]byte // small files we want the content of
	regular   map[string]bool
}

type elfInfo struct {
	class   byte // 1 = 32-bit, 2 = 64-bit
	machine uint16
}

// wantContent: small files whose content decides the OS type.
var wantContent = map[string]bool{
	"etc/os-release": true, "usr/lib/os-release": true, "etc/lsb-release": true,
}

// cleanRel turns a tar entry name into a clean path relative to the root
// ("" for the root itself); ".." cannot climb above the root.
func cleanRel(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func newIndex() *archiveIndex {
	return &archiveIndex{
		symlinks: map[string]string{}, hardlinks: map[string]string{},
		elf: map[string]elfInfo{}, files: map[string][]byte{}, regular: map[string]bool{},
	}
}

func (ix *archiveIndex) add(h *tar.Header, body io.Reader) error {
	name := cleanRel(h.Name)
	if name == "" {
		return nil
	}
	ix.entries++
	switch top, _, _ := strings.Cut(name, "/"); top {
	case "bin", "etc", "usr":
		ix.hasRoot = true
	}
	switch h.Typeflag {
	case tar.TypeSymlink:
		ix.symlinks[name] = h.Linkname
	case tar.TypeLink:
		ix.hardlinks[name] = cleanRel(h.Linkname)
	case tar.TypeReg:
		ix.regular[name] = true
		if wantContent[name] {
			b, err := io.ReadAll(io.LimitReader(body, 64<<10))
			if err != nil {
				return err
			}
			ix.files[name] = b
			return nil
		}
		var hdr [20]byte
		if n, _ := io.ReadFull(body, hdr[:]); n == len(hdr) && bytes.HasPrefix(hdr[:], []byte("\x7fELF")) {
			var m uint16
			if hdr[5] == 2 {
				m = binary.BigEndian.Uint16(hdr[18:])
			} else {
				m = binary.LittleEndian.Uint16(hdr[18:])
			}
			ix.elf[name] = elfInfo{class: hdr[4], machine: m}
		}
	}
	return nil
}

// resolve follows symlinks (in any path component) and hard links inside
// the archive, the way the path would resolve inside the container.
func (ix *archiveIndex) resolve(p string) (string, bool) {
	p = cleanRel(p)
	for hops := 0; hops < 64; hops++ {
		parts := strings.Split(p, "/")
		changed := false
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			if t, ok := ix.symlinks[prefix]; ok {
				base := t
				if !strings.HasPrefix(t, "/") {
					base = path.Join(path.Dir(prefix), t)
				}
				p = cleanRel(path.Join(append([]string{base}, parts[i+1:]...)...))
				changed = true
				break
			}
			if t, ok := ix.hardlinks[prefix]; ok && i == len(parts)-1 {
				p, changed = t, true
				break
			}
		}
		if !changed {
			return p, true
		}
	}
	return "", false // symlink loop
}

func (ix *archiveIndex) exists(p string) bool {
	r, ok := ix.resolve(p)
	return ok && ix.regular[r]
}

func (ix *archiveIndex) content(p string) ([]byte, bool) {
	r, ok := ix.resolve(p)
	if !ok {
		return nil, false
	}
	b, ok := ix.files[r]
	return b, ok
}

// shArch is the Proxmox arch of the archive's /bin/sh ("" when it has no
// ELF /bin/sh).
func (ix *archiveIndex) shArch() string {
	for _, sh := range []string{"bin/sh", "usr/bin/sh", "bin/busybox"} {
		if r, ok := ix.resolve(sh); ok {
			if e, ok := ix.elf[r]; ok {
				return elfArch(e)
			}
		}
	}
	return ""
}

// elfArch maps an ELF machine to a Proxmox arch name.
func elfArch(e elfInfo) string {
	switch e.machine {
	case 62: // EM_X86_64
		return "amd64"
	case 3: // EM_386
		return "i386"
	case 183: // EM_AARCH64
		return "arm64"
	case 40: // EM_ARM
		return "armhf"
	case 243: // EM_RISCV
		if e.class == 1 {
			return "riscv32"
		}
		return "riscv64"
	}
	return fmt.Sprintf("elf-machine-%d", e.machine)
}

// osTypes are the ostype values Proxmox accepts for a managed distribution,
// and aliases maps other os-release IDs onto them.
var (
	osTypes = map[string]bool{
		"debian": true, "devuan": true, "ubuntu": true, "centos": true, "fedora": true,
		"opensuse": true, "archlinux": true, "alpine": true, "gentoo": true, "nixos": true,
	}
	osAliases = map[string]string{
		"arch": "archlinux", "sles": "opensuse", "opensuse-leap": "opensuse",
		"opensuse-tumbleweed": "opensuse", "almalinux": "centos", "rocky": "centos", "rhel": "centos",
	}
	// osMarkers are the fallback files pve-container checks, in its order.
	osMarkers = []struct{ file, ostype string }{
		{"etc/debian_version", "debian"}, {"etc/devuan_version", "devuan"},
		{"etc/SuSE-brand", "opensuse"}, {"etc/SuSE-release", "opensuse"},
		{"etc/fedora-release", "fedora"}, {"etc/centos-release", "centos"},
		{"etc/redhat-release", "centos"}, {"etc/arch-release", "archlinux"},
		{"etc/alpine-release", "alpine"}, {"etc/gentoo-release", "gentoo"},
	}
)

// fsView answers questions about files of a root filesystem (an archive
// index or a directory), with links resolved inside it.
type fsView interface {
	content(p string) ([]byte, bool) // the start of regular file p
	exists(p string) bool            // p is a regular file
}

func (ix *archiveIndex) osType() string { return osTypeOf(ix) }

// osTypeOf decides the ostype the way pct's autodetection would (plus
// os-release's ID_LIKE), but answers "unmanaged" where pct would fail with
// "unable to detect OS distribution".
func osTypeOf(ix fsView) string {
	osr, ok := ix.content("etc/os-release")
	if !ok {
		osr, _ = ix.content("usr/lib/os-release")
	}
	vals := parseOSRelease(osr)
	for _, id := range append([]string{vals["ID"]}, strings.Fields(vals["ID_LIKE"])...) {
		id = strings.ToLower(id)
		if osTypes[id] {
			return id
		}
		if a, ok := osAliases[id]; ok {
			return a
		}
	}
	if lsb, ok := ix.content("etc/lsb-release"); ok {
		for _, l := range strings.Split(string(lsb), "\n") {
			if strings.EqualFold(strings.TrimSpace(l), "DISTRIB_ID=Ubuntu") {
				return "ubuntu"
			}
		}
	}
	for _, m := range osMarkers {
		if ix.exists(m.file) {
			return m.ostype
		}
	}
	return "unmanaged"
}

// parseOSRelease reads os-release(5) variable assignments.
func parseOSRelease(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = strings.ReplaceAll(v, `\`, "")
	}
	return out
}

// HostArch is the Proxmox arch name of the machine nexcage runs on.
func HostArch() string {
	switch goruntime.GOARCH {
	case "amd64":
		return "amd64"
	case "386":
		return "i386"
	case "arm64":
		return "arm64"
	case "arm":
		return "armhf"
	case "riscv64":
		return "riscv64"
	}
	return goruntime.GOARCH
}

// CompatibleArches lists the container arches a host arch can run
// (Proxmox runs i386 containers on amd64 and armhf ones on arm64).
func CompatibleArches(host string) []string {
	switch host {
	case "amd64":
		return []string{"amd64", "i386"}
	case "arm64":
		return []string{"arm64", "armhf"}
	}
	return []string{host}
}

// InspectArchive reads the template archive at p once: it recognises the
// compression by content (and checks it against the file name's
// extension), hashes the file, checks that it holds a root filesystem and
// finds its arch and OS type. Errors are KindTemplate.
func InspectArchive(p string) (*Info, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errs.Wrap(errs.KindNotFound, err, "template %s does not exist", p)
		}
		return nil, errs.Wrap(errs.KindTemplate, err, "template %s is not readable", p)
	}
	defer f.Close()
	info, err := inspectStream(f, path.Base(p), true)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "template %s is not a usable container template", p).
			WithHint("use a tar archive (plain, gzip, xz, zstd or bzip2) of a root filesystem with /bin, /etc or /usr at its top")
	}
	return info, nil
}

// inspectStream does the work of InspectArchive on any reader; name gives
// the file-name arch, and with checkExt its extension must match the
// content's compression.
func inspectStream(r io.Reader, name string, checkExt bool) (*Info, error) {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	br := bufio.NewReaderSize(cr, 1<<16)
	dr, comp, done, err := openCompressed(br)
	if err != nil {
		return nil, err
	}
	defer done()
	if ext := TemplateExt(name); checkExt && ext != "" && ext != compExt[comp] {
		return nil, fmt.Errorf("the name ends in %s but the content is %s-compressed (rename it to end in %s)", ext, comp, compExt[comp])
	}
	ix := newIndex()
	tr := tar.NewReader(dr)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s tar stream after %d entries: %w", comp, ix.entries, err)
		}
		if err := ix.add(hd, tr); err != nil {
			return nil, fmt.Errorf("reading %s: %w", hd.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, err
	}
	if ix.entries == 0 {
		return nil, errors.New("the archive is empty")
	}
	if !ix.hasRoot {
		return nil, errors.New("the archive holds no root filesystem (no /bin, /etc or /usr at its top)")
	}
	arch := ix.shArch()
	if arch == "" {
		arch = ArchFromFileName(name)
	}
	return &Info{
		Compression: comp,
		Size:        cr.n,
		Digest:      "sha256:" + hex.EncodeToString(h.Sum(nil)),
		Arch:        arch,
		OSType:      ix.osType(),
		Entries:     ix.entries,
	}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
