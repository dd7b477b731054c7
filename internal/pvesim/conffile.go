package pvesim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/renameio/v2"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// loadConf reads this node's <vmid>.conf as PVE::LXC::Config::load_config
// does on the node's version: a missing file is an error, parse problems
// are warnings on stderr (`vm <vmid> - unable to parse config: <line>`
// ...) that never change the exit status; raw lines the version refuses
// are dropped, so the next write loses them and a start never sees them.
func (n *Node) loadConf(vmid int) (*pvecfg.Config, error) { return n.loadConfWarn(vmid, true) }

func (n *Node) loadConfWarn(vmid int, warn bool) (*pvecfg.Config, error) {
	data, err := os.ReadFile(n.ConfPath(vmid))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, dief("Configuration file 'nodes/%s/lxc/%d.conf' does not exist", n.Name, vmid)
	}
	if err != nil {
		return nil, err
	}
	conf, warns := pvecfg.ParseConfig(data, vmid, n.PVEVersion())
	if warn {
		for _, w := range warns {
			fmt.Fprintln(n.Stderr, w)
		}
	}
	return conf, nil
}

// writeConf stores conf atomically.
func (n *Node) writeConf(vmid int, conf *pvecfg.Config) error {
	data, err := conf.Marshal()
	if err != nil {
		return dief("%v", err)
	}
	if err := os.MkdirAll(n.NodeLxcDir(), 0o755); err != nil {
		return err
	}
	return renameio.WriteFile(n.ConfPath(vmid), data, 0o640)
}

// checkLock is AbstractConfig::check_lock.
func checkLock(conf *pvecfg.Config) error {
	if l, ok := conf.Get("lock"); ok && l != "" {
		return dief("CT is locked (%s)", l)
	}
	return nil
}

// hasLock is AbstractConfig::has_lock with a lock name.
func hasLock(conf *pvecfg.Config, lock string) bool {
	l, ok := conf.Get("lock")
	return ok && l == lock
}

// confNode returns the node whose folder holds <vmid>.conf, or "".
func (n *Node) confNode(vmid int) string {
	nodes, _ := os.ReadDir(n.EtcPve() + "/nodes")
	for _, d := range nodes {
		if _, err := os.Stat(fmt.Sprintf("%s/%d.conf", n.NodeLxcDirOf(d.Name()), vmid)); err == nil {
			return d.Name()
		}
	}
	return ""
}
