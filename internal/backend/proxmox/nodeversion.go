package proxmox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nexcage/nexcage/internal/atomicfile"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/trust"
)

// The node's Proxmox VE version decides what nexcage may write (raw keys
// an older node drops, options only 9.1 has; proxmox-pct.md §9). It is
// read with `pveversion -v` once and cached in nodeVersionFile, in the
// backend's directory of the state root (<root>/@proxmox-lxc, StateDir;
// the state root is node-local, /run/nexcage by default, so a reboot
// reads the version again). The cache is used while
//   - the programs that gave it are unchanged: the resolved path, size and
//     modification time of pveversion (pve-manager) and of pct
//     (pve-container; an upgrade of pve-container alone replaces
//     /usr/sbin/pct but not pveversion), and
//   - it is younger than nodeVersionMaxAge, against anything else.
//
// A node whose version cannot be read is treated as the oldest supported
// one (PVE 8.4): nexcage then uses no feature of a newer node and refuses
// the raw keys only newer nodes keep, which is correct on every node, and
// it warns once per create. A failure is never cached.
const (
	nodeVersionFile   = "node-version.json"
	nodeVersionMaxAge = 24 * time.Hour
	// pveversionTimeout bounds one `pveversion -v` (it takes about a
	// second on a real node).
	pveversionTimeout = time.Minute
)

// nodeVersionCache is the file's content.
type nodeVersionCache struct {
	Key     string          `json:"key"`
	Read    time.Time       `json:"read"`
	Version pve.NodeVersion `json:"version"`
}

func (b *Backend) pveversionPath() string {
	return orDefault(b.cfg.Proxmox.PveversionPath, "pveversion")
}

// programKey identifies the installed program name: its resolved path,
// size and modification time.
func programKey(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return name + ":missing"
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	fi, err := os.Stat(p)
	if err != nil {
		return p + ":missing"
	}
	return p + ":" + strconv.FormatInt(fi.Size(), 10) + ":" + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
}

// NodeVersion returns the node's Proxmox VE version, from the cache when
// it is still valid, else by running `pveversion -v` (and caching the
// answer). The error says why it could not be read; the version is then
// the zero value (unknown, treated as the oldest supported node).
func (b *Backend) NodeVersion(ctx context.Context) (pve.NodeVersion, error) {
	v, remember, err := b.nodeVersion(ctx)
	remember()
	return v, err
}

// nodeVersion is NodeVersion with the caching of a freshly read version
// left to the caller (remember; a no-op when there is nothing to cache).
// Create remembers only once it succeeded, so that a refused create
// leaves nothing in the state root.
func (b *Backend) nodeVersion(ctx context.Context) (pve.NodeVersion, func(), error) {
	nothing := func() {}
	key := programKey(b.pveversionPath()) + " " + programKey(b.pct.Path)
	var cache string
	if b.StateDir != "" {
		cache = filepath.Join(b.StateDir, nodeVersionFile)
		if data, err := os.ReadFile(cache); err == nil {
			var c nodeVersionCache
			if json.Unmarshal(data, &c) == nil && c.Key == key && c.Version.Known() &&
				time.Since(c.Read) < nodeVersionMaxAge && time.Since(c.Read) > -time.Minute {
				return c.Version, nothing, nil
			}
		}
	}
	v, err := b.readNodeVersion(ctx)
	if err != nil || cache == "" {
		return v, nothing, err
	}
	remember := func() {
		data, err := json.Marshal(nodeVersionCache{Key: key, Read: time.Now().UTC(), Version: v})
		if err == nil {
			err = os.MkdirAll(b.StateDir, 0o700)
		}
		if err == nil {
			err = atomicfile.Write(cache, append(data, '\n'), 0o600)
		}
		if err != nil {
			b.log.Debug("cannot cache the node version", "file", cache, "err", err)
		}
	}
	return v, remember, nil
}

// readNodeVersion runs `pveversion -v` and parses it.
func (b *Backend) readNodeVersion(ctx context.Context) (pve.NodeVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, pveversionTimeout)
	defer cancel()
	name := b.pveversionPath()
	// Run as root: refuse a program another user could have planted or
	// redirected. Create then goes on as with a missing pveversion (with
	// a warning); the program is never run.
	if _, err := trust.LookPath(name); errs.KindOf(err) == errs.KindInvalidConfig {
		return pve.NodeVersion{}, errs.Wrap(errs.KindInvalidConfig, err, "proxmox.pveversion_path %s: refusing to run it", name)
	}
	out, err := execOutput(ctx, name, "-v")
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return pve.NodeVersion{}, fmt.Errorf("%s not found (proxmox.pveversion_path)", name)
		}
		return pve.NodeVersion{}, fmt.Errorf("`%s -v` failed: %w", name, err)
	}
	v, err := pve.ParsePveversion(out)
	if err != nil {
		return pve.NodeVersion{}, fmt.Errorf("`%s -v`: %w", name, err)
	}
	return v, nil
}

// nodeVersionForCreate is nodeVersion for a create: an unreadable
// version is a warning, and the node is treated as the oldest supported
// one. remember caches a freshly read version (call it once the create
// succeeded).
func (b *Backend) nodeVersionForCreate(ctx context.Context, id string) (v pve.NodeVersion, remember func()) {
	v, remember, err := b.nodeVersion(ctx)
	if err != nil {
		b.log.Warn("cannot read the node's Proxmox VE version; treating it as the oldest supported (PVE 8.4): "+
			"no PVE 9 features, and bundle settings only newer nodes keep are refused",
			"id", id, "err", err, "fix", "make `pveversion -v` work or set proxmox.pveversion_path")
		return pve.NodeVersion{}, remember
	}
	return v, remember
}
