package pvesim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// catalogueEntry is one downloadable template of the simulated appliance
// index (what `pveam available` lists).
type catalogueEntry struct {
	Section string // "system" or "turnkeylinux"
	Name    string // file name, e.g. debian-12-standard_12.7-1_amd64.tar.zst
	ID      string // os-release ID
	Version string // os-release VERSION_ID
	Pretty  string // os-release PRETTY_NAME
	// Codename is VERSION_CODENAME; for debian/ubuntu it also feeds
	// /etc/debian_version.
	Codename string
}

// catalogue is the built-in appliance index. Old and new releases of the
// same distribution are both present so "newest matching template" logic
// can be exercised.
var catalogue = []catalogueEntry{
	{"system", "alpine-3.21-default_20241217_amd64.tar.xz", "alpine", "3.21.0", "Alpine Linux v3.21", ""},
	{"system", "alpine-3.22-default_20250617_amd64.tar.xz", "alpine", "3.22.0", "Alpine Linux v3.22", ""},
	{"system", "debian-11-standard_11.7-1_amd64.tar.zst", "debian", "11", "Debian GNU/Linux 11 (bullseye)", "bullseye"},
	{"system", "debian-12-standard_12.7-1_amd64.tar.zst", "debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm"},
	{"system", "ubuntu-20.04-standard_20.04-1_amd64.tar.gz", "ubuntu", "20.04", "Ubuntu 20.04.6 LTS", "focal"},
	{"system", "ubuntu-22.04-standard_22.04-1_amd64.tar.zst", "ubuntu", "22.04", "Ubuntu 22.04.5 LTS", "jammy"},
	{"turnkeylinux", "debian-12-turnkey-core_18.1-1_amd64.tar.gz", "debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm"},
}

// defaultCachedTemplates are placed in the local template cache by
// `pvesim init --with-templates`.
var defaultCachedTemplates = []string{
	"alpine-3.22-default_20250617_amd64.tar.xz",
	"debian-12-standard_12.7-1_amd64.tar.zst",
	"ubuntu-22.04-standard_22.04-1_amd64.tar.zst",
}

