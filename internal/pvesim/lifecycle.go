package pvesim

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// pctStart is `pct start <vmid> [--skiplock]`.
func (n *Node) pctStart(c *call) error { return n.doStart(c.vmid, c.flag("skiplock")) }

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
		if !skiplock {
			if err := checkLock(conf); err != nil {
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
		if !c.flag("skiplock") {
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

// pctDestroy is `pct destroy <vmid> [--force] [--purge]`: refuses a running
// CT unless forced, removes its volumes, config and .vmlist entry.
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
	return n.lockConfig(vmid, func() error {
		conf, err := n.loadConfQuiet(vmid)
		if err != nil {
			return err
		}
		if err := early(conf); err != nil {
			return err
		}
		if running, _, err := n.ctStatus(vmid); err != nil {
			return err
		} else if running {
			if !c.flag("force") {
				return dief("unable to destroy CT %d - container is running", vmid)
			}
			fmt.Fprintf(n.Stderr, "forced to stop CT %d before destroying!\n", vmid)
			if err := n.stopCT(vmid); err != nil {
				return err
			}
		}
		conf.Set("lock", "destroyed")
		if err := n.writeConf(vmid, conf); err != nil {
			return err
		}
		for _, k := range conf.Keys() {
			if k != "rootfs" && !strings.HasPrefix(k, "mp") && !strings.HasPrefix(k, "unused") {
				continue
			}
			p, err := pvecfg.ParseProps(conf.Options[k], "volume")
			if err != nil {
				continue
			}
			vol, _ := p.Get("volume")
			if vol == "" || strings.HasPrefix(vol, "/") {
				continue // bind and device mounts are not ours to delete
			}
			if path, err := n.volumePath(vol); err == nil && pvecfg.ContentType(strings.SplitN(vol, ":", 2)[1]) != "vztmpl" {
				if err := os.RemoveAll(path); err != nil {
					return err
				}
				os.Remove(filepath.Dir(path)) // images/<vmid> when empty
			}
		}
		n.killDHClients(vmid) // their pid files go with the directory
		os.RemoveAll(filepath.Join(n.LxcPath(), strconv.Itoa(vmid)))
		if c.flag("purge") {
			fmt.Fprintf(n.Stdout, "purging CT %d from related configurations..\n", vmid)
		}
		n.unregisterVMID(vmid)
		return nil
	})
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

// pctUnlock is `pct unlock <vmid>`.
func (n *Node) pctUnlock(c *call) error {
	return n.lockConfig(c.vmid, func() error {
		conf, err := n.loadConf(c.vmid)
		if err != nil {
			return err
		}
		delete(conf.Options, "lock")
		return n.writeConf(c.vmid, conf)
	})
}

// loadConfQuiet loads the config without printing parse warnings: the
// verb already loaded it once before taking the lock, and Proxmox warns
// once per process.
func (n *Node) loadConfQuiet(vmid int) (*pvecfg.Config, error) { return n.loadConfWarn(vmid, false) }
