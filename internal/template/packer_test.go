package template

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func mkRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "bin/busybox"), []byte(elfAmd64))
	if err := os.Chmod(filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "bin/prog2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "etc/os-release"), []byte("ID=debian\n"))
	return root
}

// walkPacked calls fn with each tar entry of the packed template p.
func walkPacked(t *testing.T, p string, fn func(h *tar.Header, r io.Reader)) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(h, tr)
	}
}

// packedEntries lists the tar entries of a packed template: name -> type.
func packedEntries(t *testing.T, p string) map[string]byte {
	t.Helper()
	out := map[string]byte{}
	walkPacked(t, p, func(h *tar.Header, r io.Reader) {
		out[h.Name] = h.Typeflag
		if h.Name == "./.nexcage/init" {
			data, _ := io.ReadAll(r)
			if string(data) != "#!/bin/sh\nexec x\n" || h.Mode != 0o755 {
				t.Errorf("init script = %q mode %o", data, h.Mode)
			}
		}
	})
	return out
}

func TestPackAndAcquireOnceAndRelease(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	root := mkRootfs(t)
	opts := PackOptions{
		Rootfs:  root,
		Source:  "/srv/bundle",
		Extra:   []ExtraFile{{Path: "/.nexcage/init", Mode: 0o755, Data: []byte("#!/bin/sh\nexec x\n")}},
		Targets: []Target{{Path: "/data"}, {Path: "/srv/www"}, {Path: "/etc/app.conf", File: true}},
	}
	p1, err := e.r.PackAndAcquire(ctx, opts, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !p1.Created || !strings.HasPrefix(p1.Name, PackedPrefix) || !strings.HasSuffix(p1.Name, ".tar.zst") ||
		p1.VolID != "local:vztmpl/"+p1.Name || p1.Path != filepath.Join(e.cache, p1.Name) {
		t.Fatalf("packed = %+v", p1)
	}
	es := packedEntries(t, p1.Path)
	want := map[string]byte{"./": tar.TypeDir, "./bin/busybox": tar.TypeReg, "./bin/prog2": tar.TypeLink, "./bin/sh": tar.TypeSymlink,
		"./srv/": tar.TypeDir, "./srv/www/": tar.TypeDir, "./etc/app.conf": tar.TypeReg, "./.nexcage/": tar.TypeDir, "./.nexcage/init": tar.TypeReg, "./data/": tar.TypeDir}
	for n, ty := range want {
		if es[n] != ty {
			t.Errorf("entry %s type %q, want %q (all %v)", n, es[n], ty, es)
		}
	}
	// The packed archive is a valid template, and its metadata says what
	// reading it would: no archive is read again for it.
	info, err := InspectArchive(p1.Path)
	if err != nil {
		t.Fatal(err)
	}
	m := readMeta(p1.Path)
	if m == nil || m.Info != *info || !m.Placed || len(m.Sources) != 1 || m.Sources[0].Source != "/srv/bundle" || m.Sources[0].Form != FormBundle {
		t.Fatalf("meta %+v, inspected %+v", m, info)
	}
	if info.Arch != "amd64" || info.OSType != "debian" {
		t.Errorf("info %+v", info)
	}
	// Listed, with its user.
	list, err := e.r.List(ctx)
	if err != nil || len(list) != 1 || list[0].Source != "/srv/bundle" || strings.Join(list[0].Users, ",") != "a" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// Same content again: not packed twice, same name, new source recorded.
	opts.Source = "/srv/other"
	p2, err := e.r.PackAndAcquire(ctx, opts, "b")
	if err != nil {
		t.Fatal(err)
	}
	if p2.Created || p2.Name != p1.Name {
		t.Fatalf("second pack = %+v, want cached %s", p2, p1.Name)
	}
	if m := readMeta(p1.Path); m == nil || len(m.Sources) != 2 {
		t.Errorf("second source not recorded: %+v", m)
	}
	noTemps(t, e.cache)
	c, _ := e.r.Cache()
	users, _ := c.Users(p1.Name)
	sort.Strings(users)
	if strings.Join(users, ",") != "a,b" {
		t.Errorf("users = %v", users)
	}
	if removed, err := e.r.Release(ctx, p1.VolID, "a"); err != nil || removed {
		t.Fatalf("Release a = %v, %v; want kept (b uses it)", removed, err)
	}
	if removed, err := e.r.Release(ctx, p1.VolID, "b"); err != nil || !removed {
		t.Fatalf("Release b = %v, %v; want removed", removed, err)
	}
	for _, f := range []string{p1.Path, p1.Path + MetaSuffix} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", f, err)
		}
	}
	// A changed rootfs gives another template.
	writeFile(t, filepath.Join(root, "etc/new"), []byte("1"))
	p3, err := e.r.PackAndAcquire(ctx, opts, "c")
	if err != nil || p3.Name == p1.Name {
		t.Fatalf("changed rootfs packed as %+v, %v", p3, err)
	}
}

func TestPackAndAcquireConcurrentOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	root := mkRootfs(t)
	var wg sync.WaitGroup
	created := make(chan bool, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := e.r.PackAndAcquire(ctx, PackOptions{Rootfs: root}, string(rune('a'+i)))
			if err != nil {
				t.Error(err)
				return
			}
			created <- p.Created
		}(i)
	}
	wg.Wait()
	close(created)
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Errorf("packed %d times, want once", n)
	}
	noLockFiles(t, e.r.o.WorkDir)
}

// noLockFiles fails when a lock file is left in workDir/locks: they go
// with their lock, so none piles up per bundle or image.
func noLockFiles(t *testing.T, workDir string) {
	t.Helper()
	if left, _ := filepath.Glob(filepath.Join(workDir, "locks", "*")); len(left) > 0 {
		t.Errorf("lock files left: %q", left)
	}
}

func TestPackAndAcquireErrors(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.r.PackAndAcquire(context.Background(), PackOptions{Rootfs: filepath.Join(t.TempDir(), "none")}, "a"); err == nil {
		t.Error("missing rootfs packed")
	}
	if _, err := e.r.PackAndAcquire(context.Background(), PackOptions{Rootfs: mkRootfs(t)}, "../x"); err == nil {
		t.Error("bad reference accepted")
	}
	noTemps(t, e.cache)
}

// Progress of packing: without a terminal, one line when it starts and one
// when it ends, on the progress log; nothing on the progress writer.
func TestPackProgressLines(t *testing.T) {
	var logBuf, progressOut bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	e := newEnv(t, func(o *Options) { o.Progress, o.ProgressLog = &progressOut, log })
	// One rootfs packed twice: two rootfs built apart could differ in
	// mtime when a second boundary falls between them (then the second
	// pack is rightly not a cache hit).
	rootfs := mkRootfs(t)
	if _, err := e.r.PackAndAcquire(context.Background(), PackOptions{Rootfs: rootfs, What: "packing rootfs of c1"}, "c1"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `msg=started what="packing rootfs of c1" bytes=`) ||
		!strings.Contains(lines[1], `msg=finished what="packing rootfs of c1" bytes=`) {
		t.Errorf("progress log:\n%s", logBuf.String())
	}
	if progressOut.Len() != 0 {
		t.Errorf("a non-terminal got a progress bar: %q", progressOut.String())
	}
	// Cached: no packing, no lines.
	logBuf.Reset()
	if _, err := e.r.PackAndAcquire(context.Background(), PackOptions{Rootfs: rootfs}, "c2"); err != nil {
		t.Fatal(err)
	}
	if logBuf.Len() != 0 {
		t.Errorf("cached template reported packing: %s", logBuf.String())
	}
}

func TestDetectOSType(t *testing.T) {
	for _, tc := range []struct{ content, link, want string }{
		{"ID=debian\n", "", "debian"},
		{"ID=\"ubuntu\"\nID_LIKE=debian\n", "", "ubuntu"},
		{"ID=rocky\nID_LIKE=\"rhel centos fedora\"\n", "", "centos"},
		{"ID=mylinux\nID_LIKE=arch\n", "", "archlinux"},
		{"ID=plan9\n", "", "unmanaged"},
		{"ID=alpine\n", "/usr/lib/os-release", "alpine"},
		{"ID=alpine\n", "../usr/lib/os-release", "alpine"},
		{"ID=alpine\n", "/../../../../usr/lib/os-release", "alpine"},
		{"", "", "unmanaged"},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
		if tc.content != "" {
			target := filepath.Join(root, "etc/os-release")
			if tc.link != "" {
				target = filepath.Join(root, "usr/lib/os-release")
				// A link must resolve inside the rootfs.
				os.Symlink(tc.link, filepath.Join(root, "etc/os-release"))
			}
			os.WriteFile(target, []byte(tc.content), 0o644)
		}
		if got := DetectOSType(root); got != tc.want {
			t.Errorf("DetectOSType(%q via %q) = %q, want %q", tc.content, tc.link, got, tc.want)
		}
	}
	// Marker files count as in pct; a link out of the root does not reach
	// the host's files.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/alpine-release"), []byte("3.22\n"), 0o644)
	if got := DetectOSType(root); got != "alpine" {
		t.Errorf("alpine-release marker: %q", got)
	}
	root = t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Symlink("/etc/debian_version", filepath.Join(root, "etc/debian_version"))
	if got := DetectOSType(root); got != "unmanaged" {
		t.Errorf("dangling in-root link resolved on the host: %q", got)
	}
}

