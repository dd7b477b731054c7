package proxmox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
)

// Ownership: which CT is ours.
//
// A VMID recorded in a container's state is not proof that the CT at
// that VMID is the one this container created: another creator (a person,
// another node, another nexcage state root) can take the VMID between
// our pick and pct's registration, and a CT destroyed behind our back can
// be replaced by someone else's under the same VMID. Hostnames and tags
// prove nothing either (two ids can map to one hostname, and anyone can
// tag a CT "nexcage").
//
// So create writes a random 128-bit reference of the container
// (DataOwnerRef, recorded in the state before pct create runs) into the
// CT's description as `nexcage-ref=<hex>`, and a CT is ours when, and only
// when, its description carries that reference.
//
// The one exception is a config that holds nothing but `lock: create`:
// pct create registered the VMID but was killed before it wrote the full
// config (that write carries the description). Such a CT is taken as ours
// when all of these hold:
//   - the container's record is still "creating" and names that VMID:
//     the VMID was picked free under the node's VMID turn (vmidLock, so no
//     other nexcage on this node could pick it) and checkpointed before our
//     pct create ran;
//   - we hold Proxmox's config lock while we look at it: a create still in
//     flight (ours or anyone's) holds that lock until it ends, and a
//     finished create of anyone else's leaves a full config, without our
//     reference.
// What is left is a creator outside nexcage that took the same VMID in
// the instant between our pick and our registration and was itself killed
// before writing its config: its CT holds no data, and destroying it frees
// its disks rather than leaking them.

// ownerRefBytes is the size of the reference (128 bits).
const ownerRefBytes = 16

// newOwnerRef returns a fresh random reference (32 hex digits).
func newOwnerRef() string {
	r := make([]byte, ownerRefBytes)
	if _, err := rand.Read(r); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(r)
}

// withOwnerRef returns opts with the description carrying ref (appended
// to a description the translation set, if any).
func withOwnerRef(opts []pve.Option, ref string) []pve.Option {
	out := make([]pve.Option, 0, len(opts)+1)
	desc := pve.FormatOwnerRef(ref)
	found := false
	for _, o := range opts {
		if o.Name == "description" {
			found = true
			if o.Value != "" {
				o.Value += "; " + desc
			} else {
				o.Value = desc
			}
		}
		out = append(out, o)
	}
	if !found {
		out = append(out, pve.Option{Name: "description", Value: desc})
	}
	return out
}

// owner is what the config at a VMID is to one container.
type owner int

const (
	ownerNone   owner = iota // no config: never registered, or gone
	ownerUs                  // its description carries our reference
	ownerBare                // nothing but `lock: create` (see above)
	ownerOthers              // anything else
)

// ownerAt reads the config of vmid on node and tells whose it is for c.
func (b *Backend) ownerAt(c *state.Container, vmid int) (owner, *pve.Config, error) {
	data, err := os.ReadFile(b.confPath(b.nodeOf(c), vmid))
	if errors.Is(err, fs.ErrNotExist) {
		return ownerNone, nil, nil
	}
	if err != nil {
		return ownerNone, nil, errs.Wrap(errs.KindBackend, err, "container %s: cannot read the config of CT %d", c.ID, vmid)
	}
	conf, _, err := pve.ParseConfig(data)
	if err != nil {
		return ownerNone, nil, errs.Wrap(errs.KindBackend, err, "container %s: cannot parse the config of CT %d", c.ID, vmid)
	}
	if ref := c.Data[DataOwnerRef]; ref != "" && pve.OwnerRef(conf.Description) == ref {
		return ownerUs, conf, nil
	}
	if lock, _ := conf.Get("lock"); lock == "create" && len(conf.Options) == 1 &&
		conf.Description == "" && len(conf.Raw) == 0 && len(conf.Env) == 0 && conf.Sections == "" {
		return ownerBare, conf, nil
	}
	return ownerOthers, conf, nil
}

// stillOurs tells whether the CT at vmid is still the one c created. A
// record from a nexcage without references (no DataOwnerRef) is trusted.
func (b *Backend) stillOurs(c *state.Container, vmid int) bool {
	if c.Data[DataOwnerRef] == "" {
		return true
	}
	o, conf, err := b.ownerAt(c, vmid)
	if err != nil || o == ownerUs || o == ownerNone {
		return true // unreadable: let pct tell; gone: pct destroy says so
	}
	host, _ := conf.Get("hostname")
	b.log.Warn("the VMID of this container now holds a CT that is not its own (no matching nexcage-ref in its description); leaving it alone",
		"id", c.ID, "vmid", vmid, "hostname", host)
	return false
}

// unfinishedWait bounds the wait for the config lock of a VMID whose
// create was interrupted: a pct create worker still running holds it
// until it ends, which takes at most about one pct call.
func (b *Backend) unfinishedWait() time.Duration {
	w := b.pct.Timeout + b.pct.KillGrace
	if w < b.configLockWait() {
		w = b.configLockWait()
	}
	return w
}

func (b *Backend) configLockWait() time.Duration {
	if b.ConfigLockWait > 0 {
		return b.ConfigLockWait
	}
	return pve.DefaultConfigLockWait
}

