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

// defaultLockTimeout is Proxmox's config lock timeout (lock_config: 10 s).
const defaultLockTimeout = 10 * time.Second

// lockTimeout is the config lock timeout: PVESIM_LOCK_TIMEOUT_MS when set
// (tests shorten it), else Proxmox's 10 seconds.
func lockTimeout() time.Duration {
	if s := os.Getenv("PVESIM_LOCK_TIMEOUT_MS"); s != "" {
		if ms, err := strconv.Atoi(s); err == nil && ms >= 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return defaultLockTimeout
}

// flockWithin takes an exclusive flock on path, waiting at most timeout.
func flockWithin(path string, timeout time.Duration) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	fl := flock.New(path)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ok, err := fl.TryLockContext(ctx, 20*time.Millisecond)
	if ok {
		return fl, nil
	}
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		return nil, errLockTimeout
	}
	return nil, err
}

var errLockTimeout = errors.New("got timeout")

// lockConfig runs fn holding /run/lock/lxc/pve-config-<vmid>.lock, as
// PVE::AbstractConfig::lock_config does. The path in the timeout error is
// the one a real host prints (without PVESIM_ROOT), so callers parse the
// same text as on Proxmox.
func (n *Node) lockConfig(vmid int, fn func() error) error {
	fl, err := flockWithin(n.LockPath(vmid), lockTimeout())
	if err != nil {
		if errors.Is(err, errLockTimeout) {
			return dief("can't lock file '/run/lock/lxc/pve-config-%d.lock' - got timeout", vmid)
		}
		return dief("can't lock file '/run/lock/lxc/pve-config-%d.lock' - %v", vmid, err)
	}
	defer fl.Unlock()
	return fn()
}

// lockCluster runs fn holding the simulated cluster-wide lock that makes
// "is this vmid free? then take it" atomic across nodes sharing the root
// (pmxcfs gives real Proxmox the same guarantee).
func (n *Node) lockCluster(fn func() error) error {
	fl, err := flockWithin(filepath.Join(n.EtcPve(), ".pvesim-cluster.lock"), 60*time.Second)
	if err != nil {
		return fmt.Errorf("cluster lock: %w", err)
	}
	defer fl.Unlock()
	return fn()
}