// reTemplateName is what a template file in the catalogue must look like
// to be offered (the suffixes Proxmox accepts for vztmpl volumes).
var reTemplateName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+\-]*\.tar(\.gz|\.xz|\.zst|\.bz2)?$`)

// templateEpoch is the fixed mtime of every member, so archives are
// byte-for-byte reproducible.
var templateEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	templateCacheMu sync.Mutex
	templateCache   = map[string][]byte{} // name -> archive bytes, per process
	busyboxOnce     sync.Once
	busyboxData     []byte
	busyboxApplets  []string
	busyboxErr      error
)

// BusyboxPath is the static busybox the catalogue templates are built from.
var BusyboxPath = "/bin/busybox"

func loadBusybox() ([]byte, []string, error) {
	busyboxOnce.Do(func() {
		busyboxData, busyboxErr = os.ReadFile(BusyboxPath)
		if busyboxErr != nil {
			busyboxErr = fmt.Errorf("pvesim needs a static busybox at %s (Debian package busybox-static): %w", BusyboxPath, busyboxErr)
			return
		}
		out, err := exec.Command(BusyboxPath, "--list-full").Output()
		if err != nil {
			busyboxErr = fmt.Errorf("%s --list-full: %w", BusyboxPath, err)
			return
		}
		for _, l := range strings.Fields(string(out)) {
			l = strings.TrimPrefix(path.Clean("/"+l), "/")
			if l != "" && !strings.Contains(l, "..") {
				busyboxApplets = append(busyboxApplets, l)
			}
		}
		sort.Strings(busyboxApplets)
	})
	return busyboxData, busyboxApplets, busyboxErr
}

// buildTemplate returns the archive bytes of a catalogue template,
// compressed as its name says. Results are cached for the process.
func buildTemplate(e catalogueEntry) ([]byte, error) {
	templateCacheMu.Lock()
	defer templateCacheMu.Unlock()
	if b, ok := templateCache[e.Name]; ok {
		return b, nil
	}
	raw, err := buildRootfsTar(e)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	switch {
	case strings.HasSuffix(e.Name, ".tar.zst"):
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(raw); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case strings.HasSuffix(e.Name, ".tar.xz"):
		xw, err := xz.WriterConfig{DictCap: 1 << 20}.NewWriter(&buf)
		if err != nil {
			return nil, err
		}
		if _, err := xw.Write(raw); err != nil {
			return nil, err
		}
		if err := xw.Close(); err != nil {
			return nil, err
		}
	case strings.HasSuffix(e.Name, ".tar.gz"):
		gw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		if _, err := gw.Write(raw); err != nil {
			return nil, err
		}
		if err := gw.Close(); err != nil {
			return nil, err
		}
	case strings.HasSuffix(e.Name, ".tar"):
		buf.Write(raw)
	default:
		return nil, fmt.Errorf("template %s: unsupported compression", e.Name)
	}
	templateCache[e.Name] = buf.Bytes()
	return buf.Bytes(), nil
}

// rootfsFile is one member of a generated root filesystem.
type rootfsFile struct {
	name string
	mode int64
	typ  byte
	data []byte
	link string
}

// buildRootfsTar builds the uncompressed tar of a small busybox root
// filesystem that identifies as e's distribution.
func buildRootfsTar(e catalogueEntry) ([]byte, error) {
	bb, applets, err := loadBusybox()
	if err != nil {
		return nil, err
	}
	files := []rootfsFile{{name: ".", mode: 0o755, typ: tar.TypeDir}}
	for _, d := range []string{"bin", "dev", "etc", "etc/init.d", "home", "proc", "run", "sbin", "sys", "usr", "usr/bin", "usr/lib", "usr/sbin", "var", "var/log"} {
		files = append(files, rootfsFile{name: d, mode: 0o755, typ: tar.TypeDir})
	}
	files = append(files,
		rootfsFile{name: "root", mode: 0o700, typ: tar.TypeDir},
		rootfsFile{name: "tmp", mode: 0o1777, typ: tar.TypeDir},
		rootfsFile{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, data: bb},
	)
	for _, a := range applets {
		if a == "bin/busybox" {
			continue
		}
		rel, err := filepath.Rel(path.Dir("/"+a), "/bin/busybox")
		if err != nil {
			return nil, err
		}
		files = append(files, rootfsFile{name: a, mode: 0o777, typ: tar.TypeSymlink, link: rel})
	}
	osRelease := fmt.Sprintf("PRETTY_NAME=%q\nNAME=%q\nID=%s\nVERSION_ID=%q\n", e.Pretty, osName(e.ID), e.ID, e.Version)
	if e.Codename != "" {
		osRelease += "VERSION_CODENAME=" + e.Codename + "\n"
	}
	text := func(name, s string) rootfsFile {
		return rootfsFile{name: name, mode: 0o644, typ: tar.TypeReg, data: []byte(s)}
	}
	files = append(files,
		text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		text("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
		text("etc/hostname", "localhost\n"),
		text("etc/hosts", "127.0.0.1\tlocalhost\n"),
		// busybox init with an inittab that starts nothing idles until
		// it is told to stop, like a minimal distribution init.
		text("etc/inittab", "::sysinit:/etc/init.d/rcS\n::shutdown:/bin/true\n"),
		rootfsFile{name: "etc/init.d/rcS", mode: 0o755, typ: tar.TypeReg, data: []byte("#!/bin/sh\nexit 0\n")},
	)
	switch e.ID {
	case "debian", "ubuntu":
		// Like the real images: /etc/os-release links to /usr/lib.
		files = append(files,
			text("usr/lib/os-release", osRelease),
			rootfsFile{name: "etc/os-release", mode: 0o777, typ: tar.TypeSymlink, link: "../usr/lib/os-release"},
		)
		dv := debianVersion(e)
		files = append(files, text("etc/debian_version", dv+"\n"))
		if e.ID == "ubuntu" {
			files = append(files, text("etc/lsb-release", fmt.Sprintf(
				"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=%s\nDISTRIB_CODENAME=%s\nDISTRIB_DESCRIPTION=%q\n",
				e.Version, e.Codename, e.Pretty)))
		}
	case "alpine":
		files = append(files, text("etc/os-release", osRelease), text("etc/alpine-release", e.Version+"\n"))
	default:
		files = append(files, text("etc/os-release", osRelease))
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		name := "./" + f.name
		if f.name == "." {
			name = "./"
		} else if f.typ == tar.TypeDir {
			name += "/"
		}
		hdr := &tar.Header{
			Typeflag: f.typ, Name: name, Mode: f.mode, Linkname: f.link,
			Size: int64(len(f.data)), ModTime: templateEpoch,
			Uname: "root", Gname: "root", Format: tar.FormatGNU,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func osName(id string) string {
	switch id {
	case "debian":
		return "Debian GNU/Linux"
	case "ubuntu":
		return "Ubuntu"
	case "alpine":
		return "Alpine Linux"
	}
	return id
}

func debianVersion(e catalogueEntry) string {
	if e.ID == "ubuntu" {
		// Ubuntu ships the Debian testing codename there.
		if e.Version == "20.04" {
			return "bullseye/sid"
		}
		return "bookworm/sid"
	}
	if e.Version == "11" {
		return "11.7"
	}
	return "12.7"
}

// writeCatalogue writes every catalogue template into dir atomically.
// Templates already there are kept: building them (xz above all) is the
// slow part of `pvesim init`, and they are reproducible anyway.
func writeCatalogue(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, e := range catalogue {
		if st, err := os.Stat(filepath.Join(dir, e.Name)); err == nil && st.Size() > 0 {
			continue
		}
		data, err := buildTemplate(e)
		if err != nil {
			return err
		}
		if err := writeFileIfChanged(filepath.Join(dir, e.Name), data); err != nil {
			return err
		}
	}
	return nil
}

func writeFileIfChanged(name string, data []byte) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return renameio.WriteFile(name, data, 0o644)
}

// availableTemplates lists what `pveam available` offers: the built-in
// entries whose archive exists in the catalogue directory, plus any other
// template-looking file placed there (section "system"), sorted by
// section, then name.
func (n *Node) availableTemplates() ([]catalogueEntry, error) {
	entries, err := os.ReadDir(n.CatalogueDir())
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	known := map[string]catalogueEntry{}
	for _, e := range catalogue {
		known[e.Name] = e
	}
	var out []catalogueEntry
	for _, de := range entries {
		if !de.Type().IsRegular() || !reTemplateName.MatchString(de.Name()) {
			continue
		}
		e, ok := known[de.Name()]
		if !ok {
			e = catalogueEntry{Section: "system", Name: de.Name()}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Section != out[j].Section {
			return out[i].Section < out[j].Section
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// copyFileAtomic copies src to dst through a temporary file in dst's
// directory, so a reader never sees a partial template.
func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	t, err := renameio.TempFile(filepath.Dir(dst), dst)
	if err != nil {
		return err
	}
	defer t.Cleanup()
	if _, err := io.Copy(t, in); err != nil {
		return err
	}
	if err := t.Chmod(0o644); err != nil {
		return err
	}
	return t.CloseAtomicallyReplace()
}
