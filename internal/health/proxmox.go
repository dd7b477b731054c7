package health

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/pve"
)

// toolPackage names the Proxmox package that ships each tool.
var toolPackage = map[string]string{"pct": "pve-container", "pveam": "pve-manager", "pvesh": "pve-manager"}

// toolCheck checks that a Proxmox tool is found and answers a cheap,
// read-only call that the real tool serves (pct list, pveam available,
// pvesh get /cluster/nextid): an answer proves it can reach the cluster
// file system, not just that a file is there.
func toolCheck(tool string, pathOf func(*config.Config) string, args ...string) func(context.Context, *Env) Result {
	return func(ctx context.Context, e *Env) Result {
		sev := severity(e.Config, config.BackendProxmox)
		note := unused(e.Config, config.BackendProxmox)
		name := pathOf(e.Config)
		if name == "" {
			name = tool
		}
		key := "proxmox." + tool + "_path"
		path, err := e.LookPath(name)
		if r, ok := untrusted(sev, key, name, note, err); ok {
			return r
		}
		if err != nil {
			return result(sev, fmt.Sprintf("%s not found (%s %q)%s", tool, key, name, note),
				fmt.Sprintf("run nexcage on a Proxmox VE host (%s ships %s) or set %s", toolPackage[tool], tool, key))
		}
		call := tool + " " + strings.Join(args, " ")
		cctx, cancel := context.WithTimeout(ctx, e.Timeout)
		defer cancel()
		_, stderr, err := e.Command(cctx, path, args...)
		if err != nil {
			why := lastLine(stderr)
			if why == "" {
				why = err.Error()
			}
			return result(sev, fmt.Sprintf("%s found but `%s` failed: %s%s", path, call, why, note),
				fmt.Sprintf("run `%s` as root to see why (pve-cluster must be running)", call))
		}
		return pass("%s answers `%s`", path, call)
	}
}

// checkEtcPve checks that the cluster file system is readable and has a
// folder for this node.
func checkEtcPve(_ context.Context, e *Env) Result {
	sev := severity(e.Config, config.BackendProxmox)
	note := unused(e.Config, config.BackendProxmox)
	dir := e.Config.Proxmox.EtcPve
	node := e.Config.Proxmox.Node
	if _, err := os.ReadDir(dir); err != nil {
		return result(sev, fmt.Sprintf("%s is not readable: %v%s", dir, errNoPath(err), note),
			"run on a Proxmox VE host with pve-cluster running, or set proxmox.etc_pve")
	}
	nodes, _ := os.ReadDir(filepath.Join(dir, "nodes"))
	var names []string
	for _, n := range nodes {
		if n.IsDir() {
			names = append(names, n.Name())
		}
	}
	sort.Strings(names)
	if node == "" {
		return result(sev, "proxmox.node is empty and the host name is unknown"+note, "set proxmox.node to this node's name")
	}
	if fi, err := os.Stat(filepath.Join(dir, "nodes", node)); err != nil || !fi.IsDir() {
		return result(sev, fmt.Sprintf("%s has no nodes/%s (nodes: %s)%s", dir, node, orNone(names), note),
			"set proxmox.node to this host's node name (one of the nodes listed)")
	}
	return pass("%s is readable and names node %q", dir, node)
}

// storages reads storage.cfg; a failure is already a Result.
func storages(e *Env) ([]pve.Storage, *Result) {
	sev := severity(e.Config, config.BackendProxmox)
	note := unused(e.Config, config.BackendProxmox)
	path := filepath.Join(e.Config.Proxmox.EtcPve, "storage.cfg")
	data, err := os.ReadFile(path)
	if err != nil {
		r := result(sev, fmt.Sprintf("cannot read %s: %v%s", path, errNoPath(err), note),
			"run on a Proxmox VE host (pve-cluster provides /etc/pve/storage.cfg), or set proxmox.etc_pve")
		return nil, &r
	}
	list, err := pve.ParseStorageConfig(data)
	if err != nil {
		r := result(sev, fmt.Sprintf("%s: %v%s", path, err, note), "fix storage.cfg (Datacenter > Storage in the web UI)")
		return nil, &r
	}
	return list, nil
}

// usable reports whether storage s is enabled on node and may hold
// content, and why not.
func usable(s *pve.Storage, node, content string) (bool, string) {
	if s.Props["disable"] == "1" {
		return false, "is disabled"
	}
	if nodes, ok := s.Props["nodes"]; ok && node != "" {
		found := false
		for _, n := range strings.Split(nodes, ",") {
			found = found || strings.TrimSpace(n) == node
		}
		if !found {
			return false, fmt.Sprintf("is not available on node %q (nodes %s)", node, nodes)
		}
	}
	if !s.HasContent(content) {
		return false, fmt.Sprintf("does not allow content %s (content %s)", content, strings.Join(s.Content, ","))
	}
	return true, ""
}

