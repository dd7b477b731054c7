package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lockfile"
	"github.com/nexcage/nexcage/internal/pve"
)

// tempPattern names files being written into a template cache: they end
// in .partial, so neither Proxmox nor nexcage ever takes one for a template.
const tempPattern = ".nexcage-tmp-*.partial"

// lock takes the cross-process lock for key (a template being prepared),
// waiting at most LockTimeout. Concurrent creates from the same new image
// thus download or pack it once; the loser finds it in the cache.
func (r *Resolver) lock(ctx context.Context, key string) (unlock func(), err error) {
	if err := r.workDir(); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.o.WorkDir, "locks")
	if err := privateDir(dir); err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot create the lock directory %s", dir).
			WithHint("check storage.image_path in the nexcage configuration")
	}
	sum := sha256.Sum256([]byte(key))
	ctx, cancel := context.WithTimeout(ctx, r.o.LockTimeout)
	defer cancel()
	l, err := lockfile.Acquire(ctx, filepath.Join(dir, hex.EncodeToString(sum[:10])+".lock"), 20*time.Millisecond)
	if err != nil && ctx.Err() == nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot lock %s in %s", key, dir)
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindLocked, err, "waiting for another nexcage preparing %s", key).
			WithHint("retry when the other create has finished")
	}
	// The file goes with the lock: one would otherwise stay per bundle,
	// image or template ever prepared.
	return func() { _ = l.UnlockRemove() }, nil
}

// inspect returns the metadata of template tmpl, from its .nexcage.json
// when that still describes the file, else by reading the archive once.
func (r *Resolver) inspect(tmpl string) (*Meta, error) {
	fi, err := os.Stat(tmpl)
	if err != nil {
		return nil, errs.Wrap(errs.KindNotFound, err, "template %s does not exist", tmpl)
	}
	m := readMeta(tmpl)
	if m.fresh(fi) {
		return m, nil
	}
	info, err := InspectArchive(tmpl)
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = &Meta{File: filepath.Base(tmpl), Created: r.o.Now().UTC()}
	}
	m.Info, m.ModTime = *info, fi.ModTime()
	if err := writeMeta(tmpl, m); err != nil {
		r.log.Warn("cannot cache template metadata", "template", tmpl, "err", err)
	}
	return m, nil
}

// finish checks the template's arch against the host, records its use and
// builds the result.
func (r *Resolver) finish(ctx context.Context, storage, tmpl string, m *Meta) (*Resolved, error) {
	file := filepath.Base(tmpl)
	if m.Arch != "" && !slices.Contains(CompatibleArches(r.o.HostArch), m.Arch) {
		return nil, errs.New(errs.KindTemplate, "template %s is built for %s, but this host runs %s", file, m.Arch, r.o.HostArch).
			WithHint("use a template for %s (Proxmox template names end in _%s.tar.*)", r.o.HostArch, r.o.HostArch)
	}
	if m.Arch == "" {
		r.log.Warn("cannot tell the template's architecture; assuming the host's", "template", file)
	}
	if strings.HasPrefix(file, PackedPrefix) {
		// Ours: private, even when an older nexcage placed it 0644.
		if err := os.Chmod(tmpl, FileMode); err != nil {
			r.log.Warn("cannot make the template private", "template", file, "err", err)
		}
	}
	r.touch(ctx, tmpl)
	return &Resolved{
		VolID: pve.TemplateVolumeID(storage, file), Path: tmpl, File: file,
		OSType: m.OSType, Arch: m.Arch, Size: m.Size, Digest: m.Digest,
		Image: m.Image, Packed: m.Placed,
	}, nil
}

// touch records the template's last use.
func (r *Resolver) touch(ctx context.Context, tmpl string) {
	r.recordUse(ctx, tmpl, nil)
}

