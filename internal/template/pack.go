package template

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/progress"
)

// packDir writes the directory tree root as a zstd-compressed tar stream
// to w (see writeTar), reporting progress as what. It is how nexcage turns
// an unpacked image or a bundle rootfs into a template.
func (r *Resolver) packDir(ctx context.Context, root, what string, w io.Writer) error {
	bar := progress.Start(r.o.Progress, r.o.ProgressLog, what, -1)
	err := packArchive(ctx, w, PackOptions{Rootfs: root}, nil, bar)
	bar.Finish(err)
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "packing %s", root)
	}
	return nil
}

// packToCache packs root into a temporary file in the cache dir and
// returns its path (place gives it its final name).
func (r *Resolver) packToCache(ctx context.Context, root, what, dir string) (string, error) {
	f, err := createTemp(dir)
	if err != nil {
		return "", err
	}
	err = r.packDir(ctx, root, what, f)
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
	tmp, err := r.packToCache(ctx, rootfs, "packing "+rootfs, dir)
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
