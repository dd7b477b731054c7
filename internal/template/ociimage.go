package template

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// sniffImageArchive tells an image archive from a template archive by its
// members: an OCI archive has oci-layout at its top, a docker archive
// manifest.json; a root filesystem has bin, etc or usr. "" means "not an
// image archive" (including unreadable files: template validation then
// reports why).
func sniffImageArchive(p string) Form {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	dr, comp, done, err := openCompressed(br)
	if err != nil {
		return ""
	}
	defer done()
	if comp == CompNone {
		// Read the plain tar from the file itself so that tar can seek
		// over member data instead of reading it.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return ""
		}
		dr = f
	}
	tr := tar.NewReader(dr)
	manifest := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		switch name := cleanRel(h.Name); {
		case name == "oci-layout":
			return FormOCIArchive
		case name == "manifest.json":
			manifest = true
		case name == "bin", name == "etc", name == "usr", strings.HasPrefix(name, "bin/"),
			strings.HasPrefix(name, "etc/"), strings.HasPrefix(name, "usr/"):
			return ""
		}
	}
	if manifest {
		return FormDockerArchive
	}
	return ""
}

// image is a chosen image of a layout or archive, ready to unpack.
type image struct {
	config ocispec.Image
	layers []layerRef
}

type layerRef struct {
	path   string        // relative to the image root
	digest digest.Digest // of the blob bytes (OCI); "" when unknown
	diffID digest.Digest // of the uncompressed tar (docker); "" when unknown
}

var digestRe = lazyre.New(`^sha(256:[a-f0-9]{64}|512:[a-f0-9]{128})$`)

// blobPath is the path of a blob in an OCI layout, refusing digests that
// could name anything outside blobs/.
func blobPath(d digest.Digest) (string, error) {
	if !digestRe.MatchString(string(d)) {
		return "", fmt.Errorf("invalid digest %q", d)
	}
	return path.Join("blobs", d.Algorithm().String(), d.Encoded()), nil
}

