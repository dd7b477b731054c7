package pvesim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// Init prepares n's simulated node under n.Root: the directory tree of a
// Proxmox host, a storage.cfg with the `local` dir storage, an empty
// .vmlist, and the catalogue of downloadable templates. With
// withTemplates a few of them are also placed in the local template cache,
// as if `pveam download` had been run. Init is idempotent: files that
// exist are kept (a storage.cfg edited by hand stays as it is), and a
// second node initialised on the same root joins the cluster.
//
// Init records the node's Proxmox VE version (n.Version, or
// pvecfg.DefaultVersion when unset) in VersionFile. A node that already
// has a version keeps it: asking for another one is an error, since its
// containers were created by that version.
func Init(n *Node, withTemplates bool) error {
	if err := checkRoot(n.Root); err != nil {
		return err
	}
	rec, err := n.recordedVersion()
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	switch {
	case rec == pvecfg.VersionUnset:
		if err := n.recordVersion(n.PVEVersion()); err != nil {
			return fmt.Errorf("init: recording the Proxmox VE version: %w", err)
		}
	case n.Version != pvecfg.VersionUnset && n.Version != rec:
		return fmt.Errorf("init: node '%s' was initialised as Proxmox VE %s (%s); it cannot become %s: use a new PVESIM_ROOT (or PVESIM_NODE)",
			n.Name, rec, n.VersionFile(), n.Version)
	}
	if n.Version, err = n.recordedVersion(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	dirs := []string{
		n.NodeLxcDir(),
		filepath.Join(n.EtcPve(), "nodes", n.Name, "qemu-server"),
		n.TemplateCacheDir(),
		filepath.Join(n.Root, "var/lib/vz/images"),
		n.LxcPath(),
		n.LockDir(),
		n.RunPveDir(),
		n.CatalogueDir(),
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	// /etc/pve/lxc points at the local node's folder (pmxcfs does this
	// per node; on a shared simulated root the first node keeps it).
	link := filepath.Join(n.EtcPve(), "lxc")
	if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
		if err := os.Symlink(filepath.Join("nodes", n.Name, "lxc"), link); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("init: %w", err)
		}
	}
	if err := writeIfMissing(n.StorageCfgPath(), []byte(defaultStorageCfg(n.Root))); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := writeIfMissing(n.VMListPath(), []byte(`{"version":1}`+"\n")); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := writeCatalogue(n.CatalogueDir()); err != nil {
		return fmt.Errorf("init: building the template catalogue: %w", err)
	}
	if withTemplates {
		for _, name := range defaultCachedTemplates {
			dst := filepath.Join(n.TemplateCacheDir(), name)
			if _, err := os.Stat(dst); err == nil {
				continue
			}
			if err := copyFileAtomic(filepath.Join(n.CatalogueDir(), name), dst); err != nil {
				return fmt.Errorf("init: %w", err)
			}
		}
	}
	// Unprivileged containers need every parent of their rootfs to be
	// traversable by the mapped root user.
	return makeTraversable(filepath.Join(n.Root, "var/lib/vz/images"), n.Root)
}

// defaultStorageCfg is the storage.cfg of a fresh single-disk install,
// with the `local` dir storage also allowed to hold container volumes.
func defaultStorageCfg(root string) string {
	return "dir: local\n" +
		"\tpath " + filepath.Join(root, "var/lib/vz") + "\n" +
		"\tcontent iso,vztmpl,backup,rootdir,images\n\n"
}

func writeIfMissing(name string, data []byte) error {
	if _, err := os.Stat(name); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return renameio.WriteFile(name, data, 0o644)
}

// checkRoot refuses a simulated root that is the real host's.
func checkRoot(root string) error {
	if root == "" {
		return errors.New("PVESIM_ROOT is not set; refusing to touch the host's /etc/pve")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if abs == "/" {
		return errors.New("PVESIM_ROOT must not be /; refusing to touch the host's /etc/pve")
	}
	return nil
}
