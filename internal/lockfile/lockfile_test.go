package lockfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestExclusiveWhileRemoving hammers one path from many goroutines (each
// Acquire opens its own descriptor, so flock treats them as separate
// holders, as separate processes) where every holder removes the file on
// release: no two holders are ever inside at once, and no file is left.
func TestExclusiveWhileRemoving(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	var inside, entered atomic.Int32
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				l, err := Acquire(context.Background(), path, time.Millisecond)
				if err != nil {
					errc <- err
					return
				}
				if n := inside.Add(1); n != 1 {
					errc <- errors.New("two holders at once")
				}
				entered.Add(1)
				inside.Add(-1)
				if err := l.UnlockRemove(); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if got := entered.Load(); got != 16*50 {
		t.Fatalf("%d critical sections, want %d", got, 16*50)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file left behind: %v", err)
	}
}

// TestUnlockKeepsFile: Unlock releases without removing; a second
// Acquire then succeeds on the same file; both releases are idempotent.
func TestUnlockKeepsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	l, err := Acquire(context.Background(), path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %o, want 600", fi.Mode().Perm())
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Unlock removed the file: %v", err)
	}
	l2, err := Acquire(context.Background(), path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.UnlockRemove(); err != nil {
		t.Fatal(err)
	}
	if err := l2.UnlockRemove(); err != nil {
		t.Fatalf("second UnlockRemove: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("UnlockRemove kept the file: %v", err)
	}
}

// TestAcquireTimesOut: a held lock makes Acquire return ctx's error when
// ctx expires.
func TestAcquireTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	held, err := Acquire(context.Background(), path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer held.UnlockRemove()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if l, err := Acquire(ctx, path, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		if l != nil {
			_ = l.Unlock()
		}
		t.Fatalf("Acquire on a held lock: %v, want deadline exceeded", err)
	}
}

// TestAcquireMissingDir fails (not hangs) when the directory is missing.
func TestAcquireMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "k.lock")
	if _, err := Acquire(context.Background(), path, time.Millisecond); err == nil {
		t.Fatal("Acquire in a missing directory succeeded")
	}
}

// TestTryAcquire: nil while another holds the lock, the lock once it is
// free, and never a lock on a file its holder unlinked.
func TestTryAcquire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	held, err := Acquire(context.Background(), path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := TryAcquire(path); l != nil || err != nil {
		t.Fatalf("TryAcquire while held = %v, %v; want nil, nil", l, err)
	}
	if err := held.UnlockRemove(); err != nil {
		t.Fatal(err)
	}
	l, err := TryAcquire(path)
	if l == nil || err != nil {
		t.Fatalf("TryAcquire when free = %v, %v", l, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the lock's file: %v", err)
	}
	if err := l.UnlockRemove(); err != nil {
		t.Fatal(err)
	}
}
