// Package proxmox is the Proxmox LXC backend: it translates an OCI bundle
// into a Proxmox container and drives its lifecycle through pct.
package proxmox

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/inithelper"
	"github.com/nexcage/nexcage/internal/netsetup"
	"github.com/nexcage/nexcage/internal/pve"
)

// Annotations understood by the Proxmox backend (docs/MAPPING.md).
const (
	AnnotationPrefix       = "org.nexcage.proxmox."
	AnnotationStorage      = AnnotationPrefix + "storage"
	AnnotationRootfsSize   = AnnotationPrefix + "rootfs-size"
	AnnotationBridge       = AnnotationPrefix + "bridge"
	AnnotationFeatures     = AnnotationPrefix + "features"
	AnnotationUnprivileged = AnnotationPrefix + "unprivileged"
	AnnotationOSType       = AnnotationPrefix + "ostype"
	AnnotationTemplate     = AnnotationPrefix + "template"
	AnnotationTags         = AnnotationPrefix + "tags"
	// AnnotationIP is net0's IPv4 configuration: "dhcp" (the default) or
	// an address with its prefix length ("10.0.0.5/24").
	AnnotationIP = AnnotationPrefix + "ip"
	// AnnotationGateway is the IPv4 default gateway of a static AnnotationIP.
	AnnotationGateway = AnnotationPrefix + "gw"
	// AnnotationNameservers lists DNS servers (comma or blank separated);
	// they replace network.dns_servers and a DHCP lease's servers.
	AnnotationNameservers = AnnotationPrefix + "nameservers"
)

// Tag is put on every container nexcage creates, so that people can
// recognise them in the Proxmox UI.
const Tag = "nexcage"

// DefaultRootfsSizeGiB is Proxmox's own default root disk size.
const DefaultRootfsSizeGiB = "4"

// netDeviceIndexBase numbers the raw lxc.net.N blocks of linux.netDevices
// above Proxmox's net0..net31, whose lxc.net.N blocks Proxmox generates.
const netDeviceIndexBase = 32

// OSTypes are the ostype values pct accepts.
var OSTypes = []string{"debian", "devuan", "ubuntu", "centos", "fedora", "opensuse", "archlinux", "alpine", "gentoo", "nixos", "unmanaged"}

// Input is everything translation needs besides the spec itself.
type Input struct {
	ID        string
	Spec      *specs.Spec
	BundleDir string // absolute bundle directory; relative mount sources are resolved against it
	// Annotations are the spec's annotations, possibly overlaid by the caller.
	Annotations map[string]string
	Storage     string // rootfs storage (config or storage.cfg default)
	Bridge      string // network.bridge
	// Unprivileged is the configured default (proxmox.unprivileged).
	Unprivileged bool
	// OSType detected from the rootfs ("" = let pct detect it).
	OSType string
	// KeepTemplateInit is set when the container comes from a template
	// alone (no bundle): a spec without process then keeps the template's
	// own init instead of being an error.
	KeepTemplateInit bool
	// Stat checks mount sources (after their symlinks are resolved); nil
	// means os.Stat.
	Stat func(string) (fs.FileInfo, error)
	// Rootfs is the bundle's root file system on this host (absolute),
	// when nexcage packs it: mount destinations are resolved inside it
	// (docs/MAPPING.md, "Mounts"). "" when the container comes from a
	// template nexcage cannot look into.
	Rootfs string
	// InitHelperDir is the host directory holding the init helper and its
	// supervisor's socket; a spec with a process needs one. It is
	// bind-mounted read-only at inithelper.MountPoint (by lxc.mount.entry,
	// so into any rootfs, packed or from a template) and the helper
	// becomes the container's init, which applies the process and runs it
	// only on `start` (a real OCI created state).
	InitHelperDir string
	// Node is the node's Proxmox version: what its pct and config parser
	// accept (proxmox-pct.md §9). The zero value is an unknown node,
	// treated as the oldest supported one.
	Node pve.NodeVersion
	// Nameservers are network.dns_servers (validated by internal/config).
	Nameservers []string
	// SubUID and SubGID are the node's files of delegated id ranges
	// (/etc/subuid, /etc/subgid): LXC maps a container's ids through
	// newuidmap/newgidmap, which allow root only the host ranges
	// delegated to it there, so a bundle's own mapping is checked against
	// them before anything is created. "" or a missing file skips it.
	SubUID, SubGID string
	// NetTimeout bounds the init helper's network setup (a DHCP lease,
	// or the node configuring a host-managed interface); 0 means
	// netsetup.DefaultTimeout.
	NetTimeout time.Duration
}

// Request is the translated container: pct create options in a stable
// order, and the raw lxc lines appended to <vmid>.conf afterwards.
type Request struct {
	Hostname string
	Options  []pve.Option
	Raw      []pve.RawLine
	// Process is what the init helper applies and runs (nil for a
	// template-only container, which keeps the template's own init).
	Process *inithelper.Process
	// MountTargets are mount destinations that a packed rootfs should
	// contain, so they can be mounted even on a read-only root.
	MountTargets []MountTarget
	// Template is the template annotation, "" when the rootfs is packed.
	Template string
	// Unprivileged is the effective unprivileged setting (pct's
	// `unprivileged`: whether pct create shifts the rootfs's ownership).
	Unprivileged bool
	// RootUID and RootGID are the host ids of the container's root: 0
	// for a privileged container, the node's unprivileged base for
	// Proxmox's idmap, the mapped id for a bundle's own mapping.
	RootUID, RootGID int
	// Warnings are things ignored because they are safe to ignore.
	Warnings []string
	// Net is the network the init helper configures before it answers
	// ready (only with InitHelperDir).
	Net *netsetup.Config
	// Rootfs is what the init helper mounts in the container before
	// anything else: the spec's mounts in its order, masked and
	// read-only paths (mounts.go; nil without an init helper).
	Rootfs *inithelper.RootfsSetup
	// ResolvConf, when not nil, must be written to
	// <InitHelperDir>/ResolvConfName: a read-only root gets its
	// /etc/resolv.conf from there (a read-only bind mount).
	ResolvConf []byte
	// Devices are the device nodes create makes on the host and binds
	// into the container (devices.go).
	Devices []DeviceNode
}

// ResolvConfName is the resolver file in the helper directory that a
// container with a read-only root gets at /etc/resolv.conf.
const ResolvConfName = "resolv.conf"

