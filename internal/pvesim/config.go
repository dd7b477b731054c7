package pvesim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// pctConfig is `pct config <vmid>`: sorted `key: value` lines (env as one
// NUL-joined `env:` key, description %-encoded), then the raw lxc lines.
func (n *Node) pctConfig(c *call) error {
	conf, err := n.loadConf(c.vmid)
	if err != nil {
		return err
	}
	if s, ok := c.opts["snapshot"]; ok {
		return dief("snapshot '%s' does not exist", s)
	}
	fmt.Fprint(n.Stdout, formatConfig(conf))
	return nil
}

// formatConfig renders the API's view of a config as pct config prints it.
func formatConfig(conf *pvecfg.Config) string {
	kv := map[string]string{}
	for k, v := range conf.Options {
		kv[k] = v
	}
	if conf.Description != "" {
		kv["description"] = pvecfg.EncodeText(conf.Description)
	}
	if len(conf.Env) > 0 {
		kv["env"] = strings.Join(conf.Env, "\x00")
	}
	var b strings.Builder
	for _, k := range sortedKeysOf(kv) {
		b.WriteString(k + ": " + kv[k] + "\n")
	}
	for _, r := range conf.Raw {
		b.WriteString(r.Key + ": " + r.Value + "\n")
	}
	return b.String()
}

func sortedKeysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pctSet is `pct set <vmid> [OPTIONS] [--delete a,b]`, applied directly to
// the config (see docs/PVESIM.md: no pending section).
func (n *Node) pctSet(c *call) error {
	vmid := c.vmid
	params := map[string]string{}
	for k, v := range c.opts {
		if k != "delete" && k != "revert" && k != "digest" {
			params[k] = v
		}
	}
	var deletes []string
	if d, ok := c.opts["delete"]; ok {
		deletes = strings.FieldsFunc(d, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
	}
	if len(params) == 0 && len(deletes) == 0 && !c.has("revert") {
		return dief("no options specified")
	}
	for _, k := range deletes {
		if _, ok := params[k]; ok {
			return &paramError{errors: map[string]string{"delete": fmt.Sprintf("conflicting option '%s'", k)}}
		}
	}
	return n.lockConfig(vmid, func() error {
		conf, err := n.loadConf(vmid)
		if err != nil {
			return err
		}
		if err := checkLock(conf); err != nil {
			return err
		}
		if d, ok := c.opts["digest"]; ok && d != confDigest(n, vmid) {
			return dief("detected modified configuration - file changed by other user? Try again.")
		}
		for _, k := range deletes {
			_, have := conf.Options[k]
			if k == "env" {
				have = len(conf.Env) > 0
			}
			if k == "description" {
				have = conf.Description != ""
			}
			if !have {
				fmt.Fprintf(n.Stderr, "cannot delete '%s' - not set in current configuration!\n", k)
				continue
			}
			switch k {
			case "memory", "rootfs", "ostype":
				return dief("unable to delete required option '%s'", k)
			case "unprivileged":
				return dief("unable to delete read-only option: '%s'", k)
			case "env":
				conf.Env = nil
			case "description":
				conf.Description = ""
			}
			delete(conf.Options, k)
		}
		if _, ok := params["unprivileged"]; ok {
			return dief("unable to modify read-only option: '%s'", "unprivileged")
		}
		upd := pvecfg.NewConfig()
		for k, v := range params {
			if k == "description" {
				conf.Description = v
				continue
			}
			upd.Set(k, v)
		}
		if err := prepareConfigOptions(upd); err != nil {
			return err
		}
		if err := n.checkNetParams(upd); err != nil {
			return err
		}
		for k, v := range upd.Options {
			if strings.HasPrefix(k, "mp") || k == "rootfs" {
				v, err = n.setVolume(vmid, k, v)
				if err != nil {
					return err
				}
			}
			conf.Options[k] = v
		}
		if _, ok := params["env"]; ok {
			conf.Env = upd.Env
		}
		return n.writeConf(vmid, conf)
	})
}

// setVolume handles a mount point given to pct set: a new STORAGE:SIZE
// volume is allocated, other volumes and host paths are kept as given.
func (n *Node) setVolume(vmid int, key, value string) (string, error) {
	format := pvecfg.MountFormat
	if key == "rootfs" {
		format = pvecfg.RootfsFormat
	}
	p, err := format.Parse(key, value)
	if err != nil {
		return "", err
	}
	vol, _ := p.Get("volume")
	if strings.HasPrefix(vol, "/") {
		return format.Canonical(p), nil
	}
	sid, volname, err := pvecfg.ParseVolumeID(vol)
	if err != nil {
		return "", dief("unable to parse volume ID '%s'", vol)
	}
	storages, err := n.readStorages()
	if err != nil {
		return "", err
	}
	scfg, ok := pvecfg.FindStorage(storages, sid)
	if !ok {
		return "", dief("storage '%s' does not exist", sid)
	}
	if !scfg.HasContent("rootdir") {
		return "", dief("storage '%s' does not allow content type 'rootdir' (Container)", sid)
	}
	if reBareSize.MatchString(volname) {
		disk := 0
		name, _, err := n.allocVolume(scfg, vmid, &disk)
		if err != nil {
			return "", err
		}
		p.Set("volume", sid+":"+name)
		sizeBytes, _ := pvecfg.ParseSize(volname + "G")
		p.Set("size", pvecfg.FormatSize(sizeBytes))
	}
	return format.Canonical(p), nil
}
