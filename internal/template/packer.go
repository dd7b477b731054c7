package template

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/progress"
)

// This file is nexcage's one packer: it turns a directory tree (a bundle's
// rootfs, an unpacked OCI image) into a zstd-compressed tar template, with
// optional extra files and mount targets (what the Proxmox backend adds).

// PackedSuffix is the archive type of packed templates.
const PackedSuffix = ".tar.zst"

// ExtraFile is a file added to a packed rootfs (e.g. an init script). It
// replaces a file of the rootfs at the same path.
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

// PackOptions say what to pack.
type PackOptions struct {
	Rootfs  string
	Extra   []ExtraFile
	Targets []Target
	// Source is recorded as the template's source (`templates list`);
	// default Rootfs. Typically the bundle directory.
	Source string
	// What names the work in progress reports; default "packing <Rootfs>".
	What string
	// BeforeAcquire, when set, is called with the template's volume id
	// once its content names it and before anything is written to the
	// cache or ref is recorded, so that the caller can persist what it
	// is about to take ("persist before acquire"); an error stops there.
	BeforeAcquire func(volid string) error
}

// Packed is a template packed by PackAndAcquire.
type Packed struct {
	Name   string // file name in the cache
	Path   string // absolute file path
	VolID  string // storage:vztmpl/<name>
	Digest string // sha256 of the uncompressed tar stream, hex
	// Created is true when this call packed it (false: it was cached).
	Created bool
}

// PackAndAcquire packs opts.Rootfs (plus extra files and mount targets)
// into the template storage's cache unless a template with the same
// content is already there, and records ref as one of its users, all under
// the cache lock, so a concurrent Release cannot remove it in between. The
// name is content-addressed (sha256 of the tar stream), and the archive
// appears under it only when complete. A template packed from a bundle is
// removed by Release with its last user.
func (r *Resolver) PackAndAcquire(ctx context.Context, opts PackOptions, ref string) (*Packed, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	c, err := r.Cache()
	if err != nil {
		return nil, err
	}
	// First pass outside the lock: the digest (and size) of the tar stream.
	h := sha256.New()
	cw := &countingWriter{w: h}
	if err := writeTar(ctx, cw, opts, nil); err != nil {
		return nil, err
	}
	digest := hex.EncodeToString(h.Sum(nil))
	name := PackedPrefix + digest[:32] + PackedSuffix
	p := &Packed{Name: name, Path: filepath.Join(c.Dir, name), VolID: c.VolID(name), Digest: digest}
	if opts.BeforeAcquire != nil {
		if err := opts.BeforeAcquire(p.VolID); err != nil {
			return nil, err
		}
	}

	l, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Unlock() }()
	if _, err := os.Stat(p.Path); errors.Is(err, fs.ErrNotExist) {
		if err := r.packNew(ctx, c.Dir, opts, p, cw.n); err != nil {
			return nil, err
		}
		p.Created = true
	} else if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot check template %s", p.Path)
	} else {
		// Packed by an older nexcage, maybe 0644.
		if err := os.Chmod(p.Path, FileMode); err != nil {
			r.log.Warn("cannot make the template private", "template", p.Name, "err", err)
		}
		r.recordPackUse(ctx, p.Path, opts)
	}
	if err := c.addRef(name, ref); err != nil {
		return nil, err
	}
	return p, nil
}

// packNew packs opts into p.Path through a temporary file and writes the
// template's metadata; the caller holds the cache lock.
func (r *Resolver) packNew(ctx context.Context, dir string, opts PackOptions, p *Packed, tarSize int64) (err error) {
	// A fixed name per template, not a random one: a pack killed midway
	// leaves a file that the next pack of the same content overwrites and
	// that Release of the last user (delete --force after the crash)
	// removes, both under the cache lock this pack holds.
	tmp, err := os.OpenFile(packPartial(dir, p.Name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot write into the template cache %s", dir)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	what := opts.What
	if what == "" {
		what = "packing " + opts.Rootfs
	}
	bar := progress.Start(r.o.Progress, r.o.ProgressLog, what, tarSize)
	fileHash := sha256.New()
	out := &countingWriter{w: io.MultiWriter(tmp, fileHash)}
	tarHash := sha256.New()
	ix := newIndex()
	err = packArchive(ctx, out, opts, ix, io.MultiWriter(tarHash, bar))
	bar.Finish(err)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(tarHash.Sum(nil)); got != p.Digest {
		return errs.New(errs.KindTemplate, "rootfs %s changed while it was packed", opts.Rootfs).
			WithHint("do not modify the bundle during create; try again")
	}
	// Container data: readable by root only (pct runs as root; Proxmox's
	// own downloads are 0644, but those hold public distribution images).
	if err := tmp.Chmod(FileMode); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "chmod %s", tmp.Name())
	}
	if err := closeTemp(tmp); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot write template %s", p.Path)
	}
	if err := os.Rename(tmp.Name(), p.Path); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot place template %s", p.Path)
	}
	fi, err := os.Stat(p.Path)
	if err != nil {
		return errs.Wrap(errs.KindTemplate, err, "template %s vanished", p.Path)
	}
	now := r.o.Now().UTC()
	m := &Meta{
		File: p.Name, ModTime: fi.ModTime(), Placed: true, Created: now, LastUsed: now,
		Info: Info{Compression: CompZstd, Size: out.n, Digest: "sha256:" + hex.EncodeToString(fileHash.Sum(nil)),
			Arch: ix.shArch(), OSType: ix.osType(), Entries: ix.entries},
		Sources: []SourceRef{{Source: packSource(opts), Form: FormBundle}},
	}
	if err := r.writeMetaLocked(ctx, p.Path, m); err != nil {
		r.log.Warn("cannot write template metadata", "template", p.Name, "err", err)
	}
	return nil
}

