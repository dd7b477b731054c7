package pvesim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// pctConfig is `pct config <vmid>` (vm_config and pct's printer): the
// config with its pending changes applied (load_current_config) unless
// --current, or a snapshot's config with --snapshot.
func (n *Node) pctConfig(c *call) error {
	if c.has("snapshot") && c.flag("current") {
		msg := "cannot use 'snapshot' parameter with 'current'"
		return &paramError{errors: map[string]string{"snapshot": msg, "current": msg}}
	}
	conf, err := n.loadConf(c.vmid)
	if err != nil {
		return err
	}
	if s, ok := c.opts["snapshot"]; ok {
		snap, ok := conf.Snapshots[s]
		if !ok {
			return dief("snapshot '%s' does not exist", s)
		}
		fmt.Fprint(n.Stdout, formatConfig(snap))
		return nil
	}
	if !c.flag("current") {
		conf = conf.CurrentConfig()
	}
	fmt.Fprint(n.Stdout, formatConfig(conf))
	return nil
}

// formatConfig renders the API's view of a config section as pct config
// prints it: `key: value` sorted by key (env as one NUL-joined `env:`
// key, description %-encoded), then the raw lxc lines in order.
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

// splitList is PVE::Tools::split_list (separators , ; and blanks).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v' || r == 0
	})
}

// pctSet is `pct set <vmid> [OPTIONS] [--delete a,b] [--revert a,b]`
// (API2::LXC::Config update_vm and update_pct_config). Changes are
// applied to the config at once, together with any pending section the
// file has (vmconfig_apply_pending of a stopped container; pvesim has no
// hotplug, see docs/PVESIM.md). The config is read again after the write,
// as Proxmox does, so warnings about lines that stay print twice.
func (n *Node) pctSet(c *call) error {
	vmid := c.vmid
	ver := n.PVEVersion()
	schema := pvecfg.ConfigSchema(ver)
	params := map[string]string{}
	for k, v := range c.opts {
		if k != "delete" && k != "revert" && k != "digest" {
			params[k] = v
		}
	}
	deletes := splitList(c.opts["delete"])
	reverts := splitList(c.opts["revert"])
	if len(c.opts) == 0 || (len(c.opts) == 1 && c.has("digest")) {
		return dief("no options specified")
	}
	return n.lockConfig(vmid, func() error {
		conf, err := n.loadConf(vmid)
		if err != nil {
			return err
		}
		if err := checkLock(conf); err != nil {
			return err
		}
		if d, ok := c.opts["digest"]; ok && d != conf.Digest {
			return dief("detected modified configuration - file changed by other user? Try again.")
		}
		for _, k := range reverts {
			if _, ok := schema[k]; !ok {
				return &paramError{errors: map[string]string{"revert": fmt.Sprintf("unknown option '%s'", k)}}
			}
			if _, ok := params[k]; ok {
				return &paramError{errors: map[string]string{"revert": fmt.Sprintf("you can't use '-%s' and '-revert %s' at the same time", k, k)}}
			}
		}
		for _, k := range deletes {
			if _, ok := schema[k]; !ok {
				return &paramError{errors: map[string]string{"delete": fmt.Sprintf("unknown option '%s'", k)}}
			}
			if _, ok := params[k]; ok {
				// sic: Proxmox's message lacks a quote.
				return &paramError{errors: map[string]string{"delete": fmt.Sprintf("you can't use '-%s' and -delete %s' at the same time", k, k)}}
			}
			for _, r := range reverts {
				if r == k {
					return &paramError{errors: map[string]string{"delete": fmt.Sprintf("you can't use '-delete %s' and '-revert %s' at the same time", k, k)}}
				}
			}
		}
		pending := conf.Pending
		if pending == nil {
			pending = pvecfg.NewConfig()
		}
		pendingDel := pvecfg.PendingDeletes(pending.Options["delete"])
		for _, k := range reverts {
			delete(pending.Options, k)
			pendingDel = without(pendingDel, k)
		}
		for _, k := range deletes {
			if !sectionHas(conf, k) && !sectionHas(pending, k) {
				fmt.Fprintf(n.Stderr, "cannot delete '%s' - not set in current configuration!\n", k)
				continue
			}
			switch k {
			case "memory", "rootfs", "ostype":
				return dief("unable to delete required option '%s'", k)
			case "unprivileged":
				return dief("unable to delete read-only option: '%s'", k)
			}
			// add_to_pending_delete drops a pending value of the key too.
			delete(pending.Options, k)
			switch k {
			case "description":
				pending.Description = ""
			case "env":
				pending.Env = nil
			}
			pendingDel = append(without(pendingDel, k), k)
		}
		upd := pvecfg.NewConfig()
		for _, k := range sortedKeysOf(params) {
			v := params[k]
			if k == "unprivileged" {
				return dief("unable to modify read-only option: '%s'", k)
			}
			if strings.HasPrefix(k, "net") && ver.HasOCI() {
				p, _ := pvecfg.NetFormatFor(ver).Parse(k, v)
				ld, _ := p.Get("link_down")
				hm, _ := p.Get("host-managed")
				ip6, _ := p.Get("ip6")
				if ld != "1" && hm == "1" && ip6 == "auto" {
					return dief("%s: SLAAC is not supported for host-managed network configuration.", k)
				}
			}
			upd.Set(k, v)
			pendingDel = without(pendingDel, k)
		}
		if err := prepareConfigOptions(upd, ver); err != nil {
			return err
		}
		if err := n.checkNetParams(upd); err != nil {
			return err
		}
		pending.Set("delete", strings.Join(pendingDel, ","))
		if len(pendingDel) == 0 {
			delete(pending.Options, "delete")
		}
		conf.Pending = pending
		applyPending(conf)
		if d, ok := params["description"]; ok {
			conf.Description = d
		}
		if _, ok := params["env"]; ok {
			conf.Env = upd.Env
		}
		for _, k := range upd.Keys() {
			v := upd.Options[k]
			if strings.HasPrefix(k, "mp") || k == "rootfs" {
				v, err = n.setVolume(vmid, k, v)
				if err != nil {
					return err
				}
			}
			conf.Options[k] = v
		}
		if err := n.writeConf(vmid, conf); err != nil {
			return err
		}
		_, err = n.loadConf(vmid)
		return err
	})
}

