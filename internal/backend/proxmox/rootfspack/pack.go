// Package rootfspack packs OCI bundle root filesystems into
// content-addressed Proxmox templates (tracking which containers use
// them), checks `storage:vztmpl/<file>` volume ids and detects a rootfs's
// ostype. It is the Proxmox backend's minimal template support until the
// full resolver of internal/template (issue 5) takes over.
package rootfspack

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/klauspost/compress/zstd"

	"github.com/nexcage/nexcage/internal/errs"
)

// PackedPrefix starts the file name of every template nexcage packs, so
// they are recognisable (and prunable) in the template cache.
const PackedPrefix = "nexcage-"

// PackedSuffix is the archive type of packed templates.
const PackedSuffix = ".tar.zst"

// metaDir holds nexcage's lock and reference files inside a template cache.
const metaDir = ".nexcage"

// Cache is the template cache directory of one dir-type Proxmox storage
// (`<path>/template/cache`).
type Cache struct {
	Storage string // storage id, e.g. "local"
	Dir     string // absolute cache directory
}

// ExtraFile is a file added to a packed rootfs (e.g. an init script).
type ExtraFile struct {
	Path string // absolute path inside the container
	Mode fs.FileMode
	Data []byte
}

// Target is a mount destination that must exist in the packed rootfs.
type Target struct {
	Path string // absolute path inside the container
	File bool   // an empty file instead of a directory (file bind mounts)
}

// PackOptions says what to pack.
type PackOptions struct {
	Rootfs  string
	Extra   []ExtraFile
	Targets []Target
}

// Packed is a packed template.
type Packed struct {
	Name   string // file name in the cache
	Path   string // absolute file path
	VolID  string // storage:vztmpl/<name>
	Digest string // sha256 of the uncompressed tar stream, hex
	// Created is true when this call packed it (false: it was cached).
	Created bool
}

// VolID returns the volume id of file name in this cache.
func (c *Cache) VolID(name string) string { return c.Storage + ":vztmpl/" + name }

func (c *Cache) lock(ctx context.Context) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Join(c.Dir, metaDir), 0o755); err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot prepare template cache %s", c.Dir)
	}
	l := flock.New(filepath.Join(c.Dir, metaDir, "lock"))
	ok, err := l.TryLockContext(ctx, 50*time.Millisecond)
	if err != nil || !ok {
		return nil, errs.Wrap(errs.KindLocked, err, "cannot lock template cache %s", c.Dir)
	}
	return l, nil
}

// PackAndAcquire packs opts.Rootfs into the cache unless a template with
// the same content is already there, and records ref as one of its users,
// all under the cache lock (so a concurrent Release cannot remove it in
// between). The archive appears under its final name only when complete.
func (c *Cache) PackAndAcquire(ctx context.Context, opts PackOptions, ref string) (*Packed, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	// First pass outside the lock: the digest of the tar stream.
	h := sha256.New()
	if err := writeTar(ctx, h, opts); err != nil {
		return nil, err
	}
	digest := hex.EncodeToString(h.Sum(nil))
	name := PackedPrefix + digest[:32] + PackedSuffix
	p := &Packed{Name: name, Path: filepath.Join(c.Dir, name), VolID: c.VolID(name), Digest: digest}

	l, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Unlock() }()
	if _, err := os.Stat(p.Path); errors.Is(err, fs.ErrNotExist) {
		if err := c.pack(ctx, opts, p); err != nil {
			return nil, err
		}
		p.Created = true
	} else if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot check template %s", p.Path)
	}
	if err := c.addRef(name, ref); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Cache) pack(ctx context.Context, opts PackOptions, p *Packed) error {
	tmp, err := os.CreateTemp(c.Dir, "."+PackedPrefix+"partial-*")
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot write into template cache %s", c.Dir)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw, err := zstd.NewWriter(tmp)
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "zstd")
	}
	h := sha256.New()
	if err := writeTar(ctx, io.MultiWriter(zw, h), opts); err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot compress template %s", p.Path)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.Digest {
		return errs.New(errs.KindTemplate, "rootfs %s changed while it was packed", opts.Rootfs).
			WithHint("do not modify the bundle during create; try again")
	}
	if err := tmp.Chmod(0o644); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "chmod %s", tmp.Name())
	}
	if err := tmp.Sync(); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "sync %s", tmp.Name())
	}
	if err := tmp.Close(); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "close %s", tmp.Name())
	}
	if err := os.Rename(tmp.Name(), p.Path); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot place template %s", p.Path)
	}
	tmp = nil
	return nil
}

func checkRef(ref string) error {
	if ref == "" || strings.ContainsAny(ref, "/\x00") || ref == "." || ref == ".." {
		return errs.New(errs.KindInternal, "invalid template reference %q", ref)
	}
	return nil
}

func (c *Cache) refDir(name string) string {
	return filepath.Join(c.Dir, metaDir, name+".refs")
}

func (c *Cache) addRef(name, ref string) error {
	d := c.refDir(name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot record template use")
	}
	if err := os.WriteFile(filepath.Join(d, ref), nil, 0o644); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot record template use")
	}
	return nil
}

