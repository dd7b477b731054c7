// Package state keeps nexcage's record of each container under --root:
// <root>/<id>/state.json, written atomically and guarded by a per-id lock.
package state

import (
	"path/filepath"
	"time"
)

// Status values (OCI runtime-spec plus runc's "paused").
const (
	Creating = "creating"
	Created  = "created"
	Running  = "running"
	Stopped  = "stopped"
	Paused   = "paused"
	// Unknown is reported by Store.List for an entry whose state.json
	// cannot be read; `delete --force` removes such an entry.
	Unknown = "unknown"
)

// Container is the persisted record of one container. The first fields are
// the OCI state; the rest are nexcage's own.
type Container struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs,omitempty"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`

	// Backend is the name of the backend that owns the container
	// ("runc", "crun", "proxmox-lxc").
	Backend string `json:"backend"`
	// Image is what the user named with --image, if anything.
	Image string `json:"image,omitempty"`
	// Data holds backend-specific values (for example "vmid").
	Data map[string]string `json:"data,omitempty"`
	// Nonce is a random value set once per create: a record with the
	// same id but another nonce is another container (created after this
	// one was deleted), which a foreground run must not delete.
	Nonce string `json:"nonce,omitempty"`
}

// AbsRootfs is rootfs as the runtime reports it (crun keeps the bundle's
// root.path, often relative) made absolute against bundle.
func AbsRootfs(bundle, rootfs string) string {
	if rootfs == "" || filepath.IsAbs(rootfs) || bundle == "" {
		return rootfs
	}
	return filepath.Join(bundle, rootfs)
}

// OCIState is the state JSON `state` and `list --format json` print:
// runc's fields in runc's order, plus the backend.
type OCIState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Backend     string            `json:"backend"`
	Image       string            `json:"image,omitempty"`
	// Data is the backend's own record, e.g. the Proxmox "vmid".
	Data map[string]string `json:"data,omitempty"`
}

// OCIState is c as printed; defVersion is the ociVersion of a record
// that has none.
func (c *Container) OCIState(defVersion string) OCIState {
	v := c.OCIVersion
	if v == "" {
		v = defVersion
	}
	pid := c.Pid
	if c.Status == Stopped {
		pid = 0
	}
	return OCIState{OCIVersion: v, ID: c.ID, Pid: pid, Status: c.Status, Bundle: c.Bundle, Rootfs: c.Rootfs,
		Created: c.Created, Owner: c.Owner, Annotations: c.Annotations, Backend: c.Backend, Image: c.Image, Data: c.Data}
}