// recordUse sets the template's last use (and lets update change more),
// re-reading its metadata under the template's lock so that no concurrent
// update is lost. Failing to record it is not worth failing a create for.
func (r *Resolver) recordUse(ctx context.Context, tmpl string, update func(*Meta)) {
	unlock, err := r.lock(ctx, "meta:"+tmpl)
	if err != nil {
		r.log.Warn("cannot record template use", "template", tmpl, "err", err)
		return
	}
	defer unlock()
	m := readMeta(tmpl)
	if m == nil {
		return
	}
	m.LastUsed = r.o.Now().UTC()
	if update != nil {
		update(m)
	}
	if err := writeMeta(tmpl, m); err != nil {
		r.log.Warn("cannot record template use", "template", tmpl, "err", err)
	}
}

// placeDir is the template cache of the configured template storage, where
// nexcage puts the templates it creates; it must be a directory storage.
func (r *Resolver) placeDir() (string, error) {
	st, err := r.templateStorage(r.o.Storage)
	if err != nil {
		return "", err
	}
	dir := cacheDir(st)
	if dir == "" {
		return "", errs.New(errs.KindTemplate, "template storage '%s' (%s) has no directory nexcage could place templates in", st.Name, st.Type).
			WithHint("set proxmox.template_storage to a directory storage such as 'local'")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", errs.Wrap(errs.KindTemplate, err, "cannot create the template cache %s", dir)
	}
	return dir, nil
}

// placedName is the content-addressed file name of a template nexcage
// places: the same content always gets the same name, whatever its source.
func placedName(digest, compression string) string {
	h := strings.TrimPrefix(digest, "sha256:")
	return "nexcage-" + h[:16] + ExtForCompression(compression)
}

// place validates the finished temporary archive tmp (in dir), renames it
// to its content-addressed name and writes its metadata. The temporary
// file is gone afterwards in every case.
func (r *Resolver) place(ctx context.Context, tmp, dir string, meta Meta, nameHint string) (string, *Meta, error) {
	defer os.Remove(tmp)
	f, err := os.Open(tmp)
	if err != nil {
		return "", nil, errs.Wrap(errs.KindTemplate, err, "cannot read back %s", tmp)
	}
	info, err := inspectStream(f, nameHint, false)
	f.Close()
	if err != nil {
		return "", nil, errs.Wrap(errs.KindTemplate, err, "%s is not a usable container template", meta.Source).
			WithHint("use a tar archive (plain, gzip, xz, zstd or bzip2) of a root filesystem with /bin, /etc or /usr at its top")
	}
	final := filepath.Join(dir, placedName(info.Digest, info.Compression))
	unlock, err := r.lock(ctx, "meta:"+final)
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	src := meta.current()
	if old := readMeta(final); old != nil && old.Digest == info.Digest {
		// The same content is already there (from another source, or a
		// race we lost): keep the file (private, if an older nexcage
		// placed it 0644), add the source.
		meta.Created, meta.Sources, meta.LastUsed = old.Created, old.Sources, old.LastUsed
		_ = os.Chmod(final, FileMode)
	} else if err := os.Rename(tmp, final); err != nil {
		return "", nil, errs.Wrap(errs.KindTemplate, err, "cannot place the template in %s", dir)
	}
	fi, err := os.Stat(final)
	if err != nil {
		return "", nil, errs.Wrap(errs.KindTemplate, err, "template %s vanished", final)
	}
	meta.File, meta.Info, meta.ModTime, meta.Placed = filepath.Base(final), *info, fi.ModTime(), true
	meta.upsertSource(src)
	if meta.Created.IsZero() {
		meta.Created = r.o.Now().UTC()
	}
	if err := writeMeta(final, &meta); err != nil {
		return "", nil, errs.Wrap(errs.KindTemplate, err, "cannot write the metadata of %s", final)
	}
	r.log.Info("template placed in the cache", "template", meta.File, "source", meta.Source, "size", info.Size)
	return final, &meta, nil
}

// createTemp opens a new temporary file in dir for an archive in progress.
func createTemp(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot write into the template cache %s", dir)
	}
	if err := f.Chmod(FileMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, errs.Wrap(errs.KindTemplate, err, "chmod %s", f.Name())
	}
	return f, nil
}

