package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/atomicfile"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/nexcage/nexcage/internal/lockfile"
	"github.com/nexcage/nexcage/internal/trust"
)

// MaxIDLen bounds a container id in bytes. An id is a directory name under
// the root and, with ".lock" appended, a file name, so it must fit the
// 255-byte NAME_MAX of Linux file systems.
const MaxIDLen = 250

// StateFile is the name of the state file inside a container's directory.
const StateFile = "state.json"

// maxStateSize bounds state.json so a damaged file cannot exhaust memory.
const maxStateSize = 4 << 20

// lockRetry is how often Lock polls a lock held by someone else.
const lockRetry = 10 * time.Millisecond

// idPattern is runc's container id syntax; RE2's \w is ASCII only.
var idPattern = lazyre.New(`^[\w+\-.]+$`)

// ValidateID checks that id is a valid container id: runc's syntax
// ^[\w+\-.]+$ (ASCII), not "." or "..", and at most MaxIDLen bytes. Every
// path built from an id is built only after this check, so an id can never
// name anything outside the store's root.
func ValidateID(id string) error {
	bad := func(why string) error {
		return errs.New(errs.KindUsage, "invalid container ID format: %q: %s", id, why).
			WithHint("use 1 to %d characters from A-Z a-z 0-9 _ + - .", MaxIDLen)
	}
	switch {
	case id == "":
		return bad("empty")
	case len(id) > MaxIDLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxIDLen))
	case id == "." || id == "..":
		return bad("reserved name")
	case !idPattern.MatchString(id):
		return bad("contains characters other than letters, digits, _ + - .")
	}
	return nil
}

// Store is the on-disk record of containers under one root directory:
//
//	<root>/<id>/state.json   the container's state (dir 0700, file 0600)
//	<root>/@locks/<id>.lock  the container's lock file
//	<root>/@<backend>/       a backend's private directory (BackendRoot)
//
// Names starting with "@" cannot be container ids, so they never collide.
// A Store is safe for concurrent use by goroutines and processes.
type Store struct {
	root string
}

// NewStore opens the store at root, creating root with mode 0700 when it
// does not exist. An existing root keeps its mode.
func NewStore(root string) (*Store, error) {
	if root == "" {
		return nil, errs.New(errs.KindUsage, "state root is empty").WithHint("pass --root <dir>")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "state root %s", root)
	}
	// The state decides what nexcage (as root) runs and deletes: no other
	// user may be able to change it, or to swap a directory on the way.
	if err := trust.Creatable(abs); err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "state root %s", abs)
	}
	fi, err := os.Stat(abs)
	switch {
	case err == nil && !fi.IsDir():
		return nil, errs.New(errs.KindUsage, "state root %s is not a directory", abs).
			WithHint("pass a directory with --root")
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, errs.Wrap(errs.KindInternal, err, "create state root %s", abs)
		}
		// Someone else may have made an entry on the way between the
		// check and MkdirAll (which takes an existing directory).
		if err := trust.File(abs); err != nil {
			return nil, errs.Wrap(errs.KindInvalidConfig, err, "state root %s", abs)
		}
		// MkdirAll honours the umask; make the mode exact.
		if err := os.Chmod(abs, 0o700); err != nil {
			return nil, errs.Wrap(errs.KindInternal, err, "create state root %s", abs)
		}
	case err != nil:
		return nil, errs.Wrap(errs.KindInternal, err, "state root %s", abs)
	}
	return &Store{root: abs}, nil
}

// BackendRoot returns <root>/@<name>, the directory a backend may use for
// its own files (for example as runc's --root). It is not created here.
func (s *Store) BackendRoot(name string) string {
	return filepath.Join(s.root, "@"+name)
}

// Dir returns the container's directory <root>/<id> after validating id.
// It goes with the record (Remove), so a backend keeps the temporary
// files of a create there (runtime.CreateOptions.StateDir).
func (s *Store) Dir(id string) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", err
	}
	return filepath.Join(s.root, id), nil
}