// A pveam download reports its start and end (with the template's size)
// on the progress log.
func TestPveamDownloadProgressLines(t *testing.T) {
	var logBuf, progressOut bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	e := newEnv(t, func(o *Options) { o.Progress, o.ProgressLog = &progressOut, log })
	e.catalog[debian12] = tmplData(t, debian12, "debian")
	if _, err := e.r.Resolve(context.Background(), debian12); err != nil {
		t.Fatal(err)
	}
	size := len(e.catalog[debian12])
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	want := `what="downloading ` + debian12 + ` with pveam"`
	if len(lines) != 2 || !strings.Contains(lines[0], "msg=started "+want) ||
		!strings.Contains(lines[1], "msg=finished "+want+" bytes="+strconv.Itoa(size)) {
		t.Errorf("progress log:\n%s", logBuf.String())
	}
	if progressOut.Len() != 0 {
		t.Errorf("a non-terminal got a progress bar: %q", progressOut.String())
	}
}

// Pulling an image reports the pull (with the archive's size) and the
// packing of the unpacked image, each with a start and an end line.
func TestPullProgressLines(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	e := newEnv(t, func(o *Options) { o.SkopeoPath, o.ProgressLog = "skopeo", log })
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	archive := tarDir(t, layout)
	e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
		"skopeo": func(argv []string) ([]byte, []byte, error) {
			writeFile(t, strings.TrimPrefix(argv[len(argv)-1], "oci-archive:"), archive)
			return nil, nil, nil
		},
	}
	if _, err := e.r.Resolve(context.Background(), "localhost:5000/app:1"); err != nil {
		t.Fatal(err)
	}
	out := logBuf.String()
	for _, want := range []string{
		`msg=started what="pulling localhost:5000/app:1 with skopeo"`,
		`msg=finished what="pulling localhost:5000/app:1 with skopeo" bytes=` + strconv.Itoa(len(archive)),
		`msg=started what="packing image `,
		`msg=finished what="packing image `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("progress log lacks %q:\n%s", want, out)
		}
	}
}

// TestPackKilledMidwayLeavesNothing: a pack killed midway leaves its
// partial file (named after the template, written under the cache lock).
// The record of the killed create names the template (BeforeAcquire), and
// its Release (delete --force) removes that partial; a later pack of the
// same content overwrites a stale partial and leaves none.
func TestPackKilledMidwayLeavesNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	opts := PackOptions{Rootfs: mkRootfs(t)}
	var volid string
	stop := opts
	stop.BeforeAcquire = func(v string) error { volid = v; return context.Canceled }
	if _, err := e.r.PackAndAcquire(ctx, stop, "killed"); err == nil {
		t.Fatal("BeforeAcquire's error did not stop the pack")
	}
	name := strings.TrimPrefix(volid, "local:vztmpl/")
	partial := packPartial(e.cache, name)
	// What the killed process left (the partial exists only under the
	// cache lock while packing).
	writeFile(t, partial, []byte("half a tar"))
	if _, err := e.r.Release(ctx, volid, "killed"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(partial); !os.IsNotExist(err) {
		t.Errorf("partial left after Release of the last user: %v", err)
	}

	writeFile(t, partial, []byte("half a tar"))
	p, err := e.r.PackAndAcquire(ctx, opts, "next")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != name || len(packedEntries(t, p.Path)) == 0 {
		t.Errorf("packed %+v over a stale partial", p)
	}
	if _, err := os.Lstat(partial); !os.IsNotExist(err) {
		t.Errorf("partial left after a successful pack: %v", err)
	}
	if _, err := e.r.Release(ctx, volid, "next"); err != nil {
		t.Fatal(err)
	}
	noTemps(t, e.cache)
}
