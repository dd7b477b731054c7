package pvesim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// pctStart is `pct start <vmid> [--skiplock] [--debug]`. With --debug
// Proxmox prints LXC's debug log, where a failed pre-start hook's own
// message is (the simulator prints just that line of it).
func (n *Node) pctStart(c *call) error {
	err := n.doStart(c.vmid, c.flag("skiplock"))
	var pe *prestartError
	if c.flag("debug") && errors.As(err, &pe) {
		n.warnf("%s\n", pe.debugLine())
	}
	return err
}

func (n *Node) doStart(vmid int, skiplock bool) error {
	if _, err := n.loadConf(vmid); err != nil {
		return err
	}
	if running, _, err := n.ctStatus(vmid); err != nil {
		return err
	} else if running {
		return dief("CT %d already running", vmid)
	}
	return n.lockConfig(vmid, func() error {
		conf, err := n.loadConfQuiet(vmid)
		if err != nil {
			return err
		}
		if !skiplock && !hasLock(conf, "mounted") {
			if err := checkLock(conf); err != nil {
				return err
			}
		}
		if conf.HasPending() {
			// vm_start applies pending changes, writes and re-reads.
			applyPending(conf)
			if err := n.writeConf(vmid, conf); err != nil {
				return err
			}
			if conf, err = n.loadConf(vmid); err != nil {
				return err
			}
		}
		return n.startCT(vmid, conf)
	})
}

// pctStop is `pct stop <vmid>`: an immediate kill.
func (n *Node) pctStop(c *call) error {
	vmid := c.vmid
	if _, err := n.loadConf(vmid); err != nil {
		return err
	}
	if err := n.requireRunning(vmid); err != nil {
		return err
	}
	return n.lockConfig(vmid, func() error {
		conf, err := n.loadConfQuiet(vmid)
		if err != nil {
			return err
		}
		if !c.flag("skiplock") && !hasLock(conf, "mounted") {
			if err := checkLock(conf); err != nil {
				return err
			}
		}
		return n.stopCT(vmid)
	})
}

// pctShutdown is `pct shutdown <vmid> [--timeout N] [--forceStop 1]`.
func (n *Node) pctShutdown(c *call) error {
	vmid := c.vmid
	timeout := 60 * time.Second
	if s, ok := c.opts["timeout"]; ok {
		t, _ := strconv.Atoi(s)
		timeout = time.Duration(t) * time.Second
	}
	if _, err := n.loadConf(vmid); err != nil {
		return err
	}
	if err := n.requireRunning(vmid); err != nil {
		return err
	}
	return n.lockConfig(vmid, func() error {
		conf, err := n.loadConfQuiet(vmid)
		if err != nil {
			return err
		}
		if err := checkLock(conf); err != nil {
			return err
		}
		return n.shutdownCT(vmid, timeout, c.flag("forceStop"))
	})
}

func (n *Node) requireRunning(vmid int) error {
	running, _, err := n.ctStatus(vmid)
	if err != nil {
		return err
	}
	if !running {
		return dief("CT %d not running", vmid)
	}
	return nil
}

// pctDestroy is `pct destroy <vmid> [--force] [--purge] [--destroy-unreferenced-disks]`
// (destroy_vm, PVE 8 and 9): refuses a protected or locked CT and, unless
// forced, a running one; then, holding the config lock, frees the volumes
// the config names (destroy_lxc_container), with
// --destroy-unreferenced-disks also every other volume of the vmid on the
// container storages, replaces the config by `lock: destroyed`, and
// finally removes it (and the .vmlist entry). --purge removes the vmid
// from backup/replication jobs and HA, which pvesim does not have: it only
// prints the line. On a real node this runs in a task worker, so its
// warnings reach pct's stdout; errors go to stderr.
func (n *Node) pctDestroy(c *call) error {
	vmid := c.vmid
	early := func(conf *pvecfg.Config) error {
		if v, _ := conf.Get("protection"); v == "1" {
			return dief("can't remove CT %d - protection mode enabled", vmid)
		}
		return checkLock(conf)
	}
	conf, err := n.loadConf(vmid)
	if err != nil {
		return err
	}
	if err := early(conf); err != nil {
		return err
	}
	running, _, err := n.ctStatus(vmid)
	if err != nil {
		return err
	}
	if running && !c.flag("force") {
		return dief("unable to destroy CT %d - container is running", vmid)
	}
	w := *n // the task worker's view: stderr is the task output
	w.Stderr = w.Stdout
	return taskError(w.lockConfig(vmid, func() error {
		conf, err := w.loadConfQuiet(vmid)
		if err != nil {
			return err
		}
		if err := early(conf); err != nil {
			return err
		}
		if running, _, err := w.ctStatus(vmid); err != nil {
			return err
		} else if running {
			if !c.flag("force") {
				return dief("unable to destroy CT %d - container is running", vmid)
			}
			fmt.Fprintf(w.Stderr, "forced to stop CT %d before destroying!\n", vmid)
			if err := w.stopCT(vmid); err != nil {
				return err
			}
		}
		if err := w.destroyContainer(vmid, conf, c.flag("destroy-unreferenced-disks")); err != nil {
			return err
		}
		n.killDHClients(vmid) // their pid files go with the directory
		if c.flag("purge") {
			fmt.Fprintf(w.Stdout, "purging CT %d from related configurations..\n", vmid)
		}
		// "only now remove the zombie config, else we can have reuse race"
		w.unregisterVMID(vmid)
		return nil
	}))
}

