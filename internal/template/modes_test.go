package template

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPrivateModes packs a bundle rootfs, builds a template from an OCI
// layout and from a bundle, all with umask 0, and checks that every file
// nexcage wrote into the template cache (templates, metadata, reference
// files) is 0600 and every directory of its own there or in its scratch
// space 0700, while the Proxmox storage's cache directory keeps its mode.
func TestPrivateModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	ctx := context.Background()
	e := newEnv(t, nil)
	// A storage directory with a mode of Proxmox's (here group-writable,
	// to see that nexcage leaves it alone).
	if err := os.Chmod(e.cache, 0o775); err != nil {
		t.Fatal(err)
	}
	// An older nexcage's template, 0644: made private when reused.
	rootfs := mkRootfs(t)
	p, err := e.r.PackAndAcquire(ctx, PackOptions{Rootfs: rootfs}, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.PackAndAcquire(ctx, PackOptions{Rootfs: rootfs}, "b"); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	if _, err := e.r.Resolve(ctx, layout); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Dir(rootfs)
	writeFile(t, filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"}}`))
	if _, err := e.r.Resolve(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	// The image's template, left 0644 with its metadata by an older
	// nexcage, is made private when it is resolved from the cache.
	placed, _ := filepath.Glob(filepath.Join(e.cache, PackedPrefix+"*"))
	for _, p := range placed {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.r.Resolve(ctx, layout); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Resolve(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.PackAndAcquire(ctx, PackOptions{Rootfs: rootfs}, "c"); err != nil {
		t.Fatal(err)
	}

	if fi, err := os.Stat(e.cache); err != nil || fi.Mode().Perm() != 0o775 {
		t.Errorf("the storage's cache directory: %v %v, want its mode 775 kept", fi.Mode(), err)
	}
	var templates, files, dirs int
	check := func(top string) {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == e.cache {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case d.IsDir():
				dirs++
				if fi.Mode().Perm() != DirMode {
					t.Errorf("directory %s has mode %o, want 700", p, fi.Mode().Perm())
				}
			default:
				files++
				if strings.HasPrefix(d.Name(), PackedPrefix) && !strings.HasSuffix(d.Name(), MetaSuffix) {
					templates++
				}
				if fi.Mode().Perm() != FileMode {
					t.Errorf("file %s has mode %o, want 600", p, fi.Mode().Perm())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check(e.cache)
	check(e.r.o.WorkDir)
	// The packed template, the image's and the bundle's (the same
	// content as the packed one may be named differently: placed names
	// hash the compressed file).
	if templates < 2 || files < 4 || dirs < 3 {
		t.Errorf("checked %d templates, %d files, %d directories: fewer than written", templates, files, dirs)
	}
}
