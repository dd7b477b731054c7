package pvesim

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// Paths of the host's cgroup v1 hierarchy, consulted like Proxmox consults
// /proc/self/cgroup to choose v1 or v2 keys. Variables so tests can point
// them elsewhere.
var (
	cgroupV1Root   = "/sys/fs/cgroup"
	sysClassNet    = "/sys/class/net"
	lxcConfigDir   = "/usr/share/lxc/config"
	hostDevicePath = "/dev"
)

// volumePath returns the host path of a container volume id: a dir
// storage's `<vmid>/subvol-…` volumes live in `<path>/images/`, templates
// in `<path>/template/cache/`. An absolute path (a bind mount source) is
// returned as is.
func (n *Node) volumePath(volid string) (string, error) {
	if strings.HasPrefix(volid, "/") {
		return filepath.Clean(volid), nil
	}
	storeID, volname, err := pvecfg.ParseVolumeID(volid)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(n.StorageCfgPath())
	if err != nil {
		return "", fmt.Errorf("unable to read storage configuration - %w", err)
	}
	list, err := pvecfg.ParseStorageConfig(data)
	if err != nil {
		return "", err
	}
	st, ok := pvecfg.FindStorage(list, storeID)
	if !ok {
		return "", fmt.Errorf("storage '%s' does not exist", storeID)
	}
	if st.Path == "" {
		return "", fmt.Errorf("storage '%s' of type '%s' is not supported by the simulator", storeID, st.Type)
	}
	clean := path.Clean("/" + volname)
	if clean != "/"+volname {
		return "", fmt.Errorf("unable to parse volume ID '%s'", volid)
	}
	switch pvecfg.ContentType(volname) {
	case "rootdir", "images":
		return filepath.Join(st.Path, "images", volname), nil
	case "vztmpl":
		return filepath.Join(st.Path, "template", "cache", strings.TrimPrefix(volname, "vztmpl/")), nil
	}
	return "", fmt.Errorf("unable to parse volume ID '%s'", volid)
}

// lxcConfig is what startCT writes to var/lib/lxc/<vmid>/config, plus
// the files that config refers to (rules.seccomp) in the same directory.
type lxcConfig struct {
	text     strings.Builder
	rootfs   string            // lxc.rootfs.path: var/lib/lxc/<vmid>/rootfs
	files    map[string][]byte // name in var/lib/lxc/<vmid> -> content
	warnings []string
}

func (c *lxcConfig) add(key, value string) {
	c.text.WriteString(key)
	c.text.WriteString(" = ")
	c.text.WriteString(value)
	c.text.WriteByte('\n')
}

// lxcGen is what the generator's output depends on in the node's PVE
// version.
type lxcGen struct {
	pve9       bool // pve-container 6.x (master): abi/4.0 AppArmor lines
	entrypoint bool // pve-container >= 6.0.15: entrypoint becomes lxc.init.cmd
	devShm     bool // pve-container >= 6.1.10: /dev/shm tmpfs for application containers
}

// lxcGen is what the node's version changes in the generated config:
// PVE 9 (pve-container 6.x, master) adds the abi/4.0 AppArmor rules; the
// simulated 9.1 node (pve-container 6.1.10) knows entrypoint and mounts
// /dev/shm for application containers. Before 9.1 an `entrypoint` key in
// a config is an unknown setting that update_lxc_config never reads.
func (n *Node) lxcGen() lxcGen {
	v := n.PVEVersion()
	return lxcGen{pve9: v >= pvecfg.V9_0, entrypoint: v >= pvecfg.V9_1, devShm: v >= pvecfg.V9_1}
}

// keptRawLines are the raw lxc.* lines of conf that the node's version
// keeps: the config loader drops refused keys (with the real warning), so
// every line left in conf.Raw reaches LXC, in file order.
func (n *Node) keptRawLines(conf *pvecfg.Config) []pvecfg.RawLine { return conf.Raw }