// destroyContainer is PVE::LXC::destroy_lxc_container with the
// replacement config {lock: destroyed}: free every volume the config
// names (rootfs, mpN, unusedN; bind and device mounts are not volumes),
// once each and only when the CT owns it; with unreferenced also every
// volume of the vmid on the storages that hold container or VM disks;
// then remove the LXC directory the way Proxmox does (rmdir rootfs,
// unlink config, rmdir: a still mounted rootfs stays) and write the
// placeholder config.
func (n *Node) destroyContainer(vmid int, conf *pvecfg.Config, unreferenced bool) error {
	seen := map[string]bool{}
	for _, k := range volumeKeys(conf) {
		p, err := pvecfg.ParseProps(conf.Options[k], "volume")
		if err != nil {
			continue
		}
		vol, _ := p.Get("volume")
		if vol == "" || strings.HasPrefix(vol, "/") || seen[vol] {
			continue // bind and device mounts are not ours to delete
		}
		seen[vol] = true
		if err := n.freeVolume(vmid, vol); err != nil {
			return err
		}
	}
	if unreferenced {
		vols, err := n.listVMIDVolumes(vmid)
		if err != nil {
			return err
		}
		for _, path := range vols {
			if err := os.RemoveAll(path); err != nil {
				fmt.Fprintf(n.Stderr, "%v\n", err) // vdisk_free errors are warnings here
				continue
			}
			os.Remove(filepath.Dir(path)) // images/<vmid> when empty
		}
	}
	n.removeCtDir(vmid)
	placeholder := pvecfg.NewConfig()
	placeholder.Set("lock", "destroyed")
	return n.writeConf(vmid, placeholder)
}

// volumeKeys are the volume keys of conf in foreach_volume_full's order
// (include_unused): rootfs, mp0, mp1, ..., unused0, unused1, ...
func volumeKeys(conf *pvecfg.Config) []string {
	var keys []string
	if _, ok := conf.Get("rootfs"); ok {
		keys = append(keys, "rootfs")
	}
	for _, prefix := range []string{"mp", "unused"} {
		var idx []int
		for k := range conf.Options {
			if m := reVolKey.FindStringSubmatch(k); m != nil && m[1] == prefix {
				i, _ := strconv.Atoi(m[2])
				idx = append(idx, i)
			}
		}
		sort.Ints(idx)
		for _, i := range idx {
			keys = append(keys, prefix+strconv.Itoa(i))
		}
	}
	return keys
}

var (
	reVolKey = regexp.MustCompile(`^(mp|unused)(0|[1-9]\d*)$`)
	// reImageVol is a dir storage's image volume name, images/<owner>/<file>
	// (Plugin::parse_volname with parse_name_dir's file name check).
	reImageVol = regexp.MustCompile(`^(\d+)/([^/\s]+\.(?:raw|qcow2|vmdk|subvol)|subvol-\d+-[^/\s]+)$`)
)

// freeVolume is delete_mountpoint_volume: vdisk_free when vmid owns the
// volume, else a warning. Volumes that are not images (a template named
// as a mount point, say) have no owner: warned about and kept.
func (n *Node) freeVolume(vmid int, vol string) error {
	_, volname, err := pvecfg.ParseVolumeID(vol)
	if err != nil {
		return dief("unable to parse volume ID '%s'", vol)
	}
	owner := ""
	switch pvecfg.ContentType(volname) {
	case "":
		return dief("unable to parse directory volume name '%s'", volname)
	case "images", "rootdir":
		m := reImageVol.FindStringSubmatch(volname)
		if m == nil {
			return dief("unable to parse volume filename '%s'", volname[strings.Index(volname, "/")+1:])
		}
		owner = m[1]
	}
	if owner != strconv.Itoa(vmid) {
		fmt.Fprintf(n.Stderr, "ignore deletion of '%s', CT %d isn't the owner!\n", vol, vmid)
		return nil
	}
	path, err := n.volumePath(vol)
	if err != nil {
		return dief("%v", err)
	}
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	os.Remove(filepath.Dir(path)) // free_image: rmdir images/<vmid> when empty
	return nil
}