// Release drops ref from the users of the packed template name and
// removes the template when nobody uses it any more. It reports whether
// the template was removed. Templates nexcage did not pack are never
// removed.
func (c *Cache) Release(ctx context.Context, name, ref string) (bool, error) {
	if err := checkRef(ref); err != nil {
		return false, err
	}
	if !strings.HasPrefix(name, PackedPrefix) || strings.ContainsRune(name, '/') {
		return false, nil
	}
	l, err := c.lock(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = l.Unlock() }()
	d := c.refDir(name)
	if err := os.Remove(filepath.Join(d, ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, errs.Wrap(errs.KindTemplate, err, "cannot release template %s", name)
	}
	left, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, errs.Wrap(errs.KindTemplate, err, "cannot read users of template %s", name)
	}
	if len(left) > 0 {
		return false, nil
	}
	if err := os.Remove(filepath.Join(c.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, errs.Wrap(errs.KindTemplate, err, "cannot remove unused template %s", name)
	}
	_ = os.Remove(d)
	return true, nil
}

// Users returns the references holding the packed template name.
func (c *Cache) Users(name string) ([]string, error) {
	ents, err := os.ReadDir(c.refDir(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = e.Name()
	}
	return out, nil
}

// writeTar writes the rootfs as a deterministic tar stream: entries in
// lexical order, numeric owners only, no access/change times, hard links
// kept, sockets skipped; then the mount targets missing from the rootfs
// and the extra files.
func writeTar(ctx context.Context, w io.Writer, opts PackOptions) error {
	root := filepath.Clean(opts.Rootfs)
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return errs.New(errs.KindInvalidBundle, "rootfs %s is not a directory", root)
	}
	extra := map[string]bool{}
	for _, e := range opts.Extra {
		extra[path.Clean(e.Path)] = true
	}
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs")
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		inner := "/" + filepath.ToSlash(rel)
		if rel == "." {
			inner = "/"
		}
		if extra[path.Clean(inner)] {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs")
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		return writeEntry(tw, p, inner, fi, links)
	})
	if err != nil {
		return err
	}
	if err := writeTargets(tw, root, opts.Targets); err != nil {
		return err
	}
	for _, e := range opts.Extra {
		inner := path.Clean(e.Path)
		if err := ensureParents(tw, root, inner); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "." + inner, Mode: int64(e.Mode.Perm()), Size: int64(len(e.Data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return errs.Wrap(errs.KindTemplate, err, "tar")
		}
		if _, err := tw.Write(e.Data); err != nil {
			return errs.Wrap(errs.KindTemplate, err, "tar")
		}
	}
	if err := tw.Close(); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "tar")
	}
	return nil
}

func writeEntry(tw *tar.Writer, p, inner string, fi fs.FileInfo, links map[[2]uint64]string) error {
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		l, err := os.Readlink(p)
		if err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs")
		}
		link = l
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return errs.Wrap(errs.KindInvalidBundle, err, "cannot archive %s", p)
	}
	hdr.Name = "." + inner
	if fi.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, seen := links[key]; seen {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			links[key] = hdr.Name
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "tar %s", p)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		f, err := os.Open(p)
		if err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs")
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read %s (changed while packing?)", p)
		}
	}
	return nil
}

// writeTargets adds the mount targets the rootfs lacks. A target under a
// symlink is left to LXC.
func writeTargets(tw *tar.Writer, root string, targets []Target) error {
	ts := append([]Target(nil), targets...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Path < ts[j].Path })
	written := map[string]bool{}
	for _, t := range ts {
		inner := path.Clean("/" + t.Path)
		if inner == "/" || written[inner] {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, inner)); err == nil {
			continue
		}
		if underSymlink(root, inner) {
			continue
		}
		if err := ensureParents(tw, root, inner); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: "." + inner + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}
		if t.File {
			hdr = &tar.Header{Typeflag: tar.TypeReg, Name: "." + inner, Mode: 0o644, ModTime: time.Unix(0, 0)}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return errs.Wrap(errs.KindTemplate, err, "tar")
		}
		written[inner] = true
	}
	return nil
}

// ensureParents writes directory entries for parents of inner that the
// rootfs lacks (a tar may name them twice; extraction is idempotent).
func ensureParents(tw *tar.Writer, root, inner string) error {
	var missing []string
	for d := path.Dir(inner); d != "/"; d = path.Dir(d) {
		if _, err := os.Lstat(filepath.Join(root, d)); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: "." + missing[i] + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return errs.Wrap(errs.KindTemplate, err, "tar")
		}
	}
	return nil
}

func underSymlink(root, inner string) bool {
	for d := path.Dir(inner); d != "/"; d = path.Dir(d) {
		if fi, err := os.Lstat(filepath.Join(root, d)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return true
		}
	}
	return false
}

// Hash is exposed for tests: the digest PackAndAcquire would give opts.
func Hash(ctx context.Context, opts PackOptions) (string, error) {
	var h hash.Hash = sha256.New()
	if err := writeTar(ctx, h, opts); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
