// Package state keeps nexcage's record of each container under --root:
// <root>/<id>/state.json, written atomically and guarded by a per-id lock.
package state

import "time"

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
