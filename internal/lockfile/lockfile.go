// Package lockfile is an exclusive cross-process lock on a file path
// (flock) whose file can be removed when the lock is released, so that
// lock files do not pile up, one per key, forever.
//
// Removing a lock file while others wait on it is safe: Acquire checks,
// after locking, that the file it locked is still the one at the path,
// and tries again when it is not (its holder unlinked it before
// releasing). A holder removes the file before releasing the lock, never
// after, so at most one process holds a lock on the file at the path.
package lockfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// Lock is a held lock.
type Lock struct {
	path string
	mu   sync.Mutex
	fl   *flock.Flock
}

// Acquire locks path (creating it with mode 0600), polling every retry
// until it is free or ctx is done. On ctx's expiry it returns an error
// that wraps ctx.Err(); the caller decides what to tell the user.
func Acquire(ctx context.Context, path string, retry time.Duration) (*Lock, error) {
	for {
		fl := flock.New(path, flock.SetPermissions(0o600))
		ok, err := fl.TryLockContext(ctx, retry)
		if err != nil || !ok {
			_ = fl.Close()
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			if err == nil {
				err = errors.New("lock not acquired")
			}
			return nil, err
		}
		same, err := sameFile(fl, path)
		if err != nil {
			_ = fl.Close()
			return nil, err
		}
		if same {
			return &Lock{path: path, fl: fl}, nil
		}
		// The file we locked was unlinked by its previous holder: lock
		// the one at the path now.
		_ = fl.Close()
	}
}

// TryAcquire locks path if nobody holds it, without waiting; it returns
// nil (and no error) when another holder has it.
func TryAcquire(path string) (*Lock, error) {
	for {
		fl := flock.New(path, flock.SetPermissions(0o600))
		ok, err := fl.TryLock()
		if err != nil || !ok {
			_ = fl.Close()
			return nil, err
		}
		same, err := sameFile(fl, path)
		if err != nil {
			_ = fl.Close()
			return nil, err
		}
		if same {
			return &Lock{path: path, fl: fl}, nil
		}
		_ = fl.Close()
	}
}

// sameFile reports whether the file locked by fl is still the one at path.
func sameFile(fl *flock.Flock, path string) (bool, error) {
	held, err := fl.Stat()
	if err != nil {
		return false, err
	}
	cur, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, cur), nil
}

// Path is the locked file's path.
func (l *Lock) Path() string { return l.path }

// Unlock releases the lock and keeps the file. It is idempotent.
func (l *Lock) Unlock() error { return l.release(false) }

// UnlockRemove removes the lock file, then releases the lock. Use it when
// the lock is unlikely to be needed again soon (its key is gone); a
// missing file is not an error. It is idempotent.
func (l *Lock) UnlockRemove() error { return l.release(true) }

func (l *Lock) release(remove bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fl == nil {
		return nil
	}
	var rmErr error
	if remove {
		if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			rmErr = err
		}
	}
	err := l.fl.Close()
	l.fl = nil
	if err == nil {
		err = rmErr
	}
	return err
}
