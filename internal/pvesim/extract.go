package pvesim

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Unprivileged containers map container ids 0..65535 to host ids
// 100000..165535 (Proxmox's fixed default `lxc.idmap = u 0 100000 65536`).
const (
	unprivIDBase  = 100000
	unprivIDCount = 65536
)

// Magic numbers used to detect a template's compression by content, the way
// tar's --auto-compress does not (Proxmox passes the file to tar which sniffs).
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte{'B', 'Z', 'h'}
)

// decompressor wraps r in the decompressor its first bytes call for; a
// stream without a known magic is taken as a plain tar.
func decompressor(r *bufio.Reader) (io.Reader, func(), error) {
	head, _ := r.Peek(6)
	noop := func() {}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, noop, err
		}
		return zr, func() { _ = zr.Close() }, nil
	case bytes.HasPrefix(head, magicXz):
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, noop, err
		}
		return xr, noop, nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, noop, err
		}
		return zr, zr.Close, nil
	case bytes.HasPrefix(head, magicBzip2):
		return bzip2.NewReader(r), noop, nil
	}
	return r, noop, nil
}

// extractTemplate unpacks a container template archive into rootfs the way
// pve-container's restore_archive does (`tar xpf --numeric-owner
// --skip-old-files --anchored --exclude './dev/*'`): ownership and modes are
// kept, existing files and directories are left as they are and the
// contents of /dev are skipped. Create runs it with the mount points
// mounted, so members below a bind mount's target land in the host
// directory. For an unprivileged container every uid/gid is shifted by 100000
// (Proxmox runs tar under lxc-usernsexec with that mapping), so ids above
// 65535 cannot be represented and fail the extraction as they do there.
//
// Paths are confined to rootfs: entries with `..` components, and links or
// symlinked directories that would lead out of rootfs, are refused.
func (n *Node) extractTemplate(archive, rootfs string, unprivileged bool) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("unable to open template archive '%s' - %w", archive, err)
	}
	defer f.Close()
	dec, closeDec, err := decompressor(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return fmt.Errorf("unable to read template archive '%s' - %w", archive, err)
	}
	defer closeDec()

	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	if unprivileged {
		// Proxmox allocates the volume owned by the mapped root.
		if err := root.Lchown(".", unprivIDBase, unprivIDBase); err != nil {
			return err
		}
	}

	x := &extractor{root: root, unpriv: unprivileged}
	if err := x.run(tar.NewReader(dec)); err != nil {
		return fmt.Errorf("error extracting archive '%s': %w", archive, err)
	}
	return nil
}

type extractor struct {
	root   *os.Root
	unpriv bool
	dirs   []dirTimes // set after all entries so children do not bump them
}

type dirTimes struct {
	name  string
	atime time.Time
	mtime time.Time
}

func (x *extractor) run(tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name, err := cleanEntryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			// The archive's "./" entry describes rootfs, which exists:
			// --skip-old-files leaves it as create made it.
			continue
		}
		if strings.HasPrefix(name, "dev/") {
			continue // --exclude './dev/*': LXC populates /dev itself
		}
		if _, err := x.root.Lstat(name); err == nil {
			// --skip-old-files: GNU tar keeps whatever exists, an
			// existing directory's owner and mode too (a mount point
			// created by mount_all, or a bind-mounted host directory);
			// members below it are still extracted.
			continue
		}
		if err := x.entry(name, hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		_ = x.root.Chtimes(d.name, d.atime, d.mtime)
	}
	return nil
}

// cleanEntryName turns a tar member name into a path relative to rootfs
// ("" for the root itself) and refuses names that climb out of it.
func cleanEntryName(name string) (string, error) {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("refusing archive member %q: path leaves the root", name)
		}
	}
	clean := path.Clean("/" + name)
	return strings.TrimPrefix(clean, "/"), nil
}

func (x *extractor) entry(name string, hdr *tar.Header, r io.Reader) error {
	if dir := path.Dir(name); dir != "." {
		// GNU tar creates missing parents with default permissions.
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return x.applyMeta(name, hdr, true)
	case tar.TypeReg, tar.TypeGNUSparse: // archive/tar reports old-style \x00 regular files as TypeReg
		out, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return x.applyMeta(name, hdr, false)
	case tar.TypeSymlink:
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		uid, gid, err := x.ids(hdr)
		if err != nil {
			return err
		}
		return x.root.Lchown(name, uid, gid)
	case tar.TypeLink:
		target, err := cleanEntryName(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("refusing hard link to %q", hdr.Linkname)
		}
		return x.root.Link(target, name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.mknod(name, hdr, mode)
	default:
		// Other member types (xattr headers are consumed by archive/tar)
		// carry nothing a container needs.
		return nil
	}
}

// mknod creates a device node or fifo relative to an fd of its parent
// directory, so the path cannot be redirected outside the root.
func (x *extractor) mknod(name string, hdr *tar.Header, mode fs.FileMode) error {
	dir, err := x.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	var typ uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		typ = unix.S_IFCHR
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	default:
		typ = unix.S_IFIFO
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	if err := unix.Mknodat(int(dir.Fd()), path.Base(name), typ|uint32(mode), dev); err != nil {
		return &os.PathError{Op: "mknod", Path: name, Err: err}
	}
	return x.applyMeta(name, hdr, false)
}

// ids returns the host uid/gid for an archive member.
func (x *extractor) ids(hdr *tar.Header) (int, int, error) {
	uid, gid := hdr.Uid, hdr.Gid
	if !x.unpriv {
		return uid, gid, nil
	}
	if uid < 0 || uid >= unprivIDCount || gid < 0 || gid >= unprivIDCount {
		return 0, 0, fmt.Errorf("cannot change ownership to uid %d, gid %d: Invalid argument", uid, gid)
	}
	return uid + unprivIDBase, gid + unprivIDBase, nil
}

// applyMeta sets ownership, then mode (chown clears set-id bits), then
// times. Directory times are deferred until the end of the archive.
func (x *extractor) applyMeta(name string, hdr *tar.Header, isDir bool) error {
	uid, gid, err := x.ids(hdr)
	if err != nil {
		return err
	}
	if err := x.root.Lchown(name, uid, gid); err != nil {
		return err
	}
	if err := x.root.Chmod(name, tarMode(hdr.Mode)); err != nil {
		return err
	}
	if isDir {
		x.dirs = append(x.dirs, dirTimes{name, hdr.AccessTime, hdr.ModTime})
		return nil
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return x.root.Chtimes(name, atime, hdr.ModTime)
}

// tarMode converts tar's mode bits, including set-id and sticky bits,
// into an os.FileMode.
func tarMode(m int64) fs.FileMode {
	mode := fs.FileMode(m).Perm()
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// makeTraversable makes dir and every parent up to (not including) stop
// world-traversable, which unprivileged containers need: LXC opens the
// rootfs as the mapped root (uid 100000).
func makeTraversable(dir, stop string) error {
	dir = filepath.Clean(dir)
	stop = filepath.Clean(stop)
	for {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(dir, st.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
		if dir == stop || dir == "/" {
			return nil
		}
		dir = filepath.Dir(dir)
	}
}