func readJSON(root *os.Root, name string, v any) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := json.NewDecoder(io.LimitReader(f, 8<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// goArch maps a Proxmox arch to Go/OCI platform architecture names.
func goArch(proxmoxArch string) string {
	switch proxmoxArch {
	case "i386":
		return "386"
	case "armhf":
		return "arm"
	}
	return proxmoxArch
}

// proxmoxArch maps an OCI platform architecture to Proxmox's name.
func proxmoxArch(a string) string {
	switch a {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	}
	return a
}

// refNames returns what a tag may match for an OCI index descriptor.
func refNames(d ocispec.Descriptor) []string {
	var out []string
	for _, k := range []string{ocispec.AnnotationRefName, "io.containerd.image.name"} {
		if v := d.Annotations[k]; v != "" {
			out = append(out, v)
		}
	}
	return out
}

// tagMatches compares a requested tag with a recorded name, treating
// "alpine:3.20", "docker.io/library/alpine:3.20" and "3.20" alike.
func tagMatches(want, have string) bool {
	norm := func(s string) string {
		s = strings.TrimPrefix(s, "docker.io/")
		return strings.TrimPrefix(s, "library/")
	}
	want, have = norm(want), norm(have)
	return want == have || strings.HasSuffix(have, ":"+want)
}

// loadOCI picks the image for tag (or the only one) from an OCI layout.
func loadOCI(root *os.Root, tag, hostArch string) (*image, error) {
	var idx ocispec.Index
	if err := readJSON(root, "index.json", &idx); err != nil {
		return nil, err
	}
	cands := idx.Manifests
	if tag != "" {
		cands = slices.DeleteFunc(slices.Clone(cands), func(d ocispec.Descriptor) bool {
			return !slices.ContainsFunc(refNames(d), func(n string) bool { return tagMatches(tag, n) })
		})
		if len(cands) == 0 {
			return nil, fmt.Errorf("no image tagged %q (tags: %s)", tag, strings.Join(allRefNames(idx), ", "))
		}
	}
	d, err := pickPlatform(cands, hostArch)
	if err != nil {
		if len(cands) > 1 {
			return nil, fmt.Errorf("%d images and none chosen: %v (add :<tag>; tags: %s)", len(cands), err, strings.Join(allRefNames(idx), ", "))
		}
		return nil, err
	}
	for depth := 0; ; depth++ {
		if depth > 4 {
			return nil, errors.New("image indexes nested too deeply")
		}
		if d.MediaType != ocispec.MediaTypeImageIndex && d.MediaType != "application/vnd.docker.distribution.manifest.list.v2+json" {
			break
		}
		bp, err := blobPath(d.Digest)
		if err != nil {
			return nil, err
		}
		var sub ocispec.Index
		if err := readJSON(root, bp, &sub); err != nil {
			return nil, err
		}
		if d, err = pickPlatform(sub.Manifests, hostArch); err != nil {
			return nil, err
		}
	}
	bp, err := blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := readJSON(root, bp, &m); err != nil {
		return nil, err
	}
	cp, err := blobPath(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	img := &image{}
	if err := readJSON(root, cp, &img.config); err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		lp, err := blobPath(l.Digest)
		if err != nil {
			return nil, err
		}
		img.layers = append(img.layers, layerRef{path: lp, digest: l.Digest})
	}
	return img, nil
}

func allRefNames(idx ocispec.Index) []string {
	var out []string
	for _, d := range idx.Manifests {
		out = append(out, refNames(d)...)
	}
	if len(out) == 0 {
		return []string{"none recorded"}
	}
	return out
}

// pickPlatform chooses the only descriptor, or the one for linux on the
// host's arch.
func pickPlatform(ds []ocispec.Descriptor, hostArch string) (ocispec.Descriptor, error) {
	if len(ds) == 1 {
		return ds[0], nil
	}
	if len(ds) == 0 {
		return ocispec.Descriptor{}, errors.New("the index lists no images")
	}
	var seen []string
	for _, d := range ds {
		if d.Platform == nil {
			continue
		}
		seen = append(seen, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.Platform.OS == "linux" && d.Platform.Architecture == goArch(hostArch) {
			return d, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("none for linux/%s (platforms: %s)", goArch(hostArch), strings.Join(seen, ", "))
}

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// loadDocker picks the image for tag (or the only one) from an unpacked
// docker-archive.
func loadDocker(root *os.Root, tag string) (*image, error) {
	var ms []dockerManifest
	if err := readJSON(root, "manifest.json", &ms); err != nil {
		return nil, err
	}
	var all []string
	for _, m := range ms {
		all = append(all, m.RepoTags...)
	}
	if tag != "" {
		ms = slices.DeleteFunc(ms, func(m dockerManifest) bool {
			return !slices.ContainsFunc(m.RepoTags, func(t string) bool { return tagMatches(tag, t) })
		})
	}
	switch {
	case len(ms) == 0 && tag != "":
		return nil, fmt.Errorf("no image tagged %q (tags: %s)", tag, strings.Join(all, ", "))
	case len(ms) == 0:
		return nil, errors.New("manifest.json lists no images")
	case len(ms) > 1:
		return nil, fmt.Errorf("%d images in the archive; add :<tag> (tags: %s)", len(ms), strings.Join(all, ", "))
	}
	m := ms[0]
	img := &image{}
	if err := readJSON(root, cleanRel(m.Config), &img.config); err != nil {
		return nil, err
	}
	for i, l := range m.Layers {
		ref := layerRef{path: cleanRel(l)}
		if i < len(img.config.RootFS.DiffIDs) && len(m.Layers) == len(img.config.RootFS.DiffIDs) {
			ref.diffID = img.config.RootFS.DiffIDs[i]
		}
		img.layers = append(img.layers, ref)
	}
	return img, nil
}

// extractArchive unpacks an image archive (tar of a layout or a docker
// save) into dest, confined to it.
func extractArchive(p string, dest *os.Root) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return walkTar(f, func(tr *tar.Reader, h *tar.Header, name string) error {
		if d := path.Dir(name); d != "." {
			if err := dest.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			return dest.MkdirAll(name, 0o755)
		case tar.TypeReg:
			return writeRootFile(dest, name, tr, 0o644)
		case tar.TypeSymlink:
			// docker save links identical layers to each other.
			return dest.Symlink(h.Linkname, name)
		}
		return nil
	})
}

// walkTar calls fn for each entry of the tar stream r (in any supported
// compression) whose cleaned relative name is not empty.
func walkTar(r io.Reader, fn func(tr *tar.Reader, h *tar.Header, name string) error) error {
	dr, _, done, err := openCompressed(bufio.NewReaderSize(r, 1<<16))
	if err != nil {
		return err
	}
	defer done()
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if name := cleanRel(h.Name); name != "" {
			if err := fn(tr, h, name); err != nil {
				return err
			}
		}
	}
}

func writeRootFile(root *os.Root, name string, r io.Reader, perm fs.FileMode) error {
	out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// applyLayerTimes unpacks one layer (any supported compression) onto the
// rootfs with OCI whiteout semantics, confined to the rootfs: entries
// cannot climb out with "..", and symlinks leading outside are refused by
// os.Root. Device nodes and fifos are skipped (LXC provides /dev). It
// records directory times in dirTimes (when not nil), to be set once all
// layers are applied.
func applyLayerTimes(rootfs *os.Root, r io.Reader, dirTimes map[string]time.Time) error {
	seen := map[string]bool{} // paths this layer created
	return walkTar(r, func(tr *tar.Reader, h *tar.Header, name string) error {
		dir, base := path.Dir(name), path.Base(name)
		if base == ".wh..wh..opq" {
			if err := opaque(rootfs, dir, seen); err != nil {
				return fmt.Errorf("opaque whiteout %s: %w", name, err)
			}
			return nil
		}
		if strings.HasPrefix(base, ".wh.") {
			target := path.Join(dir, strings.TrimPrefix(base, ".wh."))
			if !seen[target] {
				if err := rootfs.RemoveAll(target); err != nil {
					return fmt.Errorf("whiteout %s: %w", name, err)
				}
			}
			return nil
		}
		if dir != "." {
			if err := rootfs.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		if fi, err := rootfs.Lstat(name); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := rootfs.RemoveAll(name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		mode := h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := rootfs.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s: %w", name, err)
			}
			if dirTimes != nil {
				dirTimes[name] = h.ModTime
			}
		case tar.TypeReg:
			if err := writeRootFile(rootfs, name, tr, 0o600); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := rootfs.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeLink:
			if err := rootfs.Link(cleanRel(h.Linkname), name); err != nil {
				return fmt.Errorf("hard link %s -> %s: %w", name, h.Linkname, err)
			}
		default:
			return nil // devices, fifos: not needed in a template
		}
		seen[name] = true
		if err := rootfs.Lchown(name, h.Uid, h.Gid); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
			if err := rootfs.Chmod(name, mode); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_ = rootfs.Chtimes(name, h.ModTime, h.ModTime)
		}
		return nil
	})
}

// opaque removes what lower layers put in dir (an opaque whiteout).
func opaque(rootfs *os.Root, dir string, seen map[string]bool) error {
	d, err := rootfs.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if dir == "." {
			p = e.Name()
		}
		if !seen[p] {
			if err := rootfs.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// unpackImage applies img's layers in order onto rootfsDir, verifying each
// layer's digest (blob bytes for OCI, uncompressed stream for docker).
func unpackImage(ctx context.Context, src *os.Root, img *image, rootfsDir string) error {
	rootfs, err := os.OpenRoot(rootfsDir)
	if err != nil {
		return err
	}
	defer rootfs.Close()
	dirTimes := map[string]time.Time{}
	for i, l := range img.layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := applyOne(src, rootfs, l, dirTimes); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, l.path, err)
		}
	}
	// LXC mounts /proc, /sys and /dev there; minimal images may lack them.
	for _, d := range []string{"dev", "proc", "sys", "etc"} {
		if err := rootfs.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating /%s: %w", d, err)
		}
	}
	// Directory times as the layers say (epoch for implied ones), so the
	// same image always packs to the same template.
	return filepath.WalkDir(rootfsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// WalkDir does not follow links, so p's parents are real
			// directories: changing the link itself is safe.
			epoch := unix.NsecToTimespec(0)
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{epoch, epoch}, unix.AT_SYMLINK_NOFOLLOW)
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(rootfsDir, p)
		ts, ok := dirTimes[filepath.ToSlash(rel)]
		if !ok {
			ts = time.Unix(0, 0)
		}
		return rootfs.Chtimes(filepath.ToSlash(rel), ts, ts)
	})
}