// closeTemp flushes f to disk and closes it.
func closeTemp(f *os.File) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Cache returns the template cache of the configured template storage,
// whose reference files record which containers use which template.
func (r *Resolver) Cache() (*Cache, error) {
	dir, err := r.placeDir()
	if err != nil {
		return nil, err
	}
	return &Cache{Storage: r.o.Storage, Dir: dir}, nil
}

// cacheOf maps a template volume id to its cache and file name; nil for
// storages without a directory (nothing is recorded there).
func (r *Resolver) cacheOf(volid string) (*Cache, string, error) {
	st, vol, err := pve.ParseVolumeID(volid)
	if err != nil {
		return nil, "", errs.Wrap(errs.KindTemplate, err, "bad template volume id %q", volid)
	}
	file, err := pve.TemplateVolume(vol)
	if err != nil {
		return nil, "", errs.Wrap(errs.KindTemplate, err, "bad template volume id %q", volid)
	}
	s, err := r.templateStorage(st)
	if err != nil {
		return nil, "", err
	}
	dir := cacheDir(s)
	if dir == "" {
		return nil, "", nil
	}
	return &Cache{Storage: st, Dir: dir}, file, nil
}

// Use records that container id uses template volid (shown by List and
// protecting it from Prune). Packing a bundle with PackAndAcquire records
// the user itself.
func (r *Resolver) Use(ctx context.Context, volid, id string) error {
	c, file, err := r.cacheOf(volid)
	if err != nil || c == nil {
		return err
	}
	if err := checkRef(id); err != nil {
		return err
	}
	l, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = l.Unlock() }()
	return c.addRef(file, id)
}

// Release records that container id no longer uses template volid. A
// template packed from a bundle (content only that container had) is
// removed with its last user; templates nexcage downloaded, copied or
// built from an image stay cached until Prune, and templates nexcage did
// not place are never removed. It reports whether the file was removed.
func (r *Resolver) Release(ctx context.Context, volid, id string) (removed bool, err error) {
	c, file, err := r.cacheOf(volid)
	if err != nil || c == nil {
		return false, err
	}
	if err := checkRef(id); err != nil {
		return false, err
	}
	l, err := c.lock(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = l.Unlock() }()
	left, err := c.dropRef(file, id)
	if err != nil || left > 0 || !strings.HasPrefix(file, PackedPrefix) {
		return false, err
	}
	// What a pack of this template killed midway left (packs run under
	// the cache lock we hold, so none is in progress).
	if err := os.Remove(packPartial(c.Dir, file)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, errs.Wrap(errs.KindTemplate, err, "cannot remove the unfinished template %s", packPartial(c.Dir, file))
	}
	tmpl := filepath.Join(c.Dir, file)
	// Packed by the backend's bundle packer (no metadata of ours) or a
	// bundle: content only this container had.
	if m := readMeta(tmpl); m == nil || !slices.ContainsFunc(m.Sources, func(s SourceRef) bool { return s.Form != FormBundle }) {
		if err := removeTemplate(tmpl); err != nil {
			return false, errs.Wrap(errs.KindTemplate, err, "cannot remove unused template %s", file)
		}
		return true, nil
	}
	return false, nil
}