// MountTarget is a mount destination inside the container.
type MountTarget struct {
	Path string
	File bool // the source is a file, so the target must be a file
}

// Option returns the value of a pct option and whether it is set.
func (r *Request) Option(name string) (string, bool) {
	for _, o := range r.Options {
		if o.Name == name {
			return o.Value, true
		}
	}
	return "", false
}

type translator struct {
	in  Input
	req *Request
	// options collected by name, emitted in a fixed order at the end
	opts map[string]string
	mps  []string
	devs []string
	nets []string
	// rootfs collects the init helper's mounts (nil without a helper).
	rootfs *inithelper.RootfsSetup
}

// Translate turns an OCI spec into a Proxmox container request. It is a
// pure function except for Stat on mount sources.
func Translate(in Input) (*Request, error) {
	if in.Spec == nil {
		return nil, errs.New(errs.KindInvalidBundle, "container %s: the bundle has no spec", in.ID)
	}
	if in.Stat == nil {
		in.Stat = os.Stat
	}
	if in.Annotations == nil {
		in.Annotations = in.Spec.Annotations
	}
	t := &translator{in: in, req: &Request{}, opts: map[string]string{}}
	steps := []func() error{
		t.annotations, t.hostname, t.resources, t.process, t.root,
		t.mounts, t.network, t.userns, t.devices, t.sysctl, t.misc,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, addContainer(in.ID, err)
		}
	}
	t.finish()
	if err := checkRequest(in.ID, in.Node, t.req); err != nil {
		return nil, err
	}
	return t.req, nil
}

// checkRequest is the last gate before anything reaches pct or the .conf:
// every raw key must be one the node keeps, and no value may carry a
// control character or surrounding blanks.
func checkRequest(id string, node pve.NodeVersion, req *Request) error {
	for _, r := range req.Raw {
		if err := checkRawKey(id, node, r.Key); err != nil {
			return err
		}
		if err := checkText(r.Key, r.Value); err != nil {
			return addContainer(id, err)
		}
	}
	for _, o := range req.Options {
		if err := checkText("pct option --"+o.Name, o.Value); err != nil {
			return addContainer(id, err)
		}
	}
	return nil
}

// checkRawKey refuses a raw key that Proxmox, or this node's version of
// it, would drop with only a warning (proxmox-pct.md §9.3): the setting
// would silently not apply, so the container would run with less than
// the bundle asks for.
func checkRawKey(id string, node pve.NodeVersion, key string) error {
	err := pve.CheckRawKeyOn(node, key)
	if err == nil {
		return nil
	}
	var ne *pve.NodeRawKeyError
	if errors.As(err, &ne) {
		e := errs.Wrap(errs.KindUnsupported, err, "container %s", id)
		if !node.Known() {
			return e.WithHint("nexcage could not read the node's version: check that `pveversion -v` works (proxmox.pveversion_path), or upgrade the node to PVE %s or later", ne.MinPVE)
		}
		return e.WithHint("upgrade the node to PVE %s or later (pve-container >= %s), drop the field of the bundle that needs %s, or route this container to runc/crun", ne.MinPVE, ne.MinContainer, key)
	}
	return errs.Wrap(errs.KindUnsupported, err, "container %s: raw key %s is not accepted by Proxmox", id, key)
}

func addContainer(id string, err error) error {
	if e, ok := err.(*errs.Error); ok {
		c := *e
		if c.Msg == "" {
			c.Msg = "container " + id // the cause says the rest
		} else {
			c.Msg = "container " + id + ": " + c.Msg
		}
		return &c
	}
	return fmt.Errorf("container %s: %w", id, err)
}

func (t *translator) warn(format string, args ...any) {
	t.req.Warnings = append(t.req.Warnings, fmt.Sprintf(format, args...))
}

func (t *translator) raw(key, value string) {
	t.req.Raw = append(t.req.Raw, pve.RawLine{Key: key, Value: value})
}

func (t *translator) anno(key string) (string, bool) {
	v, ok := t.in.Annotations[key]
	return v, ok
}

// annotations reads the org.nexcage.proxmox.* knobs.
func (t *translator) annotations() error {
	for k := range t.in.Annotations {
		if strings.HasPrefix(k, AnnotationPrefix) {
			switch k {
			case AnnotationStorage, AnnotationRootfsSize, AnnotationBridge, AnnotationFeatures,
				AnnotationUnprivileged, AnnotationOSType, AnnotationTemplate, AnnotationTags,
				AnnotationIP, AnnotationGateway, AnnotationNameservers:
			default:
				return invalid("annotations["+k+"]", "unknown nexcage Proxmox annotation; known: storage, rootfs-size, bridge, features, unprivileged, ostype, template, tags, ip, gw, nameservers")
			}
		}
	}
	t.req.Unprivileged = t.in.Unprivileged
	if v, ok := t.anno(AnnotationUnprivileged); ok {
		b, err := parseBool(v)
		if err != nil {
			return invalid("annotations["+AnnotationUnprivileged+"]", "%v", err)
		}
		t.req.Unprivileged = b
	}
	if v, ok := t.anno(AnnotationStorage); ok {
		if !reStorage.MatchString(v) {
			return invalid("annotations["+AnnotationStorage+"]", "%q is not a Proxmox storage id", v)
		}
		t.in.Storage = v
	}
	if v, ok := t.anno(AnnotationBridge); ok {
		if !reBridge.MatchString(v) {
			return invalid("annotations["+AnnotationBridge+"]", "%q is not a bridge name", v)
		}
		t.in.Bridge = v
	}
	if v, ok := t.anno(AnnotationOSType); ok {
		if !contains(OSTypes, v) {
			return invalid("annotations["+AnnotationOSType+"]", "%q is not a Proxmox ostype (one of %s)", v, strings.Join(OSTypes, ", "))
		}
		t.in.OSType = v
	}
	if v, ok := t.anno(AnnotationTemplate); ok {
		if err := checkProp("annotations["+AnnotationTemplate+"]", v); err != nil {
			return err
		}
		t.req.Template = v
	}
	if v, ok := t.anno(AnnotationFeatures); ok {
		f, err := parseFeatures(v)
		if err != nil {
			return invalid("annotations["+AnnotationFeatures+"]", "%v", err)
		}
		if f != "" {
			t.opts["features"] = f
		}
	}
	tags := []string{Tag}
	if v, ok := t.anno(AnnotationTags); ok {
		for _, tag := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
			tag = strings.ToLower(tag)
			if !reTag.MatchString(tag) {
				return invalid("annotations["+AnnotationTags+"]", "%q is not a valid Proxmox tag (letters, digits, _ + - .)", tag)
			}
			if !contains(tags, tag) {
				tags = append(tags, tag)
			}
		}
	}
	t.opts["tags"] = strings.Join(tags, ";")
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (use 1 or 0)", v)
}