// RuntimeDir returns <root>/@<name>/<id>: the state directory runc or crun
// (run with BackendRoot(name) as --root) keeps for container id. id must
// be valid.
func (s *Store) RuntimeDir(name, id string) string {
	return filepath.Join(s.BackendRoot(name), id)
}

// RuntimeOwner returns the first of names (runtime backends, "runc",
// "crun") whose runtime keeps a state directory for id, or "". Containers
// of those runtimes need no record of nexcage's own: the runtime's state
// directory says which one has the id (see internal/fastpath).
func (s *Store) RuntimeOwner(id string, names ...string) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", err
	}
	for _, n := range names {
		_, err := os.Lstat(s.RuntimeDir(n, id))
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", errs.Wrap(errs.KindInternal, err, "look up container %s", id)
		}
	}
	return "", nil
}

// RuntimeIDs lists the container ids runtime name keeps a state
// directory for under BackendRoot(name) (none when it has no root yet).
func (s *Store) RuntimeIDs(name string) ([]string, error) {
	entries, err := os.ReadDir(s.BackendRoot(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "list %s containers", name)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

func (s *Store) lockDir() string { return filepath.Join(s.root, "@locks") }

func (s *Store) lockPath(id string) string {
	return filepath.Join(s.lockDir(), id+".lock")
}

// HasLockFile tells whether id has a lock file: one exists while a
// process holds or waits for the id's lock, and after one that held it
// crashed, until the next Unlock.
func (s *Store) HasLockFile(id string) bool {
	_, err := os.Lstat(s.lockPath(id))
	return err == nil
}

// CreateLogPath is the private log file a create of id may give the
// runtime (<root>/@locks/<id>.log) while it holds the id's lock. Unlock
// removes it with the lock file, so one a crashed create left goes with
// the next delete of the id.
func (s *Store) CreateLogPath(id string) string {
	return filepath.Join(s.lockDir(), id+".log")
}

func (s *Store) statePath(id string) string {
	return filepath.Join(s.root, id, StateFile)
}

// Lock is an exclusive lock on one container id, held across processes.
type Lock struct {
	store *Store
	id    string
	l     *lockfile.Lock
}

// Lock takes the exclusive lock of id, waiting until it is free or ctx is
// done. Give ctx a deadline to bound the wait; on expiry the error is
// KindLocked. The lock file may be removed by Unlock while others wait;
// Lock notices that it locked a file no longer at the lock path and tries
// again, so the lock stays exclusive (internal/lockfile).
//
// Lock files live in <root>/@locks; Unlock deletes a container's lock file
// once the container has no directory, so none remain after delete.
func (s *Store) Lock(ctx context.Context, id string) (*Lock, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.lockDir(), 0o700); err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "lock container %s", id)
	}
	path := s.lockPath(id)
	l, err := lockfile.Acquire(ctx, path, lockRetry)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, errs.Wrap(errs.KindLocked, ctxErr, "container %s is locked by another nexcage process", id).
				WithHint("wait for the other operation to finish; if none is running, retry (locks are released when a process exits)")
		}
		return nil, errs.Wrap(errs.KindInternal, err, "lock container %s (%s)", id, path)
	}
	return &Lock{store: s, id: id, l: l}, nil
}

// Unlock releases the lock. When the container has no directory (it was
// removed, or never created) the lock file and a create's private log
// (CreateLogPath) are deleted first, so none pile up for containers that
// do not exist. Unlock is idempotent.
func (l *Lock) Unlock() error {
	var err error
	if _, statErr := os.Lstat(filepath.Join(l.store.root, l.id)); errors.Is(statErr, fs.ErrNotExist) {
		if rerr := os.Remove(l.store.CreateLogPath(l.id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
		if uerr := l.l.UnlockRemove(); err == nil {
			err = uerr
		}
	} else {
		err = l.l.Unlock()
	}
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "unlock container %s", l.id)
	}
	return nil
}

