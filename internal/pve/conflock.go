package pve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/nexcage/nexcage/internal/trust"
)

// DefaultLockDir is where Proxmox keeps the per-container config locks
// (PVE::LXC::Config's lock directory).
const DefaultLockDir = "/run/lock/lxc"

// DefaultConfigLockWait is how long Proxmox's own writers wait for a
// config lock (lock_config's 10 seconds).
const DefaultConfigLockWait = 10 * time.Second

// ConfigLockPath is the file whose flock guards <vmid>.conf:
// <lockDir>/pve-config-<vmid>.lock.
func ConfigLockPath(lockDir string, vmid int) string {
	return filepath.Join(lockDir, "pve-config-"+strconv.Itoa(vmid)+".lock")
}

// ConfigLock is Proxmox's config lock of one container, held by us.
type ConfigLock struct {
	fl   *flock.Flock
	path string
}

// LockConfig takes the flock every writer of <vmid>.conf takes (pct set,
// the GUI, backup jobs, snapshots, a running pct create's worker), waiting
// at most wait or until ctx ends. The lock file is never removed: others
// may be waiting on it, as Proxmox never removes it either. A wait that
// runs out is an errs.KindLocked error naming the lock file.
func LockConfig(ctx context.Context, lockDir string, vmid int, wait time.Duration) (*ConfigLock, error) {
	if err := CheckVMID(vmid); err != nil {
		return nil, err
	}
	path := ConfigLockPath(lockDir, vmid)
	// Another user who could replace the lock file would break the
	// exclusion (/run/lock is world-writable with the sticky bit): the
	// directory must be root's, checked before and after it is made.
	if err := trust.Creatable(lockDir); err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "proxmox.lock_dir %s", lockDir)
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, errs.Wrap(errs.KindBackend, err, "cannot create Proxmox's lock directory %s", lockDir).
			WithHint("set proxmox.lock_dir to Proxmox's lock directory (/run/lock/lxc)")
	}
	if err := trust.File(lockDir); err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "proxmox.lock_dir %s", lockDir)
	}
	fl := flock.New(path, flock.SetPermissions(0o644))
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ok, err := fl.TryLockContext(lctx, 20*time.Millisecond)
	if ok && err == nil {
		return &ConfigLock{fl: fl, path: path}, nil
	}
	_ = fl.Close()
	switch {
	case ctx.Err() != nil:
		return nil, errs.Wrap(errs.KindInternal, ctx.Err(), "interrupted while waiting for the config lock of CT %d (%s)", vmid, path)
	case lctx.Err() != nil || err == nil:
		return nil, errs.New(errs.KindLocked, "can't lock file '%s' - got timeout after %v (CT %d's config is being changed)", path, wait, vmid).
			WithHint("a pct command, backup or snapshot of CT %d may be running; check `ps -ef | grep %d` and retry when it is done", vmid, vmid)
	default:
		return nil, errs.Wrap(errs.KindBackend, err, "cannot lock %s", path)
	}
}

// Unlock releases the lock (the file stays, as with Proxmox).
func (l *ConfigLock) Unlock() error {
	if l == nil || l.fl == nil {
		return nil
	}
	return l.fl.Unlock()
}

// AppendRawLocked adds raw lxc lines to the container config at path the
// way Proxmox's rules for a writer of that file require: under the
// config lock (LockConfig, at most wait), from a fresh read of the file,
// refused while a `lock:` is set, as text after the existing main section
// (Proxmox's own lines stay byte for byte), and by an atomic replace
// (temp file in the same directory, then rename) that keeps the file's
// mode.
func AppendRawLocked(ctx context.Context, lockDir, path string, vmid int, raw []RawLine, wait time.Duration) error {
	if len(raw) == 0 {
		return nil
	}
	l, err := LockConfig(ctx, lockDir, vmid, wait)
	if err != nil {
		return err
	}
	defer func() { _ = l.Unlock() }()
	fi, err := os.Stat(path)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot read the config of CT %d", vmid)
	}
	if !fi.Mode().IsRegular() {
		return errs.New(errs.KindBackend, "the config of CT %d (%s) is not a regular file", vmid, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot read the config of CT %d", vmid)
	}
	conf, _, err := ParseConfig(data)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot parse the config of CT %d", vmid)
	}
	if lock, ok := conf.Get("lock"); ok {
		return LockedError(vmid, lock)
	}
	out, err := AppendRawText(data, raw)
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "CT %d", vmid)
	}
	return writeAtomic(path, out, fi.Mode().Perm())
}