// listVMIDVolumes is vdisk_list(storage_cfg, undef, vmid, undef, 'rootdir'):
// the image volumes owned by vmid on every storage that may hold
// container disks.
func (n *Node) listVMIDVolumes(vmid int) ([]string, error) {
	storages, err := n.readStorages()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, s := range storages {
		if s.Path == "" || !s.HasContent("rootdir") {
			continue
		}
		dir := filepath.Join(s.Path, "images", strconv.Itoa(vmid))
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if reImageVol.MatchString(strconv.Itoa(vmid) + "/" + e.Name()) {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
	}
	return paths, nil
}

// pctStatus is `pct status <vmid> [--verbose]`.
func (n *Node) pctStatus(c *call) error {
	vmid := c.vmid
	conf, err := n.loadConf(vmid)
	if err != nil {
		return err
	}
	st, err := n.vmStatus(vmid, conf)
	if err != nil {
		return err
	}
	if !c.flag("verbose") {
		fmt.Fprintf(n.Stdout, "status: %s\n", st["status"])
		return nil
	}
	for _, k := range sortedKeysOf(st) {
		fmt.Fprintf(n.Stdout, "%s: %s\n", k, st[k])
	}
	return nil
}

// vmStatus is PVE::LXC::vmstatus for one container (the keys that make
// sense in the simulator).
func (n *Node) vmStatus(vmid int, conf *pvecfg.Config) (map[string]string, error) {
	running, pid, err := n.ctStatus(vmid)
	if err != nil {
		return nil, err
	}
	st := map[string]string{
		"vmid":   strconv.Itoa(vmid),
		"type":   "lxc",
		"status": "stopped",
		"name":   ctName(vmid, conf),
		"cpu":    "0",
		"mem":    "0",
		"swap":   "0",
		"disk":   "0",
		"netin":  "0", "netout": "0", "diskread": "0", "diskwrite": "0",
		"uptime": "0",
	}
	cpus := strconv.Itoa(hostCPUs())
	if v, ok := conf.Get("cores"); ok {
		cpus = v
	}
	if v, ok := conf.Get("cpulimit"); ok && v != "0" {
		cpus = v
	}
	st["cpus"] = cpus
	mem := int64(512)
	if v, ok := conf.Get("memory"); ok {
		mem, _ = strconv.ParseInt(v, 10, 64)
	}
	st["maxmem"] = strconv.FormatInt(mem<<20, 10)
	swap := int64(512)
	if v, ok := conf.Get("swap"); ok {
		swap, _ = strconv.ParseInt(v, 10, 64)
	}
	st["maxswap"] = strconv.FormatInt(swap<<20, 10)
	st["maxdisk"] = "0"
	if v, ok := conf.Get("rootfs"); ok {
		if p, err := pvecfg.ParseProps(v, "volume"); err == nil {
			if s, ok := p.Get("size"); ok {
				if b, ok := pvecfg.ParseSize(s); ok {
					st["maxdisk"] = strconv.FormatInt(b, 10)
				}
			}
		}
	}
	if l, ok := conf.Get("lock"); ok {
		st["lock"] = l
	}
	if t, ok := conf.Get("tags"); ok {
		st["tags"] = t
	}
	if running {
		st["status"] = "running"
		st["pid"] = strconv.Itoa(pid)
		st["uptime"] = strconv.FormatInt(processUptime(pid), 10)
	}
	return st, nil
}

func ctName(vmid int, conf *pvecfg.Config) string {
	if h, ok := conf.Get("hostname"); ok && h != "" {
		return h
	}
	return "CT" + strconv.Itoa(vmid)
}

func hostCPUs() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	n := strings.Count(string(data), "\nprocessor")
	if strings.HasPrefix(string(data), "processor") {
		n++
	}
	if n == 0 {
		n = 1
	}
	return n
}

// processUptime is the age of pid in seconds, from /proc.
func processUptime(pid int) int64 {
	fi, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return 0
	}
	return int64(time.Since(fi.ModTime()).Seconds())
}

// pctExec is `pct exec <vmid> [<extra-args>]`: runs the command in the
// container and exits with its status.
func (n *Node) pctExec(c *call) error {
	vmid := c.vmid
	if _, err := n.loadConf(vmid); err != nil {
		return err
	}
	running, _, err := n.ctStatus(vmid)
	if err != nil {
		return err
	}
	if !running {
		return dief("container '%d' not running!", vmid)
	}
	if len(c.extra) == 0 {
		return dief("missing command")
	}
	code, err := n.execCT(vmid, c.extra)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitCode{code: code}
	}
	return nil
}

// pctUnlock is `pct unlock <vmid>`: AbstractConfig::remove_lock without a
// lock name.
func (n *Node) pctUnlock(c *call) error {
	return n.lockConfig(c.vmid, func() error {
		conf, err := n.loadConf(c.vmid)
		if err != nil {
			return err
		}
		if l, ok := conf.Get("lock"); !ok || l == "" {
			return dief("no lock found trying to remove any lock")
		}
		delete(conf.Options, "lock")
		return n.writeConf(c.vmid, conf)
	})
}

// loadConfQuiet loads the config without printing parse warnings: the
// verb already loaded it once before taking the lock, and Proxmox warns
// once per process.
func (n *Node) loadConfQuiet(vmid int) (*pvecfg.Config, error) { return n.loadConfWarn(vmid, false) }