// hasRaw is PVE::LXC::Config->has_lxc_entry.
func hasRaw(raw []pvecfg.RawLine, key string) bool {
	for _, r := range raw {
		if r.Key == key {
			return true
		}
	}
	return false
}

// buildLxcConfig turns a container's .conf into the LXC configuration
// the way pve-container's update_lxc_config does, line for line in its
// order, with the adaptations this host needs (docs/PVESIM.md lists
// them): cgroup v1 keys where the host has cgroup v1 (as PVE 8 wrote
// them), no console, LXC choosing the cgroup names, device passthrough
// through mount entries, and env as `lxc.environment` because LXC 5 has
// no `lxc.environment.runtime`. Mount points are not in it: startCT
// mounts them under rootfs before LXC runs, as Proxmox's pre-start hook
// does.
func (n *Node) buildLxcConfig(vmid int, conf *pvecfg.Config) (*lxcConfig, error) {
	c := &lxcConfig{files: map[string][]byte{}}
	opt := func(k string) string { v, _ := conf.Get(k); return v }
	gen := n.lxcGen()
	raw := n.keptRawLines(conf)

	arch := opt("arch")
	if arch == "" {
		arch = "amd64"
	}
	c.add("lxc.arch", arch)

	customIDMap := hasRaw(raw, "lxc.idmap")
	unpriv := opt("unprivileged") == "1" || customIDMap

	ostype := opt("ostype")
	if ostype == "" {
		ostype = "unmanaged"
	}
	inc := filepath.Join(lxcConfigDir, ostype+".common.conf")
	if !fileExists(inc) {
		inc = filepath.Join(lxcConfigDir, "common.conf")
	}
	c.add("lxc.include", inc)
	if unpriv {
		inc = filepath.Join(lxcConfigDir, ostype+".userns.conf")
		if !fileExists(inc) {
			inc = filepath.Join(lxcConfigDir, "userns.conf")
		}
		c.add("lxc.include", inc)
	}

	features, _ := pvecfg.ParseProps(opt("features"), "")
	feature := func(k string) bool { v, _ := features.Get(k); return v == "1" }
	if err := n.seccompConfig(c, vmid, raw, unpriv, feature); err != nil {
		return nil, err
	}
	apparmorConfig(c, gen, raw, features)
	if feature("fuse") && fileExists(filepath.Join(hostDevicePath, "fuse")) {
		c.add("lxc.apparmor.raw", "mount fstype=fuse,")
		c.add("lxc.mount.entry", "/dev/fuse dev/fuse none bind,create=file 0 0")
	}
	if unpriv && !feature("force_rw_sys") {
		c.add("lxc.mount.auto", "sys:mixed")
	}
	if ep, ok := conf.Get("entrypoint"); ok && ep != "/sbin/init" && gen.entrypoint && gen.devShm {
		// No init system sets /dev/shm up in an application container.
		c.add("lxc.mount.entry", "shm dev/shm tmpfs rw,nosuid,nodev,create=dir 0 0")
	}

	devKeys := numberedKeys(conf, "dev")
	for _, k := range devKeys {
		dev, err := pvecfg.ParseProps(opt(k), "path")
		if err != nil {
			return nil, fmt.Errorf("unable to parse %s: %w", k, err)
		}
		p, _ := dev.Get("path")
		var st unixStat
		if err := statDevice(p, &st); err != nil {
			return nil, fmt.Errorf("%s: passthrough device '%s' - %w", k, p, err)
		}
		perms := "rw"
		if v, _ := dev.Get("deny-write"); v == "1" {
			perms = "r"
		}
		c.add(devicesKey("allow"), fmt.Sprintf("%c %d:%d %s", st.kind, st.major, st.minor, perms))
		if perms == "r" {
			c.add(devicesKey("deny"), fmt.Sprintf("%c %d:%d w", st.kind, st.major, st.minor))
		}
		// Proxmox creates the node in the container's /dev from its
		// autodev hook; an LXC mount entry (applied after autodev) has
		// the same result here.
		rel := strings.TrimPrefix(path.Clean(p), "/")
		c.add("lxc.mount.entry", fmt.Sprintf("%s %s none bind,create=file 0 0", escapeMountField(p), escapeMountField(rel)))
	}

	c.add("lxc.monitor.unshare", "1")
	if unpriv && !customIDMap {
		c.add("lxc.idmap", "u 0 100000 65536")
		c.add("lxc.idmap", "g 0 100000 65536")
	}
	// The simulator never allocates a console: init inherits lxc-start's
	// stdio, so its stdout is discarded and its stderr lands in
	// /run/pve/ct-<vmid>.stderr as the reference describes.
	c.add("lxc.console.path", "none")
	if cgroupV1Has("devices") || cgroupV2Mode() {
		c.add(devicesKey("deny"), "c 5:1 rwm")
	}
	tty := opt("tty")
	if tty == "" {
		tty = "2"
	}
	c.add("lxc.tty.max", tty)
	c.add("lxc.environment", "TERM=linux")

	hostname := opt("hostname")
	if hostname == "" {
		hostname = "CT" + strconv.Itoa(vmid)
	}
	c.add("lxc.uts.name", hostname)

	limits(c, opt)

	if opt("rootfs") == "" {
		return nil, errors.New("missing 'rootfs' configuration")
	}
	c.rootfs = n.ctRootfsDir(vmid)
	c.add("lxc.rootfs.path", c.rootfs)

	if ep, ok := conf.Get("entrypoint"); ok && gen.entrypoint {
		c.add("lxc.init.cmd", ep)
	}

	if err := n.netBlocks(vmid, conf, c); err != nil {
		return nil, err
	}

	for _, e := range conf.Env {
		c.add("lxc.environment", e) // LXC 5 knows no lxc.environment.runtime
	}

	hadCpuset := false
	for _, r := range raw {
		key := r.Key
		if key == pvecfg.EnvKey {
			key = "lxc.environment" // LXC 5 knows no .runtime variant
		}
		if key == "lxc.cgroup2.cpuset.cpus" || (!gen.pve9 && key == "lxc.cgroup.cpuset.cpus") {
			hadCpuset = true
		}
		c.add(key, r.Value)
	}
	if cores := atoiDefault(opt("cores"), 0); cores > 0 && !hadCpuset {
		if key, set := cpusetOf(cores); set != "" {
			c.add(key, set)
		}
	}
	return c, nil
}