func applyOne(src, rootfs *os.Root, l layerRef, dirTimes map[string]time.Time) error {
	f, err := src.Open(l.path)
	if err != nil {
		return err
	}
	defer f.Close()
	blobHash := sha256.New()
	var r io.Reader = io.TeeReader(f, blobHash)
	if l.diffID != "" {
		// The diff id covers the uncompressed stream: check it separately.
		if err := checkDiffID(src, l); err != nil {
			return err
		}
	}
	if err := applyLayerTimes(rootfs, r, dirTimes); err != nil {
		return err
	}
	if l.digest != "" && l.digest.Algorithm() == digest.SHA256 {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		if got := "sha256:" + hex.EncodeToString(blobHash.Sum(nil)); got != string(l.digest) {
			return fmt.Errorf("blob digest is %s, the manifest says %s (the image is corrupt)", got, l.digest)
		}
	}
	return nil
}

func checkDiffID(src *os.Root, l layerRef) error {
	if l.diffID.Algorithm() != digest.SHA256 {
		return nil
	}
	f, err := src.Open(l.path)
	if err != nil {
		return err
	}
	defer f.Close()
	dr, _, done, err := openCompressed(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return err
	}
	defer done()
	h := sha256.New()
	if _, err := io.Copy(h, dr); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != string(l.diffID) {
		return fmt.Errorf("layer content digest is %s, the image config says %s (the image is corrupt)", got, l.diffID)
	}
	return nil
}

