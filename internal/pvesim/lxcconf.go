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

// lxcConfig is what startCT writes to var/lib/lxc/<vmid>/config.
type lxcConfig struct {
	text     strings.Builder
	rootfs   string
	warnings []string
}

func (c *lxcConfig) add(key, value string) {
	c.text.WriteString(key)
	c.text.WriteString(" = ")
	c.text.WriteString(value)
	c.text.WriteByte('\n')
}

// buildLxcConfig turns a container's .conf into the LXC configuration the
// way pve-container's update_lxc_config does on a cgroup v1 host, with
// the simulator's adaptations (see docs/PVESIM.md): no AppArmor, no
// console, LXC choosing the cgroup names, mount points as LXC mount
// entries, and env as `lxc.environment` because LXC 5 has no
// `lxc.environment.runtime`.
func (n *Node) buildLxcConfig(vmid int, conf *pvecfg.Config) (*lxcConfig, error) {
	c := &lxcConfig{}
	opt := func(k string) string { v, _ := conf.Get(k); return v }

	arch := opt("arch")
	if arch == "" {
		arch = "amd64"
	}
	c.add("lxc.arch", arch)

	unpriv := opt("unprivileged") == "1"
	customIDMap := false
	for _, r := range conf.Raw {
		if r.Key == "lxc.idmap" {
			customIDMap = true
		}
	}
	userns := unpriv || customIDMap

	ostype := opt("ostype")
	if ostype == "" {
		ostype = "unmanaged"
	}
	inc := filepath.Join(lxcConfigDir, ostype+".common.conf")
	if !fileExists(inc) {
		inc = filepath.Join(lxcConfigDir, "common.conf")
	}
	c.add("lxc.include", inc)
	if userns {
		inc = filepath.Join(lxcConfigDir, ostype+".userns.conf")
		if !fileExists(inc) {
			inc = filepath.Join(lxcConfigDir, "userns.conf")
		}
		c.add("lxc.include", inc)
	}

	features, _ := pvecfg.ParseProps(opt("features"), "")
	// No AppArmor on the simulator's hosts; Proxmox would generate a
	// profile here.
	c.add("lxc.apparmor.profile", "unconfined")
	if v, _ := features.Get("fuse"); v == "1" && fileExists(filepath.Join(hostDevicePath, "fuse")) {
		c.add("lxc.mount.entry", "/dev/fuse dev/fuse none bind,create=file 0 0")
	}
	if v, _ := features.Get("force_rw_sys"); userns && v != "1" {
		c.add("lxc.mount.auto", "sys:mixed")
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
		c.add("lxc.cgroup.devices.allow", fmt.Sprintf("%c %d:%d rw", st.kind, st.major, st.minor))
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
	if cgroupV1Has("devices") {
		c.add("lxc.cgroup.devices.deny", "c 5:1 rwm")
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

	if cgroupV1Has("memory") {
		memory := atoiDefault(opt("memory"), 512)
		swap := atoiDefault(opt("swap"), 0)
		c.add("lxc.cgroup.memory.limit_in_bytes", strconv.FormatInt(int64(memory)<<20, 10))
		// memsw exists only with swap accounting enabled in the kernel.
		if fileExists(filepath.Join(cgroupV1Root, "memory", "memory.memsw.limit_in_bytes")) {
			c.add("lxc.cgroup.memory.memsw.limit_in_bytes", strconv.FormatInt(int64(memory+swap)<<20, 10))
		}
	}
	if cgroupV1Has("cpu") {
		if cl := opt("cpulimit"); cl != "" && cl != "0" {
			f, err := strconv.ParseFloat(cl, 64)
			if err == nil && f > 0 {
				c.add("lxc.cgroup.cpu.cfs_period_us", "100000")
				c.add("lxc.cgroup.cpu.cfs_quota_us", strconv.Itoa(int(100000*f)))
			}
		}
		c.add("lxc.cgroup.cpu.shares", strconv.Itoa(clampCPUShares(opt("cpuunits"))))
	}

	rootfsOpt := opt("rootfs")
	if rootfsOpt == "" {
		return nil, errors.New("missing 'rootfs' configuration")
	}
	rootProps, err := pvecfg.ParseProps(rootfsOpt, "volume")
	if err != nil {
		return nil, fmt.Errorf("unable to parse rootfs: %w", err)
	}
	vol, _ := rootProps.Get("volume")
	c.rootfs, err = n.volumePath(vol)
	if err != nil {
		return nil, err
	}
	c.add("lxc.rootfs.path", c.rootfs)
	if ro, _ := rootProps.Get("ro"); ro == "1" {
		c.add("lxc.rootfs.options", "ro")
	}

	if err := n.netBlocks(vmid, conf, c); err != nil {
		return nil, err
	}

	mounts, err := n.mountEntries(conf)
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		c.add("lxc.mount.entry", m)
	}
	for _, k := range devKeys {
		dev, _ := pvecfg.ParseProps(opt(k), "path")
		p, _ := dev.Get("path")
		rel := strings.TrimPrefix(path.Clean(p), "/")
		c.add("lxc.mount.entry", fmt.Sprintf("%s %s none bind,create=file 0 0", escapeMountField(p), escapeMountField(rel)))
	}

	if ep := opt("entrypoint"); ep != "" {
		c.add("lxc.init.cmd", ep)
	}
	for _, e := range conf.Env {
		c.add("lxc.environment", e)
	}

	hadCpuset := false
	for _, r := range conf.Raw {
		key := r.Key
		if key == pvecfg.EnvKey {
			key = "lxc.environment" // LXC 5 knows no .runtime variant
		}
		if key == "lxc.cgroup.cpuset.cpus" || key == "lxc.cgroup2.cpuset.cpus" {
			hadCpuset = true
		}
		c.add(key, r.Value)
	}
	if cores := atoiDefault(opt("cores"), 0); cores > 0 && !hadCpuset && cgroupV1Has("cpuset") {
		if set := cpusetOf(cores); set != "" {
			c.add("lxc.cgroup.cpuset.cpus", set)
		}
	}
	return c, nil
}

// mountEntries turns mpN options into LXC mount entries, sorted by the
// mount path so parents are mounted first (Proxmox mounts them in that
// order in its pre-start hook).
func (n *Node) mountEntries(conf *pvecfg.Config) ([]string, error) {
	type mp struct{ target, entry string }
	var list []mp
	for _, k := range numberedKeys(conf, "mp") {
		v, _ := conf.Get(k)
		props, err := pvecfg.ParseProps(v, "volume")
		if err != nil {
			return nil, fmt.Errorf("unable to parse %s: %w", k, err)
		}
		vol, _ := props.Get("volume")
		target, _ := props.Get("mp")
		if vol == "" || target == "" {
			return nil, fmt.Errorf("%s: missing volume or mount path", k)
		}
		if err := pvecfg.VerifyMountPath(target); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if strings.HasPrefix(vol, "/dev/") {
			return nil, fmt.Errorf("%s: device mount points are not supported by the simulator", k)
		}
		src, err := n.volumePath(vol)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("%s: mount point source '%s' - %w", k, src, err)
		}
		opts := "bind"
		if st.IsDir() {
			opts += ",create=dir"
		} else {
			opts += ",create=file"
		}
		if ro, _ := props.Get("ro"); ro == "1" {
			opts += ",ro"
		}
		if mo, ok := props.Get("mountoptions"); ok {
			for _, o := range strings.Split(mo, ";") {
				switch o {
				case "noexec", "nosuid", "nodev", "noatime", "lazytime":
					opts += "," + o
				}
			}
		}
		rel := strings.TrimPrefix(path.Clean("/"+target), "/")
		list = append(list, mp{target: rel, entry: fmt.Sprintf("%s %s none %s 0 0", escapeMountField(src), escapeMountField(rel), opts)})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].target < list[j].target })
	out := make([]string, len(list))
	for i, m := range list {
		out[i] = m.entry
	}
	return out, nil
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

// cpusetOf picks the first n cpus of the host's effective cpuset.
// Proxmox picks them at random; first-n keeps runs reproducible.
func cpusetOf(n int) string {
	b, err := os.ReadFile(filepath.Join(cgroupV1Root, "cpuset", "cpuset.effective_cpus"))
	if err != nil {
		return ""
	}
	cpus := parseCPUList(strings.TrimSpace(string(b)))
	if len(cpus) == 0 {
		return ""
	}
	if n < len(cpus) {
		cpus = cpus[:n]
	}
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
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