// LockedError is the refusal for a config carrying `lock: <name>`, in
// Proxmox's words (check_lock: `CT <vmid> is locked (<name>)`).
func LockedError(vmid int, lock string) error {
	return errs.New(errs.KindLocked, "CT %d is locked (%s)", vmid, lock).
		WithHint("wait for the %s of CT %d to finish; `pct unlock %d` only if nothing is working on it", lock, vmid, vmid)
}

// writeAtomic replaces path with data through a temp file in the same
// directory (pmxcfs supports rename) with the given mode.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	// WithTempDir: without it renameio first probes $TMPDIR with two more
	// files (one of them in /etc/pve, replicated cluster-wide) and, where
	// both are on one file system (pvesim), writes the temp file there.
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(mode), renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot write %s", path)
	}
	defer func() { _ = pf.Cleanup() }()
	if _, err := pf.Write(data); err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot write %s", path)
	}
	// Chmod, not the umask-filtered create mode: the mode stays exactly.
	if err := pf.Chmod(mode); err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot write %s", path)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return errs.Wrap(errs.KindBackend, err, "cannot replace %s", path)
	}
	return nil
}

// AppendRawText returns the config text data with raw lines added at the
// end of its main section: before the first `[pve:pending]` or snapshot
// section and before the blank lines that separate it from that section.
// Every existing byte is kept, nothing is re-ordered or re-encoded. Keys
// must be raw keys Proxmox accepts; values must fit on one line.
func AppendRawText(data []byte, raw []RawLine) ([]byte, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, errors.New("unable to parse config: file contains a NUL byte")
	}
	var add strings.Builder
	for _, r := range raw {
		if err := CheckRawKey(r.Key); err != nil {
			return nil, err
		}
		if err := checkLineValue(r.Key, r.Value); err != nil {
			return nil, err
		}
		add.WriteString(r.Key + ": " + r.Value + "\n")
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	end := len(lines) // first line of the sections
	for i, l := range lines {
		if reSection.MatchString(strings.TrimRight(string(l), "\n")) {
			end = i
			break
		}
	}
	body := end // first of the blank lines before the sections
	for body > 0 && len(bytes.TrimSpace(lines[body-1])) == 0 {
		body--
	}
	var out bytes.Buffer
	for _, l := range lines[:body] {
		out.Write(l)
	}
	if body > 0 && !bytes.HasSuffix(lines[body-1], []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteString(add.String())
	for _, l := range lines[body:] {
		out.Write(l)
	}
	return out.Bytes(), nil
}

// OwnerRefPrefix starts the description line that carries the secret
// reference of the nexcage container that created a CT.
const OwnerRefPrefix = "nexcage-ref="

var reOwnerRef = lazyre.New(`(?:^|[\s;])nexcage-ref=([0-9a-f]{32})(?:$|[\s;])`)

// OwnerRef returns the nexcage reference written in a config's
// description (OwnerRefPrefix followed by 32 hex digits), or "".
func OwnerRef(description string) string {
	if m := reOwnerRef.FindStringSubmatch(description); m != nil {
		return m[1]
	}
	return ""
}

// FormatOwnerRef is the description text carrying ref.
func FormatOwnerRef(ref string) string { return fmt.Sprintf("%s%s", OwnerRefPrefix, ref) }
