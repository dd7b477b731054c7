// Package trust decides whether nexcage, running as root, may read a file
// or run a program at a path: only when no other local user can plant,
// change or redirect it. A path is trusted when the file and every
// directory and symbolic link on the way to it (the links' targets
// included) are owned by root or by the caller (the effective uid) and are
// not writable by group or others. A directory writable by others is
// accepted on the way (not as the final entry) only with the sticky bit
// set, as /tmp has it: there others cannot rename or replace the entries
// they do not own, and every entry nexcage goes through is checked to be
// owned by root or the caller.
//
// Group and other write bits also cover POSIX ACLs: with an ACL the group
// bits are the ACL mask, which includes the write bit whenever a named
// user or group has write access.
package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nexcage/nexcage/internal/errs"
)

// maxLinks bounds the symbolic links followed in one path, as the
// kernel's MAXSYMLINKS does.
const maxLinks = 40

// checker holds the uids that may own a trusted path: root and the
// caller. Tests add a uid to check the caller's case while running as
// root.
type checker struct {
	uids []uint32
}

func defaultChecker() checker {
	c := checker{uids: []uint32{0}}
	if e := uint32(os.Geteuid()); e != 0 {
		c.uids = append(c.uids, e)
	}
	return c
}

// File checks that path, which must exist, is trusted (see the package
// comment). The error is an errs.KindInvalidConfig error naming path, the
// entry that fails, its owner or mode, and the fix; when a component does
// not exist it wraps fs.ErrNotExist.
func File(path string) error {
	_, err := defaultChecker().walk(path, false)
	return err
}

// Creatable checks a path nexcage may create (a state root, a cache
// directory): the part that exists must be trusted, the final entry
// included when it exists. A missing tail is accepted; the caller
// creates it and then checks it again with File, so that an entry
// someone else made in between is refused.
func Creatable(path string) error {
	_, err := defaultChecker().walk(path, true)
	return err
}

// LookPath is exec.LookPath(name) (a name is looked up on PATH, a path is
// taken as it is) followed by File on the program found. It returns what
// exec.LookPath returns, so a program keeps the name it is called by
// (argv[0]) even when it is a symbolic link. A program that is not found
// gives exec.LookPath's error unchanged.
func LookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", errs.Wrap(errs.KindInvalidConfig, err, "program %s", p)
	}
	if err := File(abs); err != nil {
		return "", err
	}
	return p, nil
}

// walk resolves path one component at a time, checking each entry, and
// returns the resolved path (no symbolic links left). With allowMissing a
// missing component ends the walk successfully.
func (c checker) walk(path string, allowMissing bool) (string, error) {
	if !filepath.IsAbs(path) {
		return "", errs.New(errs.KindInvalidConfig, "%s: not an absolute path", path).
			WithHint("give the absolute path")
	}
	fail := func(format string, args ...any) *errs.Error {
		return errs.New(errs.KindInvalidConfig, "untrusted path %s: %s", path, fmt.Sprintf(format, args...))
	}
	fi, err := os.Lstat("/")
	if err != nil {
		return "", errs.Wrap(errs.KindInvalidConfig, err, "untrusted path %s", path)
	}
	if err := c.checkEntry(fail, "/", fi, false); err != nil {
		return "", err
	}
	cur := "/"
	rest := strings.Split(path, "/")
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// cur holds no symbolic link, so its lexical parent is the
			// directory ".." names; it was checked on the way here.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) && allowMissing {
			return cur, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", errs.Wrap(errs.KindInvalidConfig, fs.ErrNotExist, "%s: no such file or directory", next)
		}
		if err != nil {
			return "", errs.Wrap(errs.KindInvalidConfig, err, "untrusted path %s", path)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if err := c.checkOwner(fail, "symbolic link", next, fi); err != nil {
				return "", err
			}
			if links++; links > maxLinks {
				return "", fail("more than %d symbolic links", maxLinks)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", errs.Wrap(errs.KindInvalidConfig, err, "untrusted path %s", path)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		}
		if !fi.IsDir() && hasMore(rest) {
			return "", errs.New(errs.KindInvalidConfig, "%s: %s is not a directory", path, next)
		}
		if err := c.checkEntry(fail, next, fi, false); err != nil {
			return "", err
		}
		cur = next
	}
	// The entry the path names may not be writable by others at all, even
	// with the sticky bit: others could add to a directory or write to a
	// file.
	fi, err = os.Lstat(cur)
	if err != nil {
		return "", errs.Wrap(errs.KindInvalidConfig, err, "untrusted path %s", path)
	}
	if err := c.checkEntry(fail, cur, fi, true); err != nil {
		return "", err
	}
	return cur, nil
}

// hasMore reports whether rest names another entry to look up (not only
// empty or "." components).
func hasMore(rest []string) bool {
	for _, s := range rest {
		if s != "" && s != "." {
			return true
		}
	}
	return false
}

// checkEntry checks the owner and mode of the file or directory p. A
// directory on the way (final false) may be writable by others when it
// is sticky.
func (c checker) checkEntry(fail func(string, ...any) *errs.Error, p string, fi fs.FileInfo, final bool) error {
	kind := "file"
	if fi.IsDir() {
		kind = "directory"
	}
	if err := c.checkOwner(fail, kind, p, fi); err != nil {
		return err
	}
	what := kind + " " + p
	perm := fi.Mode().Perm()
	if perm&0o022 == 0 {
		return nil
	}
	sticky := fi.Mode()&fs.ModeSticky != 0
	if fi.IsDir() && sticky && !final {
		return nil
	}
	by := "group and others"
	switch perm & 0o022 {
	case 0o020:
		by = "its group"
	case 0o002:
		by = "others"
	}
	if fi.IsDir() && !final {
		return fail("%s is writable by %s (mode %04o) and not sticky, so they can replace what it holds", what, by, modeBits(fi)).
			WithHint("chmod go-w %s", p)
	}
	return fail("%s is writable by %s (mode %04o)", what, by, modeBits(fi)).
		WithHint("chmod go-w %s", p)
}

// checkOwner checks that fi, the kind ("file", "directory", "symbolic
// link") at p, is owned by root or the caller.
func (c checker) checkOwner(fail func(string, ...any) *errs.Error, kind, p string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fail("%s %s: no owner information", kind, p)
	}
	for _, u := range c.uids {
		if st.Uid == u {
			return nil
		}
	}
	owners := "root"
	if len(c.uids) > 1 {
		owners = fmt.Sprintf("root or uid %d (the caller)", c.uids[len(c.uids)-1])
	}
	return fail("%s %s is owned by uid %d, not %s: that user could change or replace it", kind, p, st.Uid, owners).
		WithHint("chown root %s, or keep the file in a directory tree only root can write, such as /etc/nexcage or /usr/local/bin", p)
}

// modeBits is the permission and sticky/setuid/setgid bits in octal.
func modeBits(fi fs.FileInfo) uint32 {
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	return m
}