// limits writes the memory and cpu lines: PVE 8's cgroup v1 keys where
// the host mounts the v1 controllers (PVE 9 supports only cgroup v2),
// else PVE 9's cgroup v2 keys.
func limits(c *lxcConfig, opt func(string) string) {
	memory := atoiDefault(opt("memory"), 512)
	if memory == 0 {
		memory = 512
	}
	swap := atoiDefault(opt("swap"), 0)
	switch {
	case cgroupV1Has("memory"):
		c.add("lxc.cgroup.memory.limit_in_bytes", strconv.FormatInt(int64(memory)<<20, 10))
		// memsw exists only with swap accounting enabled in the kernel;
		// LXC refuses the key without it.
		if fileExists(filepath.Join(cgroupV1Root, "memory", "memory.memsw.limit_in_bytes")) {
			c.add("lxc.cgroup.memory.memsw.limit_in_bytes", strconv.FormatInt(int64(memory+swap)<<20, 10))
		}
	case cgroupV2Has("memory"):
		high := int64(memory) * 1024 * 1016
		if memory >= 16*1024 {
			high = int64(memory-128) << 20
		}
		c.add("lxc.cgroup2.memory.max", strconv.FormatInt(int64(memory)<<20, 10))
		c.add("lxc.cgroup2.memory.high", strconv.FormatInt(high, 10))
		c.add("lxc.cgroup2.memory.swap.max", strconv.FormatInt(int64(swap)<<20, 10))
	}
	cpulimit := 0.0
	if cl := opt("cpulimit"); cl != "" {
		cpulimit, _ = strconv.ParseFloat(cl, 64)
	}
	switch {
	case cgroupV1Has("cpu"):
		if cpulimit > 0 {
			c.add("lxc.cgroup.cpu.cfs_period_us", "100000")
			c.add("lxc.cgroup.cpu.cfs_quota_us", strconv.Itoa(int(100000*cpulimit)))
		}
		c.add("lxc.cgroup.cpu.shares", strconv.Itoa(clampCPUShares(opt("cpuunits"))))
	case cgroupV2Has("cpu"):
		if cpulimit > 0 {
			c.add("lxc.cgroup2.cpu.max", strconv.Itoa(int(100000*cpulimit))+" 100000")
		}
		if u := opt("cpuunits"); u != "" {
			c.add("lxc.cgroup2.cpu.weight", strconv.Itoa(clampCPUWeight(u)))
		}
	}
}