// packPartial is the file a template named name is packed into before it
// is renamed into place (it matches tempPattern, so prune knows it too).
func packPartial(dir, name string) string {
	return filepath.Join(dir, strings.Replace(tempPattern, "*", name, 1))
}

func packSource(opts PackOptions) string {
	if opts.Source != "" {
		return opts.Source
	}
	return opts.Rootfs
}

// recordPackUse notes a new use (and possibly a new source) of a cached
// packed template.
func (r *Resolver) recordPackUse(ctx context.Context, tmpl string, opts PackOptions) {
	r.recordUse(ctx, tmpl, func(m *Meta) {
		m.upsertSource(SourceRef{Source: packSource(opts), Form: FormBundle})
	})
}

func (r *Resolver) writeMetaLocked(ctx context.Context, tmpl string, m *Meta) error {
	unlock, err := r.lock(ctx, "meta:"+tmpl)
	if err != nil {
		return err
	}
	defer unlock()
	return writeMeta(tmpl, m)
}

// packArchive writes opts as a zstd-compressed tar stream to w. The
// uncompressed stream also goes to tee (when not nil) and every entry to
// ix (when not nil).
func packArchive(ctx context.Context, w io.Writer, opts PackOptions, ix *archiveIndex, tee io.Writer) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "zstd")
	}
	var tw io.Writer = zw
	if tee != nil {
		tw = io.MultiWriter(zw, tee)
	}
	if err := writeTar(ctx, tw, opts, ix); err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot compress %s", opts.Rootfs)
	}
	return nil
}

// writeTar writes the rootfs as a deterministic tar stream: entries "./path"
// in lexical order, numeric owners only, no access/change times, mtimes in
// whole seconds, hard links kept, sockets skipped; then the mount targets
// missing from the rootfs and the extra files. Each entry is also added to
// ix when it is not nil.
func writeTar(ctx context.Context, w io.Writer, opts PackOptions, ix *archiveIndex) error {
	root := filepath.Clean(opts.Rootfs)
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return errs.New(errs.KindInvalidBundle, "rootfs %s is not a directory", root)
	}
	extra := map[string]bool{}
	for _, e := range opts.Extra {
		extra[path.Clean(e.Path)] = true
	}
	t := &tarWriter{tw: tar.NewWriter(w), ix: ix, links: map[[2]uint64]string{}, live: liveOutputs()}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs %s", root)
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
			return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs %s", root)
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		return t.entry(p, inner, fi)
	})
	if err != nil {
		return err
	}
	if err := t.targets(root, opts.Targets); err != nil {
		return err
	}
	for _, e := range opts.Extra {
		inner := path.Clean(e.Path)
		if err := t.parents(root, inner); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "." + inner, Mode: int64(e.Mode.Perm()), Size: int64(len(e.Data)), ModTime: time.Unix(0, 0)}
		if err := t.write(hdr, e.Data, nil); err != nil {
			return err
		}
	}
	if err := t.tw.Close(); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "tar")
	}
	return nil
}

// tarWriter writes entries and indexes them.
type tarWriter struct {
	tw    *tar.Writer
	ix    *archiveIndex
	links map[[2]uint64]string
	live  map[[2]uint64]bool // see liveOutputs
}

// outputFDs are the descriptors liveOutputs looks at (tests replace them).
var outputFDs = []int{1, 2}

// liveOutputs are the files (device, inode) this process writes its own
// output to. A caller may point nexcage's stdout or stderr at a file
// inside the rootfs being packed: the runtime-tools suite does, with the
// bundle's root.path "." and `create`'s output in <bundle>/stderr-<uuid>.
// nexcage logs to that file while it packs (the progress lines), so its
// content and mtime differ between the pass that names the template and
// the pass that writes it. It is packed empty, with no mtime: what
// nexcage is still writing is not the container's content, and the
// rootfs is not being modified by anyone else.
func liveOutputs() map[[2]uint64]bool {
	live := map[[2]uint64]bool{}
	for _, fd := range outputFDs {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
			live[[2]uint64{uint64(st.Dev), st.Ino}] = true
		}
	}
	return live
}