// parseFeatures validates a features string and returns it canonical.
func parseFeatures(v string) (string, error) {
	var out []string
	seen := map[string]bool{}
	for _, item := range strings.Split(v, ",") {
		if item == "" {
			continue
		}
		k, val, ok := strings.Cut(item, "=")
		if !ok {
			return "", fmt.Errorf("feature %q needs a value (e.g. nesting=1)", item)
		}
		if seen[k] {
			return "", fmt.Errorf("feature %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "nesting", "keyctl", "fuse", "mknod", "force_rw_sys":
			b, err := parseBool(val)
			if err != nil {
				return "", fmt.Errorf("feature %s: %v", k, err)
			}
			out = append(out, k+"="+map[bool]string{true: "1", false: "0"}[b])
		case "mount":
			for _, fs := range strings.Split(val, ";") {
				if !reDNSLabel.MatchString(fs) {
					return "", fmt.Errorf("feature mount: %q is not a file system type", fs)
				}
			}
			out = append(out, k+"="+val)
		default:
			return "", fmt.Errorf("unknown feature %q (known: nesting, keyctl, fuse, mknod, force_rw_sys, mount)", k)
		}
	}
	return strings.Join(out, ","), nil
}

// SanitizeHostname makes s a DNS-safe host name: lowercase letters,
// digits and '-', labels of at most 63 characters, at most 253 in all.
func SanitizeHostname(s string) string {
	var labels []string
	for _, l := range strings.Split(strings.ToLower(s), ".") {
		var b strings.Builder
		for _, r := range l {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
				b.WriteRune(r)
			} else {
				b.WriteByte('-')
			}
		}
		l = strings.Trim(b.String(), "-")
		if len(l) > 63 {
			l = strings.TrimRight(l[:63], "-")
		}
		if l != "" {
			labels = append(labels, l)
		}
	}
	h := strings.Join(labels, ".")
	for len(h) > 253 {
		h = strings.TrimRight(h[:253], ".-")
	}
	if h == "" {
		h = "nexcage"
	}
	return h
}

func (t *translator) hostname() error {
	src := t.in.Spec.Hostname
	if src == "" {
		src = t.in.ID
	}
	h := SanitizeHostname(src)
	if t.in.Spec.Hostname != "" && h != t.in.Spec.Hostname {
		t.warn("hostname %q is not DNS-safe; using %q", t.in.Spec.Hostname, h)
	}
	t.req.Hostname = h
	t.opts["hostname"] = h
	return nil
}

const mib = 1 << 20

// resources maps linux.resources (formulas in docs/MAPPING.md).
func (t *translator) resources() error {
	if t.in.Spec.Linux == nil || t.in.Spec.Linux.Resources == nil {
		return nil
	}
	r := t.in.Spec.Linux.Resources
	if m := r.Memory; m != nil {
		var limit int64
		if m.Limit != nil && *m.Limit > 0 {
			limit = *m.Limit
			mb := (limit + mib - 1) / mib
			if mb < 16 {
				t.warn("linux.resources.memory.limit %d bytes is below Proxmox's minimum; using 16 MiB", limit)
				mb = 16
			}
			t.opts["memory"] = strconv.FormatInt(mb, 10)
			limit = mb * mib
		}
		if m.Swap != nil {
			switch {
			case *m.Swap == -1:
				t.warn("linux.resources.memory.swap is unlimited; Proxmox has no unlimited swap, keeping its default")
			case limit == 0 && *m.Swap > 0:
				return unsupported("linux.resources.memory.swap", "a swap limit needs linux.resources.memory.limit (OCI swap is memory+swap)")
			case *m.Swap >= 0:
				s := *m.Swap - limit
				if s < 0 {
					return invalid("linux.resources.memory.swap", "%d is below memory.limit %d (OCI swap counts memory+swap)", *m.Swap, limit)
				}
				t.opts["swap"] = strconv.FormatInt(s/mib, 10)
			}
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			t.raw("lxc.cgroup2.memory.low", strconv.FormatInt(*m.Reservation, 10))
		}
		//lint:ignore SA1019 a bundle may still set the deprecated field; we warn about it
		if m.Kernel != nil || m.KernelTCP != nil {
			t.warn("linux.resources.memory.kernel/kernelTCP are not supported by cgroup v2; ignored")
		}
		if m.Swappiness != nil {
			t.warn("linux.resources.memory.swappiness is not supported by cgroup v2; ignored")
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return unsupported("linux.resources.memory.disableOOMKiller", "cgroup v2 (used by Proxmox) cannot disable the OOM killer")
		}
	}
	if c := r.CPU; c != nil {
		if c.Cpus != "" {
			n, err := countCPUs(c.Cpus)
			if err != nil {
				return invalid("linux.resources.cpu.cpus", "%v", err)
			}
			t.opts["cores"] = strconv.Itoa(n)
			t.warn("linux.resources.cpu.cpus %q becomes cores=%d; Proxmox chooses which CPUs", c.Cpus, n)
		}
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			limit := float64(*c.Quota) / float64(period)
			limit = math.Ceil(limit*100) / 100
			if limit > 8192 {
				return invalid("linux.resources.cpu.quota", "quota/period %.2f exceeds Proxmox's cpulimit maximum 8192", limit)
			}
			t.opts["cpulimit"] = strconv.FormatFloat(limit, 'f', -1, 64)
		}
		if c.Shares != nil && *c.Shares > 0 {
			t.opts["cpuunits"] = strconv.FormatUint(SharesToWeight(*c.Shares), 10)
		}
		if c.Mems != "" {
			t.raw("lxc.cgroup2.cpuset.mems", c.Mems)
			if err := checkProp("linux.resources.cpu.mems", c.Mems); err != nil {
				return err
			}
		}
		if c.RealtimeRuntime != nil || c.RealtimePeriod != nil {
			t.warn("linux.resources.cpu.realtime* is not supported by cgroup v2; ignored")
		}
		if c.Idle != nil && *c.Idle != 0 {
			t.raw("lxc.cgroup2.cpu.idle", strconv.FormatInt(*c.Idle, 10))
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		t.raw("lxc.cgroup2.pids.max", strconv.FormatInt(*p.Limit, 10))
	}
	for _, h := range r.HugepageLimits {
		if !reDNSLabel.MatchString(strings.ToLower(h.Pagesize)) {
			return invalid("linux.resources.hugepageLimits", "page size %q is not valid", h.Pagesize)
		}
		t.raw("lxc.cgroup2.hugetlb."+h.Pagesize+".max", strconv.FormatUint(h.Limit, 10))
	}
	if r.BlockIO != nil {
		t.warn("linux.resources.blockIO is not mapped (Proxmox sets I/O limits per disk); ignored")
	}
	if r.Network != nil {
		t.warn("linux.resources.network is not supported by cgroup v2; ignored")
	}
	if len(r.Rdma) > 0 {
		t.warn("linux.resources.rdma is not mapped; ignored")
	}
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !reCgroupKey.MatchString(k) {
			return invalid("linux.resources.unified["+k+"]", "not a cgroup v2 file name")
		}
		if err := checkText("linux.resources.unified["+k+"]", r.Unified[k]); err != nil {
			return err
		}
		t.raw("lxc.cgroup2."+k, r.Unified[k])
	}
	// Device cgroup rules are managed by Proxmox (devN entries allow
	// devices); a default deny-all rule is what Proxmox does anyway.
	return nil
}

