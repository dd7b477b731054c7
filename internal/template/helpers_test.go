package template

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/ulikunitz/xz"
)

// entry is one member of a test tar.
type entry struct {
	name string
	typ  byte // tar.TypeReg when 0
	body string
	link string
	mode int64
}

// elfHeader returns the first bytes of an ELF executable for machine.
func elfHeader(class byte, machine uint16) string {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = class, 1, 1
	binary.LittleEndian.PutUint16(h[16:], 2)
	binary.LittleEndian.PutUint16(h[18:], machine)
	return string(h)
}

var elfAmd64 = elfHeader(2, 62)
var elfArm64 = elfHeader(2, 183)

// rootfsEntries is a minimal root filesystem: busybox-style /bin/sh
// symlink to an ELF for machine, plus the given extra entries.
func rootfsEntries(elf string, extra ...entry) []entry {
	es := []entry{
		{name: "./", typ: tar.TypeDir},
		{name: "./bin/", typ: tar.TypeDir},
		{name: "./bin/busybox", body: elf, mode: 0o755},
		{name: "./bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		{name: "./etc/", typ: tar.TypeDir},
	}
	return append(es, extra...)
}

func tarBytes(t testing.TB, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compress compresses data with comp (CompGzip, ...).
func compress(t testing.TB, comp string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch comp {
	case CompNone:
		return data
	case CompGzip:
		w := gzip.NewWriter(&buf)
		w.Write(data)
		w.Close()
	case CompXz:
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case CompZstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case CompBzip2:
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bzip2 (apt package bzip2): %v", err)
		}
		return out
	default:
		t.Fatalf("unknown compression %s", comp)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, p string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is a simulated Proxmox storage setup for resolver tests.
type env struct {
	t       *testing.T
	root    string
	etcPve  string
	cache   string // template cache of "local"
	catalog map[string][]byte
	run     *fakeRunner
	r       *Resolver
}

const storageCfg = `dir: local
	path %s
	content iso,vztmpl,backup

lvmthin: local-lvm
	thinpool data
	vgname pve
	content rootdir,images

dir: isos
	path %s
	content iso

nfs: remote
	server 10.0.0.1
	export /tmpl
	content vztmpl
`

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, root: root, etcPve: filepath.Join(root, "etc/pve"),
		cache: filepath.Join(root, "vz/template/cache"), catalog: map[string][]byte{}}
	writeFile(t, filepath.Join(e.etcPve, "storage.cfg"),
		[]byte(fmt.Sprintf(storageCfg, filepath.Join(root, "vz"), filepath.Join(root, "isos"))))
	if err := os.MkdirAll(e.cache, 0o755); err != nil {
		t.Fatal(err)
	}
	e.run = &fakeRunner{env: e}
	o := Options{EtcPve: e.etcPve, AutoDownload: true, WorkDir: filepath.Join(root, "work"),
		Exec: e.run, HostArch: "amd64", PveamPath: "pveam", LockTimeout: 20 * time.Second}
	if mod != nil {
		mod(&o)
	}
	e.r = NewResolver(o)
	return e
}

// addLocal puts a template into the local cache.
func (e *env) addLocal(name string, data []byte) string {
	return writeFile(e.t, filepath.Join(e.cache, name), data)
}

// fakeRunner answers pveam from the env's catalogue, and other commands
// from handlers.
type fakeRunner struct {
	env      *env
	mu       sync.Mutex
	calls    []string
	handlers map[string]func(argv []string) ([]byte, []byte, error)
}

func (f *fakeRunner) Run(ctx context.Context, argv []string) ([]byte, []byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, strings.Join(argv, " "))
	h := f.handlers[argv[0]]
	f.mu.Unlock()
	if h != nil {
		return h(argv)
	}
	if argv[0] != "pveam" {
		return nil, []byte("no such command"), errors.New("exit status 127")
	}
	switch {
	case len(argv) == 2 && argv[1] == "available":
		var b strings.Builder
		for name := range f.env.catalog {
			fmt.Fprintf(&b, "%-15s %s\n", "system", name)
		}
		return []byte(b.String()), nil, nil
	case len(argv) == 4 && argv[1] == "download":
		data, ok := f.env.catalog[argv[3]]
		if !ok || argv[2] != "local" {
			return nil, []byte("400 Parameter verification failed.\ntemplate: no such template\n"), errors.New("exit status 255")
		}
		writeFile(f.env.t, filepath.Join(f.env.cache, argv[3]), data)
		return []byte("download finished\n"), nil, nil
	case len(argv) == 3 && argv[1] == "list" && argv[2] == "remote":
		return []byte("NAME                                                         SIZE\nremote:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst      120.00MB\n"), nil, nil
	}
	return nil, []byte("unknown pveam call"), errors.New("exit status 255")
}

func (f *fakeRunner) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// wantErr checks err's kind and that its text contains every part.
func wantErr(t *testing.T, err error, kind errs.Kind, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got nil", kind)
	}
	if k := errs.KindOf(err); k != kind {
		t.Errorf("kind = %s, want %s (err: %v)", k, kind, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// noTemps fails when a temporary or partial file is left in dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp") || strings.Contains(e.Name(), "partial") {
			t.Errorf("left behind in the cache: %s", e.Name())
		}
	}
}

// placedFiles lists the templates nexcage placed in dir.
func placedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), PackedPrefix) && TemplateExt(e.Name()) != "" {
			out = append(out, e.Name())
		}
	}
	return out
}

func debianOSRelease() entry {
	return entry{name: "./etc/os-release", body: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n"}
}
