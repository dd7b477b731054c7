// Package config holds nexcage's configuration file schema, its search
// path, defaults and validation, and the routing rules built from it.
package config

// Config is the whole configuration file (see docs/CONFIG.md).
type Config struct {
	Proxmox         Proxmox         `json:"proxmox"`
	Runtime         Runtime         `json:"runtime"`
	ContainerConfig ContainerConfig `json:"container_config"`
	Storage         Storage         `json:"storage"`
	Network         Network         `json:"network"`
	Templates       Templates       `json:"templates"`
	Runtimes        Runtimes        `json:"runtimes"`

	// Path is the file the configuration was read from ("" for defaults).
	Path string `json:"-"`
}

// Proxmox configures the Proxmox LXC backend.
type Proxmox struct {
	PctPath   string `json:"pct_path"`   // default: "pct" looked up on PATH
	PveamPath string `json:"pveam_path"` // default: "pveam" on PATH
	PveshPath string `json:"pvesh_path"` // default: "pvesh" on PATH
	// PveversionPath is the program that reports the node's Proxmox VE
	// package versions (`pveversion -v`); default "pveversion" on PATH.
	PveversionPath string `json:"pveversion_path"`
	EtcPve         string `json:"etc_pve"`  // default /etc/pve
	LxcPath        string `json:"lxc_path"` // default /var/lib/lxc
	Node           string `json:"node"`     // default: host name
	// Storage for container root filesystems; default: first storage in
	// storage.cfg whose content includes rootdir.
	Storage         string `json:"storage"`
	TemplateStorage string `json:"template_storage"` // default "local"
	VMIDRange       [2]int `json:"vmid_range"`       // default [100, 999999999]
	Timeout         int    `json:"timeout"`          // seconds per pct call; default 300
	Unprivileged    *bool  `json:"unprivileged"`     // default true
	// LockDir is Proxmox's lock directory, home of the
	// pve-config-<vmid>.lock files every writer of a CT config takes.
	LockDir string `json:"lock_dir"` // default /run/lock/lxc
	// KillGrace is how long a timed-out or interrupted pct has after
	// SIGTERM (to roll back) before it is killed; seconds, default 10.
	KillGrace int `json:"kill_grace"`
}

// Runtime holds general runtime settings and routing rules.
type Runtime struct {
	LogLevel string        `json:"log_level"` // debug, info, warn, error; default info
	LogPath  string        `json:"log_path"`  // default: stderr only
	RootPath string        `json:"root_path"` // default state root when --root is not given
	Routing  []RoutingRule `json:"routing"`
}

// RoutingRule sends the containers it matches to Runtime. A rule matches
// when every field it sets matches (at least one must be set): Pattern
// against the container id, the others against the Kubernetes identity
// containerd's CRI plugin writes into the bundle's annotations
// (io.kubernetes.cri.*). The regular expressions (Go syntax) must match
// the whole value; a rule with a Kubernetes field never matches a
// container without that annotation.
type RoutingRule struct {
	Pattern string `json:"pattern,omitempty"`
	// PodNamespace matches io.kubernetes.cri.sandbox-namespace.
	PodNamespace string `json:"pod_namespace,omitempty"`
	// PodName matches io.kubernetes.cri.sandbox-name.
	PodName string `json:"pod_name,omitempty"`
	// ContainerName matches io.kubernetes.cri.container-name (app
	// containers only: the sandbox has none).
	ContainerName string `json:"container_name,omitempty"`
	// ContainerType is "sandbox" or "container"
	// (io.kubernetes.cri.container-type), compared exactly.
	ContainerType string `json:"container_type,omitempty"`
	Runtime       string `json:"runtime"`
}

// ContainerConfig holds the original's name-pattern routing and default.
type ContainerConfig struct {
	CrunNamePatterns     []string `json:"crun_name_patterns"`     // shell wildcards
	DefaultContainerType string   `json:"default_container_type"` // default "lxc"
}

// Storage holds image and template cache locations.
type Storage struct {
	ZFSDataset string `json:"zfs_dataset"` // accepted for compatibility; unused
	ImagePath  string `json:"image_path"`  // default /var/lib/nexcage/images
}

// Network configures container networking on Proxmox.
type Network struct {
	Bridge     string   `json:"bridge"` // default vmbr0
	DNSServers []string `json:"dns_servers"`
	// DHCPTimeout bounds, in seconds, how long a container's init helper
	// waits for its network (a DHCP lease, or the node configuring a
	// host-managed interface) before create fails; default 30.
	DHCPTimeout int `json:"dhcp_timeout"`
}

// Templates configures template resolution.
type Templates struct {
	AutoDownload *bool `json:"auto_download"` // default true
	// SkopeoPath is the skopeo that pulls registry images on this host:
	// a name looked up on PATH or a path; default "skopeo". When it is
	// not installed, or set to "" to keep pulls on Proxmox, images are
	// pulled with Proxmox VE 9.1's oci-registry-pull (through pvesh).
	SkopeoPath *string `json:"skopeo_path"`
}

// Runtimes configures the OCI runtime binaries nexcage passes through to.
type Runtimes struct {
	Runc OCIRuntime `json:"runc"`
	Crun OCIRuntime `json:"crun"`
}

// OCIRuntime configures one OCI runtime binary.
type OCIRuntime struct {
	Path string `json:"path"` // default: name looked up on PATH
	// CgroupWorkaround for crun on hybrid cgroup hosts: "auto" (default),
	// "always" or "never". See docs/CONFIG.md.
	CgroupWorkaround string `json:"cgroup_workaround"`
}