// applyPending is vmconfig_apply_pending of a stopped container: the
// pending deletions, then every pending value, move into the current
// section, and the pending section is gone.
func applyPending(conf *pvecfg.Config) {
	pending := conf.Pending
	conf.Pending = nil
	if pending == nil {
		return
	}
	for _, k := range pvecfg.PendingDeletes(pending.Options["delete"]) {
		switch k {
		case "description":
			conf.Description = ""
		case "env":
			conf.Env = nil
		default:
			delete(conf.Options, k)
		}
	}
	for k, v := range pending.Options {
		if k != "delete" {
			conf.Options[k] = v
		}
	}
	if pending.Description != "" {
		conf.Description = pending.Description
	}
	if len(pending.Env) > 0 {
		conf.Env = pending.Env
	}
}

// sectionHas reports whether a config section defines k (an option, the
// description or env).
func sectionHas(c *pvecfg.Config, k string) bool {
	switch k {
	case "description":
		return c.Description != ""
	case "env":
		return len(c.Env) > 0
	}
	_, ok := c.Options[k]
	return ok
}

func without(list []string, k string) []string {
	out := list[:0:0]
	for _, e := range list {
		if e != k {
			out = append(out, e)
		}
	}
	return out
}

// setVolume handles a mount point given to pct set: a new STORAGE:SIZE
// volume is allocated, other volumes and host paths are kept as given.
func (n *Node) setVolume(vmid int, key, value string) (string, error) {
	format := pvecfg.MountFormatFor(n.PVEVersion())
	if key == "rootfs" {
		format = pvecfg.RootfsFormatFor(n.PVEVersion())
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