// seccompConfig is make_seccomp_config: nothing for privileged
// containers (the included common.conf has LXC's default profile) or
// when a raw lxc.seccomp.profile is set; for unprivileged ones a
// rules.seccomp next to the config, LXC's common.seccomp plus Proxmox's
// extra rules (keyctl unless features keyctl=1, btrfs ioctls, AF_ALG
// sockets).
func (n *Node) seccompConfig(c *lxcConfig, vmid int, raw []pvecfg.RawLine, unpriv bool, feature func(string) bool) error {
	if hasRaw(raw, "lxc.seccomp.profile") {
		var used []string
		for _, f := range []string{"keyctl", "mknod"} {
			if feature(f) {
				used = append(used, f)
			}
		}
		if len(used) > 0 {
			c.warnings = append(c.warnings, "explicitly configured lxc.seccomp.profile overrides the following settings: "+strings.Join(used, ", "))
		}
		return nil
	}
	if !unpriv {
		return nil
	}
	// mknod=1 needs pve-lxc-syscalld's notify proxy, which this host
	// does not run: the feature adds no rules here (docs/PVESIM.md).
	rules := map[string][]string{
		"ioctl":  {"errno 1 [1,0x9400,SCMP_CMP_MASKED_EQ,0xff00]"},
		"socket": {"errno 97 [0,38,SCMP_CMP_EQ]"},
	}
	if !feature("keyctl") {
		rules["keyctl"] = []string{"errno 38"}
	}
	names := make([]string, 0, len(rules))
	for k := range rules {
		names = append(names, k)
	}
	sort.Strings(names)
	var extra strings.Builder
	for _, k := range names {
		for _, r := range rules[k] {
			extra.WriteString(k + " " + r + "\n")
		}
	}
	base, err := os.ReadFile(filepath.Join(lxcConfigDir, "common.seccomp"))
	if err != nil {
		return fmt.Errorf("unable to read LXC's seccomp profile: %w", err)
	}
	c.files["rules.seccomp"] = append(base, extra.String()...)
	c.add("lxc.seccomp.profile", filepath.Join(n.ctDir(vmid), "rules.seccomp"))
	return nil
}

// apparmorConfig is make_apparmor_config: the generated profile with its
// raw rules, unless a raw lxc.apparmor.profile overrides it. This host
// has no AppArmor, so LXC reads these lines and applies nothing.
func apparmorConfig(c *lxcConfig, gen lxcGen, raw []pvecfg.RawLine, features pvecfg.Props) {
	var lines [][2]string
	add := func(k, v string) { lines = append(lines, [2]string{k, v}) }
	add("lxc.apparmor.profile", "generated")
	if gen.pve9 {
		add("lxc.apparmor.raw", "allow mqueue,")
	}
	var uses []string
	if v, _ := features.Get("fuse"); v == "1" {
		uses = append(uses, "features:fuse")
	}
	if v, _ := features.Get("nesting"); v == "1" {
		uses = append(uses, "features:nesting")
		add("lxc.apparmor.allow_nesting", "1")
		if gen.pve9 {
			add("lxc.apparmor.raw", "allow userns,")
		}
	} else {
		add("lxc.apparmor.raw", "deny mount -> /proc/,")
		add("lxc.apparmor.raw", "deny mount -> /sys/,")
	}
	if mount, ok := features.Get("mount"); ok && mount != "" {
		uses = append(uses, "features:mount")
		for _, fs := range strings.FieldsFunc(mount, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
			add("lxc.apparmor.raw", "mount fstype="+fs+",")
		}
	}
	if hasRaw(raw, "lxc.apparmor.profile") {
		if len(uses) > 0 {
			c.warnings = append(c.warnings, "explicitly configured lxc.apparmor.profile overrides the following settings: "+strings.Join(uses, ", "))
		}
		return
	}
	for _, l := range lines {
		c.add(l[0], l[1])
	}
}