// storageCheck checks that some storage holds content, and that the
// configured one (key, value want; "" = first usable) does.
func storageCheck(e *Env, content, key, want, purpose string) Result {
	list, bad := storages(e)
	if bad != nil {
		return *bad
	}
	sev := severity(e.Config, config.BackendProxmox)
	note := unused(e.Config, config.BackendProxmox)
	node := e.Config.Proxmox.Node
	var ok, why []string
	for i := range list {
		u, reason := usable(&list[i], node, content)
		switch {
		case u:
			ok = append(ok, list[i].Name)
		case list[i].HasContent(content):
			why = append(why, list[i].Name+" "+reason)
		}
	}
	advice := fmt.Sprintf("allow content %s on a storage (Datacenter > Storage, or `pvesm set <storage> --content ...`) and set %s", content, key)
	if len(ok) == 0 {
		detail := fmt.Sprintf("no storage for %s: none allows content %s on this node", purpose, content)
		if len(why) > 0 {
			detail += " (" + strings.Join(why, "; ") + ")"
		}
		return result(sev, detail+note, advice)
	}
	if want == "" {
		return pass("%s unset: %s uses %q (storages with %s: %s)", key, purpose, ok[0], content, strings.Join(ok, ", "))
	}
	s, found := pve.FindStorage(list, want)
	if !found {
		return result(sev, fmt.Sprintf("%s %q is not in storage.cfg (storages with %s: %s)%s", key, want, content, strings.Join(ok, ", "), note),
			fmt.Sprintf("set %s to one of: %s", key, strings.Join(ok, ", ")))
	}
	if u, why := usable(s, node, content); !u {
		return result(sev, fmt.Sprintf("%s %q %s%s", key, want, why, note), advice)
	}
	return pass("%s %q allows %s (storages with %s: %s)", key, want, content, content, strings.Join(ok, ", "))
}

func checkRootdirStorage(_ context.Context, e *Env) Result {
	return storageCheck(e, "rootdir", "proxmox.storage", e.Config.Proxmox.Storage, "container root disks")
}

func checkTemplateStorage(_ context.Context, e *Env) Result {
	return storageCheck(e, "vztmpl", "proxmox.template_storage", e.Config.Proxmox.TemplateStorage, "templates")
}

// checkBridge checks that network.bridge is a Linux bridge.
func checkBridge(_ context.Context, e *Env) Result {
	sev := severity(e.Config, config.BackendProxmox)
	note := unused(e.Config, config.BackendProxmox)
	br := e.Config.Network.Bridge
	if br == "" || strings.ContainsAny(br, "/\x00") || br == "." || br == ".." {
		return result(sev, fmt.Sprintf("network.bridge %q is not an interface name%s", br, note), "set network.bridge, e.g. vmbr0")
	}
	dev := filepath.Join(e.SysRoot, "class/net", br)
	if _, err := os.Stat(dev); err != nil {
		return result(sev, fmt.Sprintf("network.bridge %q does not exist%s", br, note),
			"create the bridge (System > Network in the web UI) or set network.bridge to an existing one")
	}
	if fi, err := os.Stat(filepath.Join(dev, "bridge")); err != nil || !fi.IsDir() {
		return result(sev, fmt.Sprintf("network.bridge %q exists but is not a bridge%s", br, note),
			"set network.bridge to a Linux bridge (e.g. vmbr0)")
	}
	return pass("bridge %q exists", br)
}

// errNoPath drops the path from a *fs.PathError (the detail names it).
func errNoPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// checkPveVersion reads the node's Proxmox VE version (`pveversion -v`)
// and says what follows from it for nexcage (proxmox-pct.md §9). A node
// whose version cannot be read works as the oldest supported one, so this
// is a warning, never a failure.
func checkPveVersion(ctx context.Context, e *Env) Result {
	note := unused(e.Config, config.BackendProxmox)
	name := e.Config.Proxmox.PveversionPath
	if name == "" {
		name = "pveversion"
	}
	oldest := "nexcage treats the node as the oldest supported (PVE 8.4)"
	path, err := e.LookPath(name)
	if r, ok := untrusted(Warn, "proxmox.pveversion_path", name, note, err); ok {
		return r
	}
	if err != nil {
		return result(Warn, fmt.Sprintf("pveversion not found (proxmox.pveversion_path %q): %s%s", name, oldest, note),
			"run nexcage on a Proxmox VE host (pve-manager ships pveversion) or set proxmox.pveversion_path")
	}
	cctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	out, stderr, err := e.Command(cctx, path, "-v")
	if err != nil {
		why := lastLine(stderr)
		if why == "" {
			why = err.Error()
		}
		return result(Warn, fmt.Sprintf("`%s -v` failed: %s; %s%s", path, why, oldest, note),
			fmt.Sprintf("run `%s -v` as root to see why", path))
	}
	v, err := pve.ParsePveversion(string(out))
	if err != nil {
		return result(Warn, fmt.Sprintf("`%s -v`: %v; %s%s", path, err, oldest, note),
			"check that pve-container is installed (`pveversion -v` lists it)")
	}
	return pass("%s", VersionSummary(v))
}

// VersionSummary says what a node's version means for nexcage, e.g.
// "PVE 8.4 (pve-container 5.3.5): process user/cwd/env via the init
// helper (the node drops lxc.environment.hooks, ...); network via the init
// helper; no entrypoint/env options, no host-managed".
func VersionSummary(v pve.NodeVersion) string {
	var parts []string
	if dropped := pve.DroppedRawKeys(v); len(dropped) > 0 {
		parts = append(parts, "process user/cwd/env via the init helper (the node drops "+strings.Join(dropped, ", ")+")")
	} else {
		parts = append(parts, "process user/cwd/env via the init helper (the node keeps lxc.init.* and lxc.environment.runtime too)")
	}
	if v.HasOCI() {
		parts = append(parts, "network through host-managed=1", "entrypoint/env options available")
	} else {
		parts = append(parts, "network via the init helper", "no entrypoint/env options, no host-managed")
	}
	return v.Summary() + ": " + strings.Join(parts, "; ")
}