// SharesToWeight converts cgroup v1 cpu shares to a cgroup v2 cpu.weight
// (Proxmox cpuunits) with the formula crun and runc >= 1.3 use, which maps
// the default 1024 shares to the default weight 100:
// weight = ceil(10^((log2(s)^2 + 125*log2(s)) / 612 - 7/34)), clamped to 1..10000.
func SharesToWeight(shares uint64) uint64 {
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	l := math.Log2(float64(shares))
	exp := (l*l+125*l)/612.0 - 7.0/34.0
	w := uint64(math.Ceil(math.Pow(10, exp)))
	if w < 1 {
		w = 1
	}
	if w > 10000 {
		w = 10000
	}
	return w
}

// countCPUs counts the CPUs of a cpuset list such as "0-3,6".
func countCPUs(s string) (int, error) {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0, fmt.Errorf("%q is not a CPU list", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("%q is not a CPU list", s)
			}
		}
		n += b - a + 1
	}
	if n < 1 || n > 8192 {
		return 0, fmt.Errorf("%q gives %d CPUs; Proxmox allows 1..8192 cores", s, n)
	}
	return n, nil
}

// process maps process.*: everything of it goes to nexcage's init
// helper (Request.Process), which applies it itself on every Proxmox
// version, since PVE 8 and 9.0 drop the raw lxc.init.*/lxc.environment
// keys (proxmox-pct.md §9.3). Only what LXC itself must set before init
// runs (AppArmor profile, SELinux context) stays a raw key.
func (t *translator) process() error {
	p := t.in.Spec.Process
	if p == nil && t.in.KeepTemplateInit {
		return nil
	}
	if p == nil {
		return invalid("process", "the spec has no process; nothing to run")
	}
	if len(p.Args) == 0 {
		return invalid("process.args", "empty; the container needs a command")
	}
	if p.Terminal {
		t.warn("process.terminal is not supported on Proxmox (the container has a console instead); ignored")
	}
	hp, err := HelperProcess(p)
	if err != nil {
		return err
	}
	if err := t.initHelper(); err != nil {
		return err
	}
	t.req.Process = hp
	if p.ApparmorProfile != "" {
		if err := checkProp("process.apparmorProfile", p.ApparmorProfile); err != nil {
			return err
		}
		t.raw("lxc.apparmor.profile", p.ApparmorProfile)
	}
	if p.SelinuxLabel != "" {
		if err := checkText("process.selinuxLabel", p.SelinuxLabel); err != nil {
			return err
		}
		t.raw("lxc.selinux.context", p.SelinuxLabel)
	}
	if p.Scheduler != nil || p.IOPriority != nil || p.ExecCPUAffinity != nil {
		t.warn("process.scheduler/ioPriority/execCPUAffinity are not supported by Proxmox; ignored")
	}
	return nil
}

// HelperProcess validates an OCI process and returns what nexcage's init
// and exec helpers apply: args, env, cwd, numeric user and groups, umask,
// noNewPrivileges, rlimits and the five capability sets. Sysctls are
// added by the translation (linux.sysctl is not part of the process).
func HelperProcess(p *specs.Process) (*inithelper.Process, error) {
	if len(p.Args) == 0 {
		return nil, invalid("process.args", "empty; the container needs a command")
	}
	for i, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return nil, invalid(fmt.Sprintf("process.args[%d]", i), "contains a NUL byte")
		}
	}
	for i, e := range p.Env {
		field := fmt.Sprintf("process.env[%d]", i)
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, invalid(field, "%q is not NAME=value", e)
		}
		if strings.ContainsRune(e, 0) {
			return nil, invalid(field, "contains a NUL byte")
		}
	}
	cwd := "/"
	if p.Cwd != "" {
		if !path.IsAbs(p.Cwd) {
			return nil, invalid("process.cwd", "%q is not an absolute path", p.Cwd)
		}
		if err := noControl("process.cwd", p.Cwd); err != nil {
			return nil, err
		}
		cwd = path.Clean(p.Cwd)
	}
	if p.User.Username != "" {
		return nil, unsupported("process.user.username", "%q: only a numeric uid/gid can be used on Proxmox (the user database of the image is not read)", p.User.Username).
			WithHint("set process.user.uid and gid to the user's numbers instead")
	}
	hp := &inithelper.Process{
		Args: p.Args, Env: p.Env, Cwd: cwd, UID: p.User.UID, GID: p.User.GID,
		AdditionalGids: p.User.AdditionalGids, NoNewPrivileges: p.NoNewPrivileges,
	}
	if p.OOMScoreAdj != nil {
		if *p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000 {
			return nil, invalid("process.oomScoreAdj", "%d is outside -1000..1000", *p.OOMScoreAdj)
		}
		v := *p.OOMScoreAdj
		hp.OOMScoreAdj = &v
	}
	if p.User.Umask != nil {
		if *p.User.Umask > 0o777 {
			return nil, invalid("process.user.umask", "%#o is not a umask (0 to 0777)", *p.User.Umask)
		}
		u := *p.User.Umask
		hp.Umask = &u
	}
	seen := map[string]bool{}
	for i, rl := range p.Rlimits {
		field := fmt.Sprintf("process.rlimits[%d]", i)
		if _, ok := inithelper.RlimitResource(rl.Type); !ok {
			return nil, invalid(field, "unknown rlimit type %q", rl.Type)
		}
		if seen[rl.Type] {
			return nil, invalid(field, "%s given twice", rl.Type)
		}
		seen[rl.Type] = true
		if rl.Soft > rl.Hard {
			return nil, invalid(field, "%s: soft limit %d is above the hard limit %d", rl.Type, rl.Soft, rl.Hard)
		}
		hp.Rlimits = append(hp.Rlimits, rl)
	}
	if c := p.Capabilities; c != nil {
		sets := []struct {
			name string
			caps []string
		}{{"bounding", c.Bounding}, {"effective", c.Effective}, {"permitted", c.Permitted}, {"inheritable", c.Inheritable}, {"ambient", c.Ambient}}
		for _, s := range sets {
			for i, cp := range s.caps {
				if _, ok := inithelper.CapabilityByName(cp); !ok {
					return nil, invalid(fmt.Sprintf("process.capabilities.%s[%d]", s.name, i), "%q is not a capability", cp)
				}
			}
		}
		cc := *c
		hp.Capabilities = &cc
	}
	return hp, nil
}

