// Package pve knows Proxmox VE's file formats and tools (container .conf,
// property strings, storage.cfg, .vmlist, volume ids, pct). It knows
// nothing about OCI.
package pve

// Config is a parsed /etc/pve/lxc/<vmid>.conf. (Placeholder: H3a expands it.)
type Config struct{}
