// Package pvesim is the logic of the simulated Proxmox node: pct, pveam and
// pvesh as described in docs/PVESIM.md, backed by real LXC. It uses
// internal/pve only for file formats, never nexcage's backend.
package pvesim

import (
	"io"
	"path/filepath"
	"strconv"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// Node is one simulated Proxmox node living under Root (PVESIM_ROOT).
type Node struct {
	Root string // simulated filesystem root; never "/"
	Name string // node name (PVESIM_NODE, default "pve")
	// Version is the Proxmox VE release simulated (see PVEVersion);
	// VersionUnset means pvecfg.DefaultVersion.
	Version pvecfg.Version
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// EtcPve is the simulated /etc/pve (shared by all nodes of one Root).
func (n *Node) EtcPve() string { return filepath.Join(n.Root, "etc/pve") }

// StorageCfgPath is /etc/pve/storage.cfg.
func (n *Node) StorageCfgPath() string { return filepath.Join(n.EtcPve(), "storage.cfg") }

// VMListPath is /etc/pve/.vmlist.
func (n *Node) VMListPath() string { return filepath.Join(n.EtcPve(), ".vmlist") }

// NodeLxcDir is /etc/pve/nodes/<node>/lxc.
func (n *Node) NodeLxcDir() string { return n.NodeLxcDirOf(n.Name) }

// NodeLxcDirOf is /etc/pve/nodes/<node>/lxc for any node of the cluster.
func (n *Node) NodeLxcDirOf(node string) string {
	return filepath.Join(n.EtcPve(), "nodes", node, "lxc")
}

// ConfPath is /etc/pve/nodes/<node>/lxc/<vmid>.conf of this node.
func (n *Node) ConfPath(vmid int) string {
	return filepath.Join(n.NodeLxcDir(), strconv.Itoa(vmid)+".conf")
}

// LxcPath is the LXC lxcpath, /var/lib/lxc.
func (n *Node) LxcPath() string { return filepath.Join(n.Root, "var/lib/lxc") }

// LockDir is /run/lock/lxc, home of pve-config-<vmid>.lock files.
func (n *Node) LockDir() string { return filepath.Join(n.Root, "run/lock/lxc") }

// LockPath is the per-vmid config lock file.
func (n *Node) LockPath(vmid int) string {
	return filepath.Join(n.LockDir(), "pve-config-"+strconv.Itoa(vmid)+".lock")
}

// RunPveDir is /run/pve, home of ct-<vmid>.stderr.
func (n *Node) RunPveDir() string { return filepath.Join(n.Root, "run/pve") }

// TemplateCacheDir is the template cache of the "local" dir storage.
func (n *Node) TemplateCacheDir() string { return filepath.Join(n.Root, "var/lib/vz/template/cache") }

// CatalogueDir holds the templates `pveam available` offers for download.
func (n *Node) CatalogueDir() string { return filepath.Join(n.Root, "var/lib/pvesim/catalogue") }