// initHelper makes nexcage's init helper the container's init. It gets
// the process from its supervisor over a socket, so nothing of it needs
// quoting or a raw key.
func (t *translator) initHelper() error {
	dir := t.in.InitHelperDir
	if dir == "" {
		return errs.New(errs.KindInternal, "the bundle has a process but no init helper directory was prepared for it")
	}
	if !filepath.IsAbs(dir) || strings.ContainsAny(dir, " \t\n\r\\\x00") {
		return errs.New(errs.KindInvalidConfig, "init helper directory %q must be an absolute path without blanks or backslashes", dir).
			WithHint("set proxmox.lxc_path to such a path")
	}
	t.raw("lxc.init.cmd", inithelper.Binary+" "+inithelper.InitVerb+" "+inithelper.Socket)
	// An OCI process has no console and no gettys: the supervisor hands it
	// its stdio. `console: 0` makes Proxmox write lxc.console.path = none,
	// so init's stderr lands in /run/pve/ct-<vmid>.stderr on every node;
	// then `tty: 0` is required too, since LXC creates the tty directory
	// of common.conf's lxc.tty.dir (/dev/lxc) only while it sets up a
	// console, and a privileged `ostype: unmanaged` container with ttys
	// but no console fails to start ("Failed to create tty mount target").
	t.opts["console"] = "0"
	t.opts["tty"] = "0"
	t.raw("lxc.mount.entry", dir+" "+strings.TrimPrefix(inithelper.MountPoint, "/")+" none bind,ro,create=dir 0 0")
	t.req.MountTargets = append(t.req.MountTargets, MountTarget{Path: inithelper.MountPoint})
	return nil
}

// root maps root.readonly and decides the rootfs option.
//
// A read-only root needs `ostype: unmanaged`: with a managed ostype the
// prestart setup writes hostname, network and DNS files into the rootfs,
// which fails on a read-only mount, and the start fails
// (proxmox-pct.md §9.6). So root.readonly forces unmanaged, with a
// warning when another ostype was detected or asked for.
func (t *translator) root() error {
	size := DefaultRootfsSizeGiB
	if v, ok := t.anno(AnnotationRootfsSize); ok {
		s := strings.TrimSuffix(strings.ToUpper(v), "G")
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 || f > 131072 || strings.ContainsAny(s, "eE+-") {
			return invalid("annotations["+AnnotationRootfsSize+"]", "%q is not a size in GiB (e.g. 8 or 8G)", v)
		}
		size = s
	}
	if t.in.Storage == "" {
		return errs.New(errs.KindInvalidConfig, "no storage for the root filesystem").
			WithHint("set proxmox.storage to a storage whose content includes rootdir")
	}
	if !reStorage.MatchString(t.in.Storage) {
		return errs.New(errs.KindInvalidConfig, "proxmox.storage %q is not a Proxmox storage id", t.in.Storage)
	}
	v := t.in.Storage + ":" + size
	readonly := t.in.Spec.Root != nil && t.in.Spec.Root.Readonly
	if readonly {
		v += ",ro=1"
	}
	t.opts["rootfs"] = v
	if t.in.OSType != "" && !contains(OSTypes, t.in.OSType) {
		return invalid("ostype", "%q is not a Proxmox ostype", t.in.OSType)
	}
	switch {
	case readonly:
		if t.in.OSType != "" && t.in.OSType != "unmanaged" {
			t.warn("root.readonly: ostype %q replaced by \"unmanaged\": Proxmox's setup for a managed ostype writes into the root file system at every start, which fails on a read-only root", t.in.OSType)
		}
		t.opts["ostype"] = "unmanaged"
	case t.in.OSType != "":
		t.opts["ostype"] = t.in.OSType
	}
	return nil
}