// claimUnfinished decides what delete does with the VMID of a container
// whose create never finished. It waits (bounded) for Proxmox's config
// lock, so that no create is in flight, and reports whether the CT there
// is ours (by reference, or a bare `lock: create`: see the rule above).
// With force it also clears that stale `create` lock (pct unlock), which
// pct destroy would refuse. A CT that is not ours is left alone.
func (b *Backend) claimUnfinished(ctx context.Context, c *state.Container, vmid int, force bool) (bool, error) {
	l, err := pve.LockConfig(ctx, b.lockDir, vmid, b.unfinishedWait())
	if err != nil {
		return false, addContainer(c.ID, err)
	}
	o, conf, err := b.ownerAt(c, vmid)
	// Released before pct runs: pct takes the same lock.
	_ = l.Unlock()
	if err != nil {
		return false, err
	}
	switch o {
	case ownerNone:
		return false, nil // pct never registered it, or rolled back
	case ownerOthers:
		host, _ := conf.Get("hostname")
		b.log.Warn("the VMID recorded for an unfinished create holds a CT that is not this container's (no matching nexcage-ref); leaving it alone",
			"id", c.ID, "vmid", vmid, "hostname", host)
		return false, nil
	}
	lock, _ := conf.Get("lock")
	if lock != "create" {
		return true, nil
	}
	if !force {
		return false, errs.New(errs.KindLocked, "container %s: its create was interrupted and CT %d still holds the create lock", c.ID, vmid).
			WithHint("run `nexcage delete --force %s` to clear the lock and destroy what the create left", c.ID)
	}
	b.log.Warn("clearing the create lock left by an interrupted pct create", "id", c.ID, "vmid", vmid)
	if err := b.pct.Unlock(ctx, vmid); err != nil && !isReason(err, pve.ReasonNoConfig) {
		return false, fmt.Errorf("container %s: %w", c.ID, err)
	}
	return true, nil
}

// removeInterrupted frees what a pct create that timed out or was
// interrupted left at vmid, if it is ours, on a context of its own (the
// create's may be cancelled). pct got SIGTERM and, on a real node, its
// worker is rolling back while it holds the config lock: waiting for the
// lock waits for that.
func (b *Backend) removeInterrupted(c *state.Container, vmid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.unfinishedWait()+b.pct.Timeout+time.Minute)
	defer cancel()
	mine, err := b.claimUnfinished(ctx, c, vmid, true)
	if err != nil || !mine {
		return err
	}
	return b.destroyUnfinished(ctx, c, vmid)
}

// destroyUnfinished unmounts a rootfs an interrupted create left mounted
// and destroys the CT with everything of its VMID.
func (b *Backend) destroyUnfinished(ctx context.Context, c *state.Container, vmid int) error {
	if err := b.unmountLeftRootfs(vmid); err != nil {
		return addContainer(c.ID, err)
	}
	if err := b.pct.Destroy(ctx, vmid, destroyOpts); err != nil && !isReason(err, pve.ReasonNoConfig) {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	return nil
}

// destroyOwn removes the CT this create made (the undo of pct create),
// on a context of its own; it checks the reference first.
func (b *Backend) destroyOwn(c *state.Container, vmid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.pct.Timeout+b.pct.KillGrace+time.Minute)
	defer cancel()
	if !b.stillOurs(c, vmid) {
		return nil
	}
	o := destroyOpts
	o.Force = true // the init helper may be running already
	if err := b.pct.Destroy(ctx, vmid, o); err != nil && !isReason(err, pve.ReasonNoConfig) {
		b.log.Error("rollback: cannot destroy Proxmox container", "id", c.ID, "vmid", vmid, "err", err)
		return fmt.Errorf("container %s: rollback: %w", c.ID, err)
	}
	return nil
}

// unmountLeftRootfs detaches what an interrupted pct create left mounted
// at <lxc_path>/<vmid>/rootfs (the rootfs, with the mount points mounted
// below it), deepest first. Nothing else is touched: only mounts whose
// mount point is that directory or below it.
func (b *Backend) unmountLeftRootfs(vmid int) error {
	if err := pve.CheckVMID(vmid); err != nil {
		return err
	}
	lxc := b.lxcPath
	if real, err := filepath.EvalSymlinks(lxc); err == nil {
		lxc = real
	}
	root := filepath.Join(lxc, strconv.Itoa(vmid), "rootfs")
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != root && !strings.HasPrefix(m.Mountpoint, root+"/"), false
	})
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot read the mount table")
	}
	var points []string
	for _, m := range mounts {
		points = append(points, m.Mountpoint)
	}
	// Deepest first; a path mounted twice is unmounted twice.
	sort.SliceStable(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		b.log.Warn("unmounting what an interrupted create left mounted", "vmid", vmid, "mountpoint", p)
		err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return errs.Wrap(errs.KindBackend, err, "cannot unmount %s left by an interrupted create of CT %d", p, vmid).
				WithHint("unmount it by hand (umount -l %s), then retry", p)
		}
	}
	return nil
}

// incomplete is the error of a create whose undo did not finish: the
// record stays (runtime.ErrCleanupIncomplete) for delete --force.
func incomplete(id string, cause error, undo []error) error {
	return errs.Wrap(errs.KindOf(cause), errors.Join(append([]error{cause, runtime.ErrCleanupIncomplete}, undo...)...),
		"container %s: create failed and not everything could be undone", id).
		WithHint("run `nexcage delete --force %s` to free what is left", id)
}