// imageConfig extracts what the backend applies from an image config.
func imageConfig(c ocispec.Image) *ImageConfig {
	return &ImageConfig{
		Entrypoint: c.Config.Entrypoint, Cmd: c.Config.Cmd, Env: c.Config.Env,
		WorkingDir: c.Config.WorkingDir, User: c.Config.User, StopSignal: c.Config.StopSignal,
	}
}

// resolveImage builds (once) a template from an OCI layout, oci-archive or
// docker-archive at p, choosing the image by tag. source, when set, is the
// cache key (a pulled registry reference); otherwise the path and tag are,
// together with the file's size and time.
func (r *Resolver) resolveImage(ctx context.Context, form Form, p, tag, source string) (*Resolved, error) {
	dir, err := r.placeDir()
	if err != nil {
		return nil, err
	}
	label := p
	if tag != "" {
		label += ":" + tag
	}
	match := func(*Meta) bool { return true }
	var fi os.FileInfo
	if source == "" {
		source = string(form) + ":" + label
		stamp := p
		if form == FormOCILayout {
			stamp = filepath.Join(p, "index.json")
		}
		if fi, err = os.Stat(stamp); err != nil {
			return nil, errs.Wrap(errs.KindTemplate, err, "%s %s is not readable", form, p)
		}
		match = func(m *Meta) bool { return m.SourceSize == fi.Size() && m.SourceModTime.Equal(fi.ModTime()) }
	}
	if tmpl, m := findBySource(dir, source, match); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	unlock, err := r.lock(ctx, "image:"+source)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if tmpl, m := findBySource(dir, source, match); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	fail := func(err error) error {
		return errs.Wrap(errs.KindTemplate, err, "cannot use %s %s as an image", form, label).
			WithHint("check that it is a complete image (skopeo inspect %s:%s) and name one image with :<tag> when it holds several", form, label)
	}
	if err := os.MkdirAll(r.o.WorkDir, 0o700); err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot create %s", r.o.WorkDir).WithHint("check storage.image_path")
	}
	work, err := os.MkdirTemp(r.o.WorkDir, "unpack-")
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot create scratch space in %s", r.o.WorkDir)
	}
	defer os.RemoveAll(work)

	imgDir := p
	if form != FormOCILayout {
		imgDir = filepath.Join(work, "image")
		if err := os.Mkdir(imgDir, 0o700); err != nil {
			return nil, fail(err)
		}
		root, err := os.OpenRoot(imgDir)
		if err != nil {
			return nil, fail(err)
		}
		err = extractArchive(p, root)
		root.Close()
		if err != nil {
			return nil, fail(err)
		}
		if form == FormDockerArchive && fileExists(filepath.Join(imgDir, "oci-layout")) && fileExists(filepath.Join(imgDir, "index.json")) {
			form = FormOCIArchive // docker >= 25 saves an OCI layout too
		}
	}
	src, err := os.OpenRoot(imgDir)
	if err != nil {
		return nil, fail(err)
	}
	defer src.Close()
	var img *image
	if form == FormDockerArchive {
		img, err = loadDocker(src, tag)
	} else {
		img, err = loadOCI(src, tag, r.o.HostArch)
	}
	if err != nil {
		return nil, fail(err)
	}
	if a := img.config.Architecture; a != "" && !slices.Contains(CompatibleArches(r.o.HostArch), proxmoxArch(a)) {
		return nil, errs.New(errs.KindTemplate, "image %s is built for %s/%s, but this host runs %s", label, img.config.OS, a, r.o.HostArch).
			WithHint("use an image for linux/%s", goArch(r.o.HostArch))
	}
	rootfs := filepath.Join(work, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, fail(err)
	}
	r.log.Info("unpacking image", "image", label, "layers", len(img.layers))
	if err := unpackImage(ctx, src, img, rootfs); err != nil {
		return nil, fail(err)
	}
	tmp, err := r.packToCache(ctx, rootfs, "packing image "+label, dir)
	if err != nil {
		return nil, err
	}
	meta := Meta{Source: source, Form: form, Image: imageConfig(img.config)}
	if fi != nil {
		meta.SourceSize, meta.SourceModTime = fi.Size(), fi.ModTime()
	}
	tmpl, m, err := r.place(ctx, tmp, dir, meta, "")
	if err != nil {
		return nil, err
	}
	if m.Arch == "" && img.config.Architecture != "" {
		m.Arch = proxmoxArch(img.config.Architecture)
	}
	return r.finish(ctx, r.o.Storage, tmpl, m)
}