// network checks the network namespace, writes net0 and decides who
// configures it (docs/MAPPING.md, docs/PROXMOX.md): an unmanaged
// container's veth stays down unless PVE 9.1 manages it (host-managed=1)
// or nexcage's init helper configures it before the process runs.
func (t *translator) network() error {
	var netns *specs.LinuxNamespace
	if t.in.Spec.Linux != nil {
		for i := range t.in.Spec.Linux.Namespaces {
			if t.in.Spec.Linux.Namespaces[i].Type == specs.NetworkNamespace {
				netns = &t.in.Spec.Linux.Namespaces[i]
			}
		}
	}
	if netns == nil {
		return unsupported("linux.namespaces", "no network namespace: the spec asks to share the host's network, which a Proxmox container cannot do").
			WithHint("add {\"type\": \"network\"} to linux.namespaces, or route this container to runc/crun")
	}
	if netns.Path != "" {
		return unsupported("linux.namespaces (network)", "joining an existing network namespace (path %s) is not possible on Proxmox: every container gets its own network namespace with net0", netns.Path).
			WithHint("remove the path to give the container its own network, or route this container to runc/crun")
	}
	if t.in.Bridge == "" {
		t.in.Bridge = "vmbr0"
	}
	if !reBridge.MatchString(t.in.Bridge) {
		return errs.New(errs.KindInvalidConfig, "network.bridge %q is not a valid bridge name", t.in.Bridge)
	}
	ifc, err := t.netAnnotations()
	if err != nil {
		return err
	}
	nameservers := t.in.Nameservers
	if v, ok := t.anno(AnnotationNameservers); ok {
		if nameservers, err = parseNameservers(v); err != nil {
			return invalid("annotations["+AnnotationNameservers+"]", "%v", err)
		}
	}
	for i, n := range nameservers {
		if _, err := netsetup.ParseNameserver(n); err != nil {
			return errs.New(errs.KindInvalidConfig, "network.dns_servers[%d]: %v", i, err)
		}
	}
	// On PVE 9.1 the node configures an interface marked host-managed
	// (LXC sets a static address; pct start runs a DHCP client for
	// ip=dhcp). Only where nothing in the container does it: the init
	// helper's containers and unmanaged ones. A managed ostype's own init
	// configures the interface from what PVE writes for ip=/gw=.
	hostManaged := t.in.Node.HasOCI() && (t.in.InitHelperDir != "" || t.in.OSType == "unmanaged")
	net0 := "name=eth0,bridge=" + t.in.Bridge
	if hostManaged {
		net0 += ",host-managed=1"
	}
	if ifc.Mode == netsetup.ModeStatic {
		net0 += ",ip=" + ifc.Address
		if ifc.Gateway != "" {
			net0 += ",gw=" + ifc.Gateway
		}
	} else {
		net0 += ",ip=dhcp"
	}
	t.nets = append(t.nets, net0)
	if len(nameservers) > 0 {
		// Written by PVE into a managed ostype's rootfs; the init helper
		// writes it for the others.
		t.opts["nameserver"] = strings.Join(nameservers, " ")
	}
	switch {
	case t.in.InitHelperDir != "":
		t.helperNetwork(ifc, hostManaged, nameservers)
	case !hostManaged && t.in.OSType == "unmanaged":
		t.warn("eth0 and lo stay down: an unmanaged container without nexcage's init helper on a node before PVE 9.1 has nothing that configures its network")
	}
	if t.in.Spec.Linux == nil {
		return nil
	}
	hosts := make([]string, 0, len(t.in.Spec.Linux.NetDevices))
	for h := range t.in.Spec.Linux.NetDevices {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for i, h := range hosts {
		field := "linux.netDevices[" + h + "]"
		name := t.in.Spec.Linux.NetDevices[h].Name
		if name == "" {
			name = h
		}
		if !reIfName.MatchString(h) {
			return invalid(field, "%q is not a network interface name", h)
		}
		if !reIfName.MatchString(name) {
			return invalid(field+".name", "%q is not a network interface name", name)
		}
		if name == "eth0" {
			return invalid(field+".name", "eth0 is the container's Proxmox network interface (net0)")
		}
		p := fmt.Sprintf("lxc.net.%d.", netDeviceIndexBase+i)
		t.raw(p+"type", "phys")
		t.raw(p+"link", h)
		t.raw(p+"name", name)
		t.raw(p+"flags", "up")
	}
	return nil
}

// netAnnotations reads the ip and gw annotations into net0's interface.
func (t *translator) netAnnotations() (netsetup.Interface, error) {
	ifc := netsetup.Interface{Name: "eth0", Bridge: t.in.Bridge, Mode: netsetup.ModeDHCP}
	ip, hasIP := t.anno(AnnotationIP)
	gw, hasGW := t.anno(AnnotationGateway)
	if hasIP && ip != "dhcp" {
		p, err := netsetup.ParseAddress(ip)
		if err != nil {
			return ifc, invalid("annotations["+AnnotationIP+"]", "%v; use dhcp or an IPv4 address with its prefix length (10.0.0.5/24)", err)
		}
		ifc.Mode, ifc.Address = netsetup.ModeStatic, p.String()
	}
	if hasGW {
		if ifc.Mode != netsetup.ModeStatic {
			return ifc, invalid("annotations["+AnnotationGateway+"]", "a gateway needs a static address in %s (a DHCP lease brings its own router)", AnnotationIP)
		}
		if err := netsetup.CheckGateway(netip.MustParsePrefix(ifc.Address), gw); err != nil {
			return ifc, invalid("annotations["+AnnotationGateway+"]", "%v", err)
		}
		ifc.Gateway = gw
	}
	return ifc, nil
}

// parseNameservers reads a comma or blank separated list of addresses.
func parseNameservers(v string) ([]string, error) {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("%q lists no DNS server", v)
	}
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		a, err := netsetup.ParseNameserver(f)
		if err != nil {
			return nil, err
		}
		out = append(out, a.String())
	}
	return out, nil
}

// helperNetwork is what the init helper configures: lo, eth0 (unless the
// node does, then it waits for it) and /etc/resolv.conf, unless the
// bundle mounts its own. A read-only root cannot take a file written at
// start, so nexcage binds a file from the helper directory there
// (read-only), written at create from the known nameservers.
func (t *translator) helperNetwork(ifc netsetup.Interface, hostManaged bool, nameservers []string) {
	if hostManaged {
		ifc = netsetup.Interface{Name: ifc.Name, Bridge: ifc.Bridge, Mode: netsetup.ModeNode}
	}
	c := &netsetup.Config{Interfaces: []netsetup.Interface{ifc}, Nameservers: nameservers,
		Hostname: t.req.Hostname, Timeout: t.in.NetTimeout}
	if c.Timeout == 0 {
		c.Timeout = netsetup.DefaultTimeout
	}
	t.req.Net = c
	if t.mountsResolvConf() {
		return
	}
	if t.in.Spec.Root == nil || !t.in.Spec.Root.Readonly {
		c.ResolvPath = netsetup.ResolvConf
		return
	}
	if len(nameservers) == 0 {
		t.warn("root.readonly: /etc/resolv.conf stays the image's own; set network.dns_servers or the %s annotation to have nexcage provide one", AnnotationNameservers)
		return
	}
	t.req.ResolvConf = netsetup.ResolvConfContent(nameservers, nil)
	t.raw("lxc.mount.entry", t.in.InitHelperDir+"/"+ResolvConfName+" "+strings.TrimPrefix(netsetup.ResolvConf, "/")+" none bind,ro,create=file 0 0")
	t.req.MountTargets = append(t.req.MountTargets, MountTarget{Path: netsetup.ResolvConf, File: true})
}

