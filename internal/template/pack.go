package template

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nexcage/nexcage/internal/errs"
)

// packDir writes the directory tree root as a zstd-compressed tar stream
// (entries "./path" in lexical order, numeric owners, hard links kept,
// sockets skipped) to w. It is how nexcage turns an unpacked image or a
// bundle rootfs into a template.
func packDir(ctx context.Context, root string, w io.Writer) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "zstd")
	}
	tw := tar.NewWriter(zw)
	links := map[[2]uint64]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if rel == "." {
			hdr.Name = "./"
		} else if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.ModTime = fi.ModTime().Truncate(time.Second)
		hdr.Format = tar.FormatPAX
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, seen := links[key]; seen {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	} else {
		zw.Close()
	}
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "packing %s", root)
	}
	return nil
}

// packToCache packs root into a temporary file in the cache dir and
// returns its path (place gives it its final name).
func packToCache(ctx context.Context, root, dir string) (string, error) {
	f, err := createTemp(dir)
	if err != nil {
		return "", err
	}
	err = packDir(ctx, root, f)
	if err == nil {
		err = closeTemp(f)
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// bundleRootfs reads the root.path of a bundle's config.json (relative to
// the bundle unless absolute; default "rootfs").
func bundleRootfs(bundle string) (string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", errs.Wrap(errs.KindInvalidBundle, err, "bundle %s has no readable config.json", bundle)
	}
	var spec struct {
		Root *struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", errs.Wrap(errs.KindInvalidBundle, err, "bundle %s: config.json is not valid JSON", bundle)
	}
	rootfs := "rootfs"
	if spec.Root != nil && spec.Root.Path != "" {
		rootfs = spec.Root.Path
	}
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return "", errs.New(errs.KindInvalidBundle, "bundle %s: root filesystem %s is not a directory", bundle, rootfs).
			WithHint("set root.path in config.json to the rootfs directory")
	}
	return rootfs, nil
}

// resolveBundle packs a bundle's rootfs into a content-addressed template.
// The same content packs to the same file, so a second create of an
// unchanged bundle reuses it. (The backend may pack bundles itself when it
// needs to add files; this serves --image <bundle dir>.)
func (r *Resolver) resolveBundle(ctx context.Context, bundle string) (*Resolved, error) {
	rootfs, err := bundleRootfs(bundle)
	if err != nil {
		return nil, err
	}
	dir, err := r.placeDir()
	if err != nil {
		return nil, err
	}
	unlock, err := r.lock(ctx, "bundle:"+rootfs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r.log.Info("packing bundle root filesystem into a template", "rootfs", rootfs)
	tmp, err := packToCache(ctx, rootfs, dir)
	if err != nil {
		return nil, err
	}
	tmpl, m, err := r.place(ctx, tmp, dir, Meta{Source: bundle, Form: FormBundle}, "")
	if err != nil {
		return nil, err
	}
	res, err := r.finish(ctx, r.o.Storage, tmpl, m)
	if err != nil {
		return nil, err
	}
	res.BundleDir = bundle
	return res, nil
}
