package trust

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// other is a uid that is neither root nor the caller (the tests run as
// root).
const other = 54321

func mkdir(t *testing.T, p string, mode os.FileMode, uid int) string {
	t.Helper()
	if err := os.Mkdir(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

func file(t *testing.T, p string, mode os.FileMode, uid int) string {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/true\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

func symlink(t *testing.T, target, p string, uid int) string {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests run as root: they make files owned by other users")
	}
}

// refused checks that err is an invalid-config error containing every want.
func refused(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want an error containing %q", want)
	}
	if errs.KindOf(err) != errs.KindInvalidConfig {
		t.Errorf("kind %v, want invalid-config: %v", errs.KindOf(err), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestTrustedFile(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir() // under /tmp: sticky, root-owned entries
	f := file(t, filepath.Join(dir, "c.json"), 0o644, 0)
	if err := File(f); err != nil {
		t.Fatal(err)
	}
	// ".", ".." and repeated slashes resolve as the kernel does.
	sub := mkdir(t, filepath.Join(dir, "sub"), 0o755, 0)
	if err := File(sub + "/..//./c.json"); err != nil {
		t.Fatal(err)
	}
	if err := File("/"); err != nil {
		t.Fatalf("/: %v", err)
	}
}

func TestRelativeRefused(t *testing.T) {
	refused(t, File("config.json"), "config.json: not an absolute path")
	refused(t, Creatable("run/nexcage"), "not an absolute path")
}

func TestOwnedByOtherRefused(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	f := file(t, filepath.Join(dir, "c.json"), 0o644, other)
	refused(t, File(f), "untrusted path "+f, "file "+f+" is owned by uid 54321, not root", "chown root "+f)

	// A root-owned file in a directory another user owns: that user can
	// rename it away and put their own in its place.
	home := mkdir(t, filepath.Join(dir, "home"), 0o755, other)
	g := file(t, filepath.Join(home, "c.json"), 0o644, 0)
	refused(t, File(g), "directory "+home+" is owned by uid 54321")
}

func TestCallerAccepted(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	home := mkdir(t, filepath.Join(dir, "home"), 0o755, other)
	f := file(t, filepath.Join(home, "c.json"), 0o600, other)
	c := checker{uids: []uint32{0, other}}
	if _, err := c.walk(f, false); err != nil {
		t.Fatalf("file of the caller refused: %v", err)
	}
	// The caller is named in the error for anybody else.
	g := file(t, filepath.Join(home, "d.json"), 0o600, other+1)
	_, err := c.walk(g, false)
	refused(t, err, "owned by uid 54322, not root or uid 54321 (the caller)")
}

func TestWritableRefused(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	for mode, by := range map[os.FileMode]string{0o664: "writable by its group (mode 0664)", 0o646: "writable by others (mode 0646)", 0o666: "writable by group and others (mode 0666)"} {
		f := file(t, filepath.Join(dir, "f"+mode.String()), mode, 0)
		refused(t, File(f), "file "+f+" is "+by, "chmod go-w "+f)
	}
	// A world-writable directory without the sticky bit on the way.
	open := mkdir(t, filepath.Join(dir, "open"), 0o777, 0)
	f := file(t, filepath.Join(open, "c.json"), 0o644, 0)
	refused(t, File(f), "directory "+open+" is writable by group and others (mode 0777) and not sticky", "chmod go-w "+open)
	// Group-writable is as bad.
	grp := mkdir(t, filepath.Join(dir, "grp"), 0o775, 0)
	f = file(t, filepath.Join(grp, "c.json"), 0o644, 0)
	refused(t, File(f), "directory "+grp+" is writable by its group")
}

func TestStickyParent(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	tmp := mkdir(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky, 0)
	// Root's entry in a sticky directory: nobody else can replace it.
	f := file(t, filepath.Join(tmp, "c.json"), 0o644, 0)
	if err := File(f); err != nil {
		t.Fatalf("root-owned file under a sticky directory: %v", err)
	}
	d := mkdir(t, filepath.Join(tmp, "d"), 0o755, 0)
	if err := File(file(t, filepath.Join(d, "c.json"), 0o644, 0)); err != nil {
		t.Fatalf("root-owned directory under a sticky directory: %v", err)
	}
	// Another user's entry there is theirs to change.
	u := file(t, filepath.Join(tmp, "u.json"), 0o644, other)
	refused(t, File(u), "file "+u+" is owned by uid 54321")
	// The sticky directory itself cannot be the final entry: others can
	// add to it.
	refused(t, File(tmp), "directory "+tmp+" is writable by group and others (mode 1777)")
	refused(t, Creatable(tmp), "mode 1777")
}

func TestSymlinks(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	good := file(t, filepath.Join(dir, "good"), 0o755, 0)
	// Absolute and relative links to a trusted file, and a link to a link.
	if err := File(symlink(t, good, filepath.Join(dir, "abs"), 0)); err != nil {
		t.Fatal(err)
	}
	sub := mkdir(t, filepath.Join(dir, "sub"), 0o755, 0)
	if err := File(symlink(t, "../good", filepath.Join(sub, "rel"), 0)); err != nil {
		t.Fatal(err)
	}
	if err := File(symlink(t, "sub/rel", filepath.Join(dir, "chain"), 0)); err != nil {
		t.Fatal(err)
	}
	// A link into a directory another user can write: the target is
	// checked, not only the link.
	userdir := mkdir(t, filepath.Join(dir, "userdir"), 0o755, other)
	evil := file(t, filepath.Join(userdir, "evil"), 0o755, 0)
	l := symlink(t, evil, filepath.Join(dir, "tool"), 0)
	refused(t, File(l), "untrusted path "+l, "directory "+userdir+" is owned by uid 54321")
	// A link through a world-writable directory.
	open := mkdir(t, filepath.Join(dir, "open"), 0o777, 0)
	file(t, filepath.Join(open, "x"), 0o755, 0)
	l = symlink(t, "open/x", filepath.Join(dir, "tool2"), 0)
	refused(t, File(l), "directory "+open+" is writable", "not sticky")
	// A link owned by another user (in a sticky directory they can make
	// one) is refused even when it points to a trusted file.
	tmp := mkdir(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky, 0)
	l = symlink(t, good, filepath.Join(tmp, "link"), other)
	refused(t, File(l), "symbolic link "+l+" is owned by uid 54321")
	// A directory component that is a link into user space.
	l = symlink(t, userdir, filepath.Join(dir, "dirlink"), 0)
	refused(t, File(filepath.Join(l, "evil")), "directory "+userdir+" is owned by uid 54321")
	// Loops end.
	symlink(t, "loop2", filepath.Join(dir, "loop1"), 0)
	symlink(t, "loop1", filepath.Join(dir, "loop2"), 0)
	refused(t, File(filepath.Join(dir, "loop1")), "more than 40 symbolic links")
}

func TestMissing(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	err := File(filepath.Join(dir, "nope", "c.json"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "nope")) {
		t.Fatalf("missing: %v", err)
	}
	// A missing tail is fine for a path nexcage will create, in a trusted
	// place only.
	if err := Creatable(filepath.Join(dir, "state", "root")); err != nil {
		t.Fatal(err)
	}
	home := mkdir(t, filepath.Join(dir, "home"), 0o755, other)
	refused(t, Creatable(filepath.Join(home, "state", "root")), "directory "+home+" is owned by uid 54321")
	f := file(t, filepath.Join(dir, "f"), 0o644, 0)
	refused(t, File(filepath.Join(f, "x")), f+" is not a directory")
}

func TestLookPath(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	bin := mkdir(t, filepath.Join(dir, "bin"), 0o755, 0)
	file(t, filepath.Join(bin, "tool"), 0o755, 0)
	symlink(t, "tool", filepath.Join(bin, "alias"), 0)
	open := mkdir(t, filepath.Join(dir, "open"), 0o777, 0)
	file(t, filepath.Join(open, "planted"), 0o755, 0)
	t.Setenv("PATH", bin+":"+open)

	// A name on PATH gives the path found, not the link's target (a
	// program may dispatch on its name).
	if p, err := LookPath("alias"); err != nil || p != filepath.Join(bin, "alias") {
		t.Fatalf("LookPath(alias) = %q, %v", p, err)
	}
	if p, err := LookPath(filepath.Join(bin, "tool")); err != nil || p != filepath.Join(bin, "tool") {
		t.Fatalf("LookPath(path) = %q, %v", p, err)
	}
	// The file found through PATH is checked.
	_, err := LookPath("planted")
	refused(t, err, "directory "+open+" is writable")
	_, err = LookPath(filepath.Join(open, "planted"))
	refused(t, err, "not sticky")
	// Not found stays exec's error.
	if _, err := LookPath("no-such-tool"); !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("missing tool: %v", err)
	}
}