// mountsResolvConf reports whether the bundle mounts /etc/resolv.conf,
// or /etc (then the file is the mount source's: never written).
func (t *translator) mountsResolvConf() bool {
	for _, m := range t.in.Spec.Mounts {
		if d := path.Clean("/" + m.Destination); d == netsetup.ResolvConf || d == path.Dir(netsetup.ResolvConf) {
			return true
		}
	}
	return false
}

// Proxmox's idmap for unprivileged containers: pct create shifts the
// ownership of the unpacked rootfs by it (container id N -> host id
// 100000+N), and pct start uses it unless the config has raw lxc.idmap
// lines.
var defaultIDMap = []specs.LinuxIDMapping{{ContainerID: 0, HostID: unprivBase, Size: unprivSize}}

// The node's unprivileged id range (Proxmox's default idmap).
const (
	unprivBase = 100000
	unprivSize = 65536
)

// userns maps linux.uidMappings/gidMappings.
//
// Proxmox's own idmap (container id N -> host id 100000+N, or a part of
// it that maps container root) keeps `unprivileged: 1`: pct create shifts
// the rootfs's ownership by it. Any other mapping is the bundle's own, as
// runc applies it: the container is created without that shift (pct's
// `unprivileged: 0`, so the rootfs keeps the bundle's ownership, as with
// runc) and the mapping becomes raw lxc.idmap lines, which make Proxmox
// start it in a user namespace with exactly that mapping
// (pve-container's update_lxc_config treats a custom lxc.idmap as
// unprivileged). With proxmox.unprivileged (the default) such a mapping
// must keep every host id in the node's unprivileged range: that setting
// promises no container id maps to a host id outside it.
func (t *translator) userns() error {
	l := t.in.Spec.Linux
	t.req.RootUID, t.req.RootGID = 0, 0
	if t.req.Unprivileged {
		t.req.RootUID, t.req.RootGID = unprivBase, unprivBase
	}
	if l == nil {
		return nil
	}
	hasUserNS := false
	for _, ns := range l.Namespaces {
		if ns.Type == specs.UserNamespace {
			hasUserNS = true
			if ns.Path != "" {
				return unsupported("linux.namespaces (user)", "joining an existing user namespace (%s) is not possible on Proxmox", ns.Path)
			}
		}
	}
	if len(l.UIDMappings) == 0 && len(l.GIDMappings) == 0 {
		if hasUserNS && !t.req.Unprivileged {
			return invalid("linux.namespaces (user)", "the spec asks for a user namespace but the container is configured privileged (unprivileged=0) and the spec has no mapping").
				WithHint("add linux.uidMappings and linux.gidMappings, or set proxmox.unprivileged (or the %s annotation)", AnnotationUnprivileged)
		}
		return nil
	}
	uroot, err := checkIDMap("linux.uidMappings", l.UIDMappings)
	if err != nil {
		return err
	}
	groot, err := checkIDMap("linux.gidMappings", l.GIDMappings)
	if err != nil {
		return err
	}
	if !hasUserNS {
		t.warn("linux.uidMappings/gidMappings without a user namespace in linux.namespaces: applied, as a mapping needs one")
	}
	if t.req.Unprivileged && proxmoxShift(l.UIDMappings) && proxmoxShift(l.GIDMappings) {
		if slices.Equal(l.UIDMappings, defaultIDMap) && slices.Equal(l.GIDMappings, defaultIDMap) {
			return nil
		}
	} else {
		if t.req.Unprivileged {
			for _, f := range []struct {
				field string
				ms    []specs.LinuxIDMapping
			}{{"linux.uidMappings", l.UIDMappings}, {"linux.gidMappings", l.GIDMappings}} {
				for i, m := range f.ms {
					if m.HostID < unprivBase || uint64(m.HostID)+uint64(m.Size) > unprivBase+unprivSize {
						return unsupported(fmt.Sprintf("%s[%d]", f.field, i), "host ids %d-%d are outside the node's unprivileged range %d-%d, which proxmox.unprivileged keeps every container in",
							m.HostID, uint64(m.HostID)+uint64(m.Size)-1, unprivBase, unprivBase+unprivSize-1).
							WithHint("map into host ids %d-%d, or set proxmox.unprivileged to false (or the %s annotation to 0) to allow this mapping", unprivBase, unprivBase+unprivSize-1, AnnotationUnprivileged)
					}
				}
			}
		}
		if err := checkDelegated("linux.uidMappings", t.in.SubUID, l.UIDMappings); err != nil {
			return err
		}
		if err := checkDelegated("linux.gidMappings", t.in.SubGID, l.GIDMappings); err != nil {
			return err
		}
		// The bundle's own mapping: no shift at create, the mapping at start.
		t.req.Unprivileged = false
		t.req.RootUID, t.req.RootGID = int(uroot), int(groot)
	}
	for _, m := range l.UIDMappings {
		t.raw("lxc.idmap", fmt.Sprintf("u %d %d %d", m.ContainerID, m.HostID, m.Size))
	}
	for _, m := range l.GIDMappings {
		t.raw("lxc.idmap", fmt.Sprintf("g %d %d %d", m.ContainerID, m.HostID, m.Size))
	}
	return nil
}

// proxmoxShift reports whether every range maps container id N to host
// id 100000+N inside the node's unprivileged range (Proxmox's idmap or a
// part of it).
func proxmoxShift(ms []specs.LinuxIDMapping) bool {
	for _, m := range ms {
		if m.HostID < unprivBase || uint64(m.HostID)+uint64(m.Size) > unprivBase+unprivSize || uint64(m.HostID)-unprivBase != uint64(m.ContainerID) {
			return false
		}
	}
	return true
}

// maxIDMapLines is the kernel's limit of lines in uid_map/gid_map.
const maxIDMapLines = 340