// Entry is one template in the cache as `nexcage templates list` shows it.
type Entry struct {
	VolID    string    `json:"volid"`
	File     string    `json:"file"`
	Path     string    `json:"path"`
	Source   string    `json:"source,omitempty"`
	Form     Form      `json:"form,omitempty"`
	Size     int64     `json:"size"`
	Arch     string    `json:"arch,omitempty"`
	OSType   string    `json:"ostype,omitempty"`
	Placed   bool      `json:"placed"`
	Created  time.Time `json:"created,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
	Users    []string  `json:"users,omitempty"`
}

// List returns the templates nexcage placed in, or recorded users of, the
// template storage's cache, sorted by file name.
func (r *Resolver) List(ctx context.Context) ([]Entry, error) {
	c, err := r.Cache()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot list %s", c.Dir)
	}
	var out []Entry
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || pve.ValidateTemplateName(name) != nil {
			continue
		}
		users, _ := c.Users(name)
		m := readMeta(filepath.Join(c.Dir, name))
		placed := strings.HasPrefix(name, PackedPrefix)
		if !placed && len(users) == 0 {
			continue
		}
		ent := Entry{VolID: c.VolID(name), File: name, Path: filepath.Join(c.Dir, name), Placed: placed, Users: users}
		if m != nil {
			var srcs []string
			for _, s := range m.Sources {
				srcs = append(srcs, s.Source)
			}
			if len(m.Sources) > 0 {
				ent.Form = m.Sources[0].Form
			}
			ent.Source, ent.Arch, ent.OSType = strings.Join(srcs, ", "), m.Arch, m.OSType
			ent.Created, ent.LastUsed = m.Created, m.LastUsed
		} else if placed {
			ent.Form = FormBundle // packed by PackAndAcquire
		}
		if fi, err := e.Info(); err == nil {
			ent.Size = fi.Size()
			if ent.Created.IsZero() {
				ent.Created = fi.ModTime()
			}
		}
		out = append(out, ent)
	}
	return out, nil
}

// Prune removes the templates nexcage placed that no container uses and
// that were last used longer than olderThan ago (0: any unused one), plus
// temporary files left by interrupted downloads more than a day old. With
// dryRun nothing is removed. It returns what was (or would be) removed.
func (r *Resolver) Prune(ctx context.Context, olderThan time.Duration, dryRun bool) ([]Entry, error) {
	list, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	now := r.o.Now()
	var removed []Entry
	var errList []error
	for _, e := range list {
		last := e.LastUsed
		if last.IsZero() {
			last = e.Created
		}
		if !e.Placed || len(e.Users) > 0 || (olderThan > 0 && now.Sub(last) < olderThan) {
			continue
		}
		if dryRun {
			removed = append(removed, e)
			continue
		}
		err := func() error {
			c, err := r.Cache()
			if err != nil {
				return err
			}
			l, err := c.lock(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = l.Unlock() }()
			if users, _ := c.Users(e.File); len(users) > 0 {
				return nil // taken into use meanwhile
			}
			if err := removeTemplate(e.Path); err != nil {
				return err
			}
			removed = append(removed, e)
			return nil
		}()
		if err != nil {
			errList = append(errList, fmt.Errorf("%s: %w", e.File, err))
		}
	}
	if dir, err := r.placeDir(); err == nil && !dryRun {
		tmps, _ := filepath.Glob(filepath.Join(dir, tempPattern))
		more, _ := filepath.Glob(filepath.Join(dir, "."+PackedPrefix+"partial-*"))
		tmps = append(tmps, more...)
		for _, t := range tmps {
			if fi, err := os.Stat(t); err == nil && now.Sub(fi.ModTime()) > 24*time.Hour {
				_ = os.Remove(t)
			}
		}
	}
	if len(errList) > 0 {
		return removed, errs.Wrap(errs.KindTemplate, errors.Join(errList...), "pruning templates")
	}
	return removed, nil
}

// Modes of what nexcage writes: templates it packs or places, their
// metadata and reference files, and everything in its scratch space hold
// container data, which only root may read. The directories of a
// Proxmox storage (<path>/template/cache) keep Proxmox's modes; only
// nexcage's own files and subdirectories in them are private.
const (
	FileMode = 0o600
	DirMode  = 0o700
)

// privateDir creates dir (and missing parents, 0700) and makes dir
// itself 0700 whatever the umask and whatever mode it had: it must be a
// directory nexcage owns entirely.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	return os.Chmod(dir, DirMode)
}

// workDir creates the scratch directory (storage.image_path) 0700 when
// it does not exist. An existing one keeps its mode (it is configurable
// and could be shared); everything nexcage puts into it is 0700 itself.
func (r *Resolver) workDir() error {
	if _, err := os.Stat(r.o.WorkDir); err == nil {
		return nil
	}
	if err := os.MkdirAll(r.o.WorkDir, DirMode); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot create %s", r.o.WorkDir).WithHint("check storage.image_path")
	}
	if err := os.Chmod(r.o.WorkDir, DirMode); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot make %s private", r.o.WorkDir).WithHint("check storage.image_path")
	}
	return nil
}