// devicesKey is the devices controller key of the host's cgroup version.
func devicesKey(what string) string {
	if cgroupV1Has("devices") {
		return "lxc.cgroup.devices." + what
	}
	return "lxc.cgroup2.devices." + what
}

// escapeMountField escapes a path for an fstab-style field, which LXC
// splits at blanks.
func escapeMountField(s string) string {
	r := strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`)
	return r.Replace(s)
}

// numberedKeys returns the options named <prefix><N>, sorted by N.
func numberedKeys(conf *pvecfg.Config, prefix string) []string {
	type kn struct {
		key string
		n   int
	}
	var list []kn
	for k := range conf.Options {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || rest == "" {
			continue
		}
		i, err := strconv.Atoi(rest)
		if err != nil || strconv.Itoa(i) != rest {
			continue
		}
		list = append(list, kn{k, i})
	}
	sort.Slice(list, func(a, b int) bool { return list[a].n < list[b].n })
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = x.key
	}
	return out
}

// clampCPUShares mirrors PVE::CGroup::clamp_cpu_shares for cgroup v1:
// default 1024, range 2..262144.
func clampCPUShares(v string) int {
	if v == "" {
		return 1024
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 1024
	}
	if n < 2 {
		return 2
	}
	if n > 262144 {
		return 262144
	}
	return n
}

// cpusetOf picks the first n cpus of the host's effective cpuset and
// returns the key for the host's cgroup version with them. Proxmox picks
// them at random; first-n keeps runs reproducible.
func cpusetOf(n int) (string, string) {
	key := "lxc.cgroup.cpuset.cpus"
	b, err := os.ReadFile(filepath.Join(cgroupV1Root, "cpuset", "cpuset.effective_cpus"))
	if err != nil {
		key = "lxc.cgroup2.cpuset.cpus"
		if b, err = os.ReadFile(filepath.Join(cgroupV1Root, "cpuset.cpus.effective")); err != nil {
			return "", ""
		}
	}
	cpus := parseCPUList(strings.TrimSpace(string(b)))
	if len(cpus) == 0 {
		return "", ""
	}
	if n < len(cpus) {
		cpus = cpus[:n]
	}
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = strconv.Itoa(c)
	}
	return key, strings.Join(parts, ",")
}

func parseCPUList(s string) []int {
	var out []int
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out
}

func cgroupV1Has(controller string) bool {
	return fileExists(filepath.Join(cgroupV1Root, controller, "cgroup.procs"))
}

// cgroupV2Mode reports a unified (cgroup v2) hierarchy at the cgroup root.
func cgroupV2Mode() bool {
	return fileExists(filepath.Join(cgroupV1Root, "cgroup.controllers"))
}

// cgroupV2Has reports whether the unified hierarchy offers controller.
func cgroupV2Has(controller string) bool {
	b, err := os.ReadFile(filepath.Join(cgroupV1Root, "cgroup.controllers"))
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == controller {
			return true
		}
	}
	return false
}

// clampCPUWeight is PVE::CGroup::clamp_cpu_shares for cgroup v2:
// range 1..10000.
func clampCPUWeight(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 100
	}
	return min(max(n, 1), 10000)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func atoiDefault(s string, def int) int {
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
