package pvesim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gofrs/flock"
)

// Proxmox's config lock timeouts: PVE::AbstractConfig::lock_config waits
// 10 s; create_and_lock_config, which writes the `lock: create` placeholder
// before the create worker starts, waits 5 s.
const (
	defaultLockTimeout = 10 * time.Second
	createLockTimeout  = 5 * time.Second
)

// lockTimeout is d, or PVESIM_LOCK_TIMEOUT_MS when set (tests shorten every
// config lock timeout with it).
func lockTimeout(d time.Duration) time.Duration {
	if s := os.Getenv("PVESIM_LOCK_TIMEOUT_MS"); s != "" {
		if ms, err := strconv.Atoi(s); err == nil && ms >= 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return d
}

// lockPollInterval is how often a contended flock is retried.
const lockPollInterval = 20 * time.Millisecond

var (
	errLockTimeout   = errors.New("got timeout")
	errLockInterrupt = errors.New("received interrupt")
)

// flockWithin takes an exclusive flock on path, waiting at most timeout.
// When the lock is busy it calls waiting once before it starts to wait
// (PVE::Tools::lock_file_full prints "trying to acquire lock..." there)
// and reports through the returned bool whether it had to wait. ctx ends
// the wait early (a worker that receives SIGTERM): errLockInterrupt.
func flockWithin(ctx context.Context, path string, timeout time.Duration, waiting func()) (*flock.Flock, bool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, err
	}
	fl := flock.New(path)
	if ok, err := fl.TryLock(); err != nil {
		return nil, false, err
	} else if ok {
		return fl, false, nil
	}
	if waiting != nil {
		waiting()
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := fl.TryLockContext(tctx, lockPollInterval)
	if ok {
		return fl, true, nil
	}
	if ctx.Err() != nil {
		return nil, true, errLockInterrupt
	}
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return nil, true, errLockTimeout
	}
	return nil, true, err
}

// lockConfig runs fn holding /run/lock/lxc/pve-config-<vmid>.lock, as
// PVE::AbstractConfig::lock_config does (10 s timeout).
func (n *Node) lockConfig(vmid int, fn func() error) error {
	return n.lockConfigFull(vmid, lockTimeout(defaultLockTimeout), fn)
}

// lockConfigFull is lock_config_full: flock on the config lock file with
// a timeout, as PVE::Tools::lock_file_full takes it. A busy lock prints
// "trying to acquire lock..." on the caller's stderr (inside a task
// worker that is pct's stdout), then " OK" once it is taken. The path in
// errors is the one a real host prints (without PVESIM_ROOT), so callers
// parse the same text as on Proxmox:
// `can't lock file '/run/lock/lxc/pve-config-<vmid>.lock' - got timeout`.
func (n *Node) lockConfigFull(vmid int, timeout time.Duration, fn func() error) error {
	fl, waited, err := flockWithin(n.ctx(), n.LockPath(vmid), timeout, func() {
		fmt.Fprint(n.Stderr, "trying to acquire lock...")
	})
	if err != nil {
		return dief("can't lock file '/run/lock/lxc/pve-config-%d.lock' - %v", vmid, err)
	}
	defer fl.Unlock()
	if waited {
		fmt.Fprint(n.Stderr, " OK\n")
	}
	return fn()
}

// lockCluster runs fn holding the simulated cluster-wide lock that makes
// "is this vmid free? then take it" atomic across nodes sharing the root
// (pmxcfs gives real Proxmox the same guarantee).
func (n *Node) lockCluster(fn func() error) error {
	fl, _, err := flockWithin(context.Background(), filepath.Join(n.EtcPve(), ".pvesim-cluster.lock"), 60*time.Second, nil)
	if err != nil {
		return fmt.Errorf("cluster lock: %w", err)
	}
	defer fl.Unlock()
	return fn()
}