// indexHead is how much of a file the index may look at (ELF header,
// os-release).
const indexHead = 64 << 10

// write writes hdr, then head and the rest of body (hdr.Size bytes in all).
func (t *tarWriter) write(hdr *tar.Header, head []byte, rest io.Reader) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "tar %s", hdr.Name)
	}
	if t.ix != nil {
		if err := t.ix.add(hdr, bytes.NewReader(head)); err != nil {
			return errs.Wrap(errs.KindTemplate, err, "index %s", hdr.Name)
		}
	}
	if _, err := t.tw.Write(head); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "tar %s", hdr.Name)
	}
	if rest != nil {
		if n := hdr.Size - int64(len(head)); n > 0 {
			if _, err := io.CopyN(t.tw, rest, n); err != nil {
				return errs.Wrap(errs.KindInvalidBundle, err, "cannot read %s (changed while packing?)", hdr.Name)
			}
		}
	}
	return nil
}

func (t *tarWriter) entry(p, inner string, fi fs.FileInfo) error {
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
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && t.live[[2]uint64{uint64(st.Dev), st.Ino}] {
		hdr.Size, hdr.ModTime = 0, time.Unix(0, 0)
		return t.write(hdr, nil, nil)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, seen := t.links[key]; seen {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			t.links[key] = hdr.Name
		}
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return t.write(hdr, nil, nil)
	}
	f, err := os.Open(p)
	if err != nil {
		return errs.Wrap(errs.KindInvalidBundle, err, "cannot read rootfs")
	}
	defer f.Close()
	head := make([]byte, min(hdr.Size, indexHead))
	if _, err := io.ReadFull(f, head); err != nil {
		return errs.Wrap(errs.KindInvalidBundle, err, "cannot read %s (changed while packing?)", p)
	}
	return t.write(hdr, head, f)
}

// targets adds the mount targets the rootfs lacks. A target under a
// symlink is left to LXC.
func (t *tarWriter) targets(root string, targets []Target) error {
	ts := append([]Target(nil), targets...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Path < ts[j].Path })
	written := map[string]bool{}
	for _, tg := range ts {
		inner := path.Clean("/" + tg.Path)
		if inner == "/" || written[inner] {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, inner)); err == nil {
			continue
		}
		if underSymlink(root, inner) {
			continue
		}
		if err := t.parents(root, inner); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: "." + inner + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}
		if tg.File {
			hdr = &tar.Header{Typeflag: tar.TypeReg, Name: "." + inner, Mode: 0o644, ModTime: time.Unix(0, 0)}
		}
		if err := t.write(hdr, nil, nil); err != nil {
			return err
		}
		written[inner] = true
	}
	return nil
}

// parents writes directory entries for parents of inner that the rootfs
// lacks (a tar may name them twice; extraction is idempotent).
func (t *tarWriter) parents(root, inner string) error {
	var missing []string
	for d := path.Dir(inner); d != "/"; d = path.Dir(d) {
		if _, err := os.Lstat(filepath.Join(root, d)); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: "." + missing[i] + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}
		if err := t.write(hdr, nil, nil); err != nil {
			return err
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

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// DetectOSType returns the Proxmox ostype of the root filesystem directory
// rootfs, decided as for a template archive (os-release, lsb-release, then
// the marker files pct checks): "unmanaged" when unknown, so pct never
// fails with "unable to detect OS distribution". Symlinks are resolved
// inside rootfs, never on the host.
func DetectOSType(rootfs string) string { return osTypeOf(rootDir(rootfs)) }

// rootDir looks at files of a root filesystem directory.
type rootDir string

func (d rootDir) content(p string) ([]byte, bool) {
	f, ok := d.open(p)
	if !ok {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, indexHead))
	return b, err == nil
}

func (d rootDir) exists(p string) bool {
	f, ok := d.open(p)
	if ok {
		f.Close()
	}
	return ok
}

// open opens the regular file p inside the root, following at most 16
// symlinks, each resolved relative to the root (in every component).
func (d rootDir) open(p string) (*os.File, bool) {
	root := string(d)
	p = path.Clean("/" + p)
	for hops := 0; hops < 16; hops++ {
		resolved, again := "/", false
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i, part := range parts {
			next := path.Join(resolved, part)
			fi, err := os.Lstat(filepath.Join(root, next))
			if err != nil {
				return nil, false
			}
			if fi.Mode()&fs.ModeSymlink == 0 {
				resolved = next
				continue
			}
			target, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return nil, false
			}
			if !path.IsAbs(target) {
				target = path.Join(resolved, target)
			}
			p, again = path.Clean("/"+path.Join(append([]string{target}, parts[i+1:]...)...)), true
			break
		}
		if !again {
			f, err := os.Open(filepath.Join(root, resolved))
			if err != nil {
				return nil, false
			}
			if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
				f.Close()
				return nil, false
			}
			return f, true
		}
	}
	return nil, false
}
