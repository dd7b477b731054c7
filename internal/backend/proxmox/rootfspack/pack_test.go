package rootfspack

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

func mkRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/prog"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "bin/prog"), filepath.Join(root, "bin/prog2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("prog", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	return root
}

// entries lists the tar entries of a packed template: name -> type.
func entries(t *testing.T, p string) map[string]byte {
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
	out := map[string]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h.Typeflag
		if h.Name == "./.nexcage/init" {
			data, _ := io.ReadAll(tr)
			if string(data) != "#!/bin/sh\nexec x\n" || h.Mode != 0o755 {
				t.Errorf("init script = %q mode %o", data, h.Mode)
			}
		}
	}
}

func TestPackOnceAndRelease(t *testing.T) {
	ctx := context.Background()
	root := mkRootfs(t)
	c := &Cache{Storage: "local", Dir: t.TempDir()}
	opts := PackOptions{
		Rootfs:  root,
		Extra:   []ExtraFile{{Path: "/.nexcage/init", Mode: 0o755, Data: []byte("#!/bin/sh\nexec x\n")}},
		Targets: []Target{{Path: "/data"}, {Path: "/srv/www"}, {Path: "/etc/app.conf", File: true}},
	}
	p1, err := c.PackAndAcquire(ctx, opts, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !p1.Created || !strings.HasPrefix(p1.Name, PackedPrefix) || !strings.HasSuffix(p1.Name, ".tar.zst") || p1.VolID != "local:vztmpl/"+p1.Name {
		t.Fatalf("packed = %+v", p1)
	}
	es := entries(t, p1.Path)
	want := map[string]byte{"./": tar.TypeDir, "./bin/prog": tar.TypeReg, "./bin/prog2": tar.TypeLink, "./bin/sh": tar.TypeSymlink,
		"./srv/": tar.TypeDir, "./srv/www/": tar.TypeDir, "./etc/app.conf": tar.TypeReg, "./.nexcage/": tar.TypeDir, "./.nexcage/init": tar.TypeReg, "./data/": tar.TypeDir}
	for n, ty := range want {
		if es[n] != ty {
			t.Errorf("entry %s type %q, want %q (all %v)", n, es[n], ty, es)
		}
	}
	// Same content again: not packed twice, same name.
	p2, err := c.PackAndAcquire(ctx, opts, "b")
	if err != nil {
		t.Fatal(err)
	}
	if p2.Created || p2.Name != p1.Name {
		t.Fatalf("second pack = %+v, want cached %s", p2, p1.Name)
	}
	// No partial files are left in the cache.
	files, _ := os.ReadDir(c.Dir)
	for _, f := range files {
		if strings.Contains(f.Name(), "partial") {
			t.Errorf("partial file left: %s", f.Name())
		}
	}
	users, _ := c.Users(p1.Name)
	sort.Strings(users)
	if strings.Join(users, ",") != "a,b" {
		t.Errorf("users = %v", users)
	}
	if removed, err := c.Release(ctx, p1.Name, "a"); err != nil || removed {
		t.Fatalf("Release a = %v, %v; want kept (b uses it)", removed, err)
	}
	if removed, err := c.Release(ctx, p1.Name, "b"); err != nil || !removed {
		t.Fatalf("Release b = %v, %v; want removed", removed, err)
	}
	if _, err := os.Stat(p1.Path); !os.IsNotExist(err) {
		t.Errorf("template still there: %v", err)
	}
	// Releasing a template nexcage did not pack never removes it.
	other := filepath.Join(c.Dir, "debian-12-standard_12.7-1_amd64.tar.zst")
	os.WriteFile(other, []byte("x"), 0o644)
	if removed, _ := c.Release(ctx, filepath.Base(other), "a"); removed {
		t.Error("foreign template removed")
	}
	// A changed rootfs gives another template.
	os.WriteFile(filepath.Join(root, "etc/new"), []byte("1"), 0o644)
	p3, err := c.PackAndAcquire(ctx, opts, "c")
	if err != nil || p3.Name == p1.Name {
		t.Fatalf("changed rootfs packed as %+v, %v", p3, err)
	}
}

func TestPackConcurrentOnce(t *testing.T) {
	ctx := context.Background()
	root := mkRootfs(t)
	c := &Cache{Storage: "local", Dir: t.TempDir()}
	var wg sync.WaitGroup
	created := make(chan bool, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := c.PackAndAcquire(ctx, PackOptions{Rootfs: root}, string(rune('a'+i)))
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
}

func TestDetectOSType(t *testing.T) {
	for _, tc := range []struct{ content, link, want string }{
		{"ID=debian\n", "", "debian"},
		{"ID=\"ubuntu\"\nID_LIKE=debian\n", "", "ubuntu"},
		{"ID=rocky\nID_LIKE=\"rhel centos fedora\"\n", "", "centos"},
		{"ID=mylinux\nID_LIKE=arch\n", "", "archlinux"},
		{"ID=plan9\n", "", "unmanaged"},
		{"ID=alpine\n", "/usr/lib/os-release", "alpine"},
		{"", "", "unmanaged"},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
		if tc.content != "" {
			target := filepath.Join(root, "etc/os-release")
			if tc.link != "" {
				target = filepath.Join(root, tc.link)
				// An absolute link must resolve inside the rootfs.
				os.Symlink(tc.link, filepath.Join(root, "etc/os-release"))
			}
			os.WriteFile(target, []byte(tc.content), 0o644)
		}
		if got := DetectOSType(root); got != tc.want {
			t.Errorf("DetectOSType(%q) = %q, want %q", tc.content, got, tc.want)
		}
	}
}

func TestCheckVolIDAndCacheFor(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "template/cache")
	os.MkdirAll(cache, 0o755)
	os.WriteFile(filepath.Join(cache, "ubuntu-22.04-standard_22.04-1_amd64.tar.zst"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(cache, "alpine-3.22-default_20250617_amd64.tar.xz"), []byte("x"), 0o644)
	storages, err := pve.ParseStorageConfig([]byte("dir: local\n\tpath " + dir + "\n\tcontent iso,vztmpl,backup\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckVolID(storages, "local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst"); err != nil {
		t.Errorf("existing template: %v", err)
	}
	err = CheckVolID(storages, "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
	if errs.KindOf(err) != errs.KindTemplate || !strings.Contains(err.Error(), "available: local:vztmpl/ubuntu-22.04") {
		t.Errorf("missing template: %v", err)
	}
	for _, bad := range []string{"nostorage:vztmpl/x.tar.zst", "local:iso/x.iso", "local-lvm:vztmpl/x.tar.zst", "garbage"} {
		if err := CheckVolID(storages, bad); err == nil {
			t.Errorf("CheckVolID(%q) accepted", bad)
		}
	}
	c, err := CacheFor(storages, "local")
	if err != nil || c.Dir != cache {
		t.Errorf("CacheFor(local) = %+v, %v", c, err)
	}
	if _, err := CacheFor(storages, "local-lvm"); errs.KindOf(err) != errs.KindInvalidConfig {
		t.Errorf("CacheFor(local-lvm) = %v", err)
	}
}