// Load reads the state of id. A missing container is KindNotFound; an
// unreadable or damaged state file is KindState naming the file.
func (s *Store) Load(id string) (*Container, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(s.root, id)
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound(id)
		}
		return nil, errs.Wrap(errs.KindInternal, err, "read state of container %s", id)
	}
	return s.read(id)
}

func notFound(id string) error {
	return errs.New(errs.KindNotFound, "container %s does not exist", id).
		WithHint("see `nexcage list` for existing containers")
}

// read parses <root>/<id>/state.json; id is already valid.
func (s *Store) read(id string) (*Container, error) {
	path := s.statePath(id)
	corrupt := func(err error, why string) error {
		return errs.Wrap(errs.KindState, err, "state of container %s is damaged: %s: %s", id, path, why).
			WithHint("run `nexcage delete --force %s` to remove it", id)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, corrupt(nil, "file missing")
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "read state of container %s", id)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "read state of container %s", id)
	}
	if fi.Size() > maxStateSize {
		return nil, corrupt(nil, fmt.Sprintf("larger than %d bytes", maxStateSize))
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "read state of container %s", id)
	}
	var c Container
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, corrupt(nil, "invalid JSON: "+err.Error())
	}
	if c.ID != id {
		return nil, corrupt(nil, fmt.Sprintf("records id %q", c.ID))
	}
	return &c, nil
}

// Save writes c atomically to <root>/<c.ID>/state.json (dir 0700, file
// 0600): readers see the old or the new state, never a mix. The caller
// holds c.ID's lock.
func (s *Store) Save(c *Container) error {
	if c == nil {
		return errs.New(errs.KindInternal, "save state: nil container")
	}
	if err := ValidateID(c.ID); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "encode state of container %s", c.ID)
	}
	data = append(data, '\n')
	dir := filepath.Join(s.root, c.ID)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return errs.Wrap(errs.KindInternal, err, "save state of container %s", c.ID)
	}
	if err := atomicfile.Write(s.statePath(c.ID), data, 0o600); err != nil {
		return errs.Wrap(errs.KindInternal, err, "save state of container %s", c.ID)
	}
	return nil
}

// Exists reports whether a container directory for id exists (even one
// whose state file is damaged).
func (s *Store) Exists(id string) (bool, error) {
	if err := ValidateID(id); err != nil {
		return false, err
	}
	_, err := os.Lstat(filepath.Join(s.root, id))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, errs.Wrap(errs.KindInternal, err, "look up container %s", id)
}

// Remove deletes the container's directory; a missing container is not an
// error. The caller holds id's lock: its Unlock then deletes the lock file
// too (see Lock.Unlock). Deleting the lock file only at Unlock keeps the
// lock exclusive until the very end of the caller's critical section.
func (s *Store) Remove(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(s.root, id)); err != nil {
		return errs.Wrap(errs.KindInternal, err, "remove state of container %s", id)
	}
	return nil
}

// List returns every container in the store, sorted by id. It takes no
// locks and runs no commands, only reads files. An entry whose state file
// is damaged is returned as {ID, Status: Unknown} with no Backend, so that
// it shows up (and can be removed with `delete --force`) instead of
// breaking the listing. Entries removed while listing are skipped; names
// that are not valid ids (such as "@locks") are ignored.
func (s *Store) List() ([]*Container, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, errs.Wrap(errs.KindInternal, err, "list containers in %s", s.root)
	}
	out := make([]*Container, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "@") || !e.IsDir() || ValidateID(name) != nil {
			continue
		}
		c, err := s.read(name)
		if err != nil {
			if _, statErr := os.Lstat(filepath.Join(s.root, name)); errors.Is(statErr, fs.ErrNotExist) {
				continue // deleted while we were listing
			}
			c = &Container{ID: name, Status: Unknown}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