// checkIDMap checks one of the two mappings: container root mapped (LXC
// needs it), no empty, overflowing or overlapping range. It returns the
// host id of container root.
func checkIDMap(field string, ms []specs.LinuxIDMapping) (uint32, error) {
	if len(ms) == 0 {
		return 0, unsupported(field, "missing while the other mapping is set; container root must be mapped in both")
	}
	if len(ms) > maxIDMapLines {
		return 0, invalid(field, "%d ranges; the kernel takes at most %d", len(ms), maxIDMapLines)
	}
	var root uint32
	found := false
	for i, m := range ms {
		f := fmt.Sprintf("%s[%d]", field, i)
		if m.Size == 0 {
			return 0, invalid(f, "size 0")
		}
		if uint64(m.ContainerID)+uint64(m.Size) > 1<<32-1 || uint64(m.HostID)+uint64(m.Size) > 1<<32-1 {
			return 0, invalid(f, "range %d+%d or %d+%d goes past the largest id", m.ContainerID, m.Size, m.HostID, m.Size)
		}
		for j, o := range ms[:i] {
			if overlap(m.ContainerID, o.ContainerID, m.Size, o.Size) || overlap(m.HostID, o.HostID, m.Size, o.Size) {
				return 0, invalid(f, "overlaps %s[%d]", field, j)
			}
		}
		if m.ContainerID == 0 {
			root, found = m.HostID, true
		}
	}
	if !found {
		return 0, unsupported(field, "container root (id 0) is not mapped; LXC needs it mapped")
	}
	return root, nil
}

// checkDelegated refuses a mapping whose host ranges are not delegated to
// root in file (name:start:count lines, as newuidmap reads them): LXC
// would fail the start with "newuidmap: uid range ... not allowed".
func checkDelegated(field, file string, ms []specs.LinuxIDMapping) error {
	if file == "" {
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil // no such file: nothing to check against
	}
	type span struct{ start, end uint64 }
	var spans []span
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || (f[0] != "root" && f[0] != "0") {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil {
			spans = append(spans, span{start, start + count})
		}
	}
	for i, m := range ms {
		lo, hi := uint64(m.HostID), uint64(m.HostID)+uint64(m.Size)
		ok := false
		for _, sp := range spans {
			if lo >= sp.start && hi <= sp.end {
				ok = true
			}
		}
		if !ok {
			return unsupported(fmt.Sprintf("%s[%d]", field, i), "host ids %d-%d are not delegated to root in %s, so LXC's newuidmap/newgidmap would refuse the mapping at start", lo, hi-1, file).
				WithHint("on the node, add the line root:%d:%d to %s (Proxmox's documented step for a custom idmap), or map into the delegated ranges", lo, m.Size, file)
		}
	}
	return nil
}

func overlap(a, b, asize, bsize uint32) bool {
	return uint64(a) < uint64(b)+uint64(bsize) && uint64(b) < uint64(a)+uint64(asize)
}

// allowedSysctls are the only lxc.sysctl.* keys Proxmox accepts (every
// supported version): they stay raw keys, set by LXC.
var allowedSysctls = map[string]bool{
	"fs.mqueue": true, "kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true,
	"kernel.sem": true, "kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true,
	"kernel.shm_rmid_forced": true,
}

// sysctl maps linux.sysctl: the IPC keys Proxmox accepts become
// lxc.sysctl.* lines; net.* keys, which Proxmox refuses as raw keys, go
// to the init helper, which writes them in the container's network
// namespace before the process runs; anything else is refused.
func (t *translator) sysctl() error {
	if t.in.Spec.Linux == nil {
		return nil
	}
	keys := make([]string, 0, len(t.in.Spec.Linux.Sysctl))
	for k := range t.in.Spec.Linux.Sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field := "linux.sysctl[" + k + "]"
		v := t.in.Spec.Linux.Sysctl[k]
		if err := checkText(field, v); err != nil {
			return err
		}
		if allowedSysctls[k] {
			t.raw("lxc.sysctl."+k, v)
			continue
		}
		if strings.HasPrefix(k, "net.") {
			if _, err := inithelper.SysctlPath(k); err != nil {
				return invalid(field, "%v", err)
			}
			if t.req.Process == nil {
				return unsupported(field, "net.* sysctls are written by nexcage's init helper, which only runs a container that has a process")
			}
			if t.req.Process.Sysctl == nil {
				t.req.Process.Sysctl = map[string]string{}
			}
			t.req.Process.Sysctl[k] = v
			continue
		}
		return unsupported(field, "Proxmox only accepts the IPC sysctls fs.mqueue, kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, kernel.shmall, kernel.shmmax, kernel.shmmni, kernel.shm_rmid_forced, and nexcage's init helper sets net.* ones; no other sysctl can be set in a Proxmox container")
	}
	return nil
}

// misc handles the spec fields that Proxmox covers itself or cannot do.
func (t *translator) misc() error {
	s := t.in.Spec
	if err := checkHooks(s, t.req.Process != nil); err != nil {
		return err
	}
	if s.Linux != nil {
		if s.Linux.Seccomp != nil {
			t.warn("linux.seccomp is replaced by Proxmox's own seccomp profile; ignored")
		}
		if s.Linux.RootfsPropagation != "" {
			t.warn("linux.rootfsPropagation is managed by LXC; ignored")
		}
		if s.Linux.IntelRdt != nil {
			return unsupported("linux.intelRdt", "not available on Proxmox")
		}
		if s.Linux.Personality != nil {
			return unsupported("linux.personality", "not available on Proxmox")
		}
	}
	return nil
}

// finish emits the pct options in a fixed order.
func (t *translator) finish() {
	for _, name := range []string{"hostname", "ostype", "memory", "swap", "cores", "cpulimit", "cpuunits", "rootfs", "nameserver", "console", "tty"} {
		if v, ok := t.opts[name]; ok {
			t.req.Options = append(t.req.Options, pve.Option{Name: name, Value: v})
		}
	}
	for i, v := range t.mps {
		t.req.Options = append(t.req.Options, pve.Option{Name: "mp" + strconv.Itoa(i), Value: v})
	}
	for i, v := range t.nets {
		t.req.Options = append(t.req.Options, pve.Option{Name: "net" + strconv.Itoa(i), Value: v})
	}
	for i, v := range t.devs {
		t.req.Options = append(t.req.Options, pve.Option{Name: "dev" + strconv.Itoa(i), Value: v})
	}
	if v, ok := t.opts["features"]; ok {
		t.req.Options = append(t.req.Options, pve.Option{Name: "features", Value: v})
	}
	t.req.Options = append(t.req.Options,
		pve.Option{Name: "unprivileged", Value: map[bool]string{true: "1", false: "0"}[t.req.Unprivileged]},
		pve.Option{Name: "tags", Value: t.opts["tags"]})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// noControl refuses control characters (tab aside) in a path such as
// process.cwd, where they are never meant and only hide what the path is.
// (Env values may hold line breaks, as with runc: they travel to the init
// helper as JSON and never reach a Proxmox config.)
func noControl(field, v string) error {
	for _, r := range v {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return invalid(field, "value %q contains a control character", v)
		}
	}
	return nil
}
