package template

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/nexcage/nexcage/internal/errs"
)

// PackedPrefix starts the file name of every template nexcage places in a
// template cache, so they are recognisable (and prunable).
const PackedPrefix = "nexcage-"

// refsDir holds, inside a template cache, the lock and the reference
// files recording which container uses which template:
// <cache>/.nexcage/<file>.refs/<container id>.
const refsDir = ".nexcage"

// Cache is the template cache directory of one directory-backed storage
// (<path>/template/cache).
type Cache struct {
	Storage string // storage id, e.g. "local"
	Dir     string // absolute cache directory
}

// VolID returns the volume id of file name in this cache.
func (c *Cache) VolID(name string) string { return c.Storage + ":vztmpl/" + name }

func (c *Cache) lock(ctx context.Context) (*flock.Flock, error) {
	if err := privateDir(filepath.Join(c.Dir, refsDir)); err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot prepare template cache %s", c.Dir)
	}
	l := flock.New(filepath.Join(c.Dir, refsDir, "lock"))
	ok, err := l.TryLockContext(ctx, 20*time.Millisecond)
	if err != nil || !ok {
		if err == nil {
			err = ctx.Err()
		}
		return nil, errs.Wrap(errs.KindLocked, err, "cannot lock template cache %s", c.Dir)
	}
	return l, nil
}

func checkRef(ref string) error {
	if ref == "" || strings.ContainsAny(ref, "/\x00") || ref == "." || ref == ".." {
		return errs.New(errs.KindInternal, "invalid template user %q", ref)
	}
	return nil
}

func (c *Cache) refDir(name string) string { return filepath.Join(c.Dir, refsDir, name+".refs") }

func (c *Cache) addRef(name, ref string) error {
	d := c.refDir(name)
	if err := privateDir(d); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot record template use")
	}
	if err := os.WriteFile(filepath.Join(d, ref), nil, FileMode); err != nil {
		return errs.Wrap(errs.KindTemplate, err, "cannot record template use")
	}
	return nil
}

// dropRef removes ref and returns how many users are left.
func (c *Cache) dropRef(name, ref string) (int, error) {
	d := c.refDir(name)
	if err := os.Remove(filepath.Join(d, ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, errs.Wrap(errs.KindTemplate, err, "cannot release template %s", name)
	}
	left, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, errs.Wrap(errs.KindTemplate, err, "cannot read users of template %s", name)
	}
	if len(left) == 0 {
		_ = os.Remove(d)
	}
	return len(left), nil
}

// Users returns the containers recorded as using template name.
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
