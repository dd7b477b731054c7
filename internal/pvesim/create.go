package pvesim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// createOnly are the create parameters that are not config options.
var createOnly = map[string]bool{
	"vmid": true, "ostemplate": true, "storage": true, "password": true, "ssh-public-keys": true,
	"start": true, "force": true, "unique": true, "restore": true, "pool": true,
	"ignore-unpack-errors": true, "bwlimit": true, "ha-managed": true,
}

var reBareSize = regexp.MustCompile(`^\d+(\.\d+)?$`)

// pctCreate is `pct create <vmid> <ostemplate> [OPTIONS]`, following
// pve-container's create_vm: checks that die before the task, then the
// task (volumes, extraction, config) that undoes itself on failure and
// reports `unable to create CT <vmid> - <reason>`.
func (n *Node) pctCreate(c *call) error {
	vmid := c.vmid
	ostemplate := c.args["ostemplate"]
	if c.flag("restore") {
		return dief("pvesim: --restore is not supported by the simulator")
	}
	if s, ok := c.opts["ssh-public-keys"]; ok {
		// The CLI maps this option to the content of the named file.
		if _, err := os.ReadFile(s); err != nil {
			return dief("unable to open file '%s' - %v", s, unwrapPathErr(err))
		}
	}

	if err := n.checkVMIDUnused(vmid); err != nil {
		return err
	}

	storages, err := n.readStorages()
	if err != nil {
		return err
	}

	// ostemplate: a volume id, or a path (root only; we always run as root).
	var tmplVolid, tmplStorage, tmplFile string
	if sid, volname, err := pvecfg.ParseVolumeID(ostemplate); err == nil {
		scfg, ok := pvecfg.FindStorage(storages, sid)
		if !ok {
			return dief("storage '%s' does not exist", sid)
		}
		ct := pvecfg.ContentType(volname)
		if ct == "" {
			return dief("unable to parse directory volume name '%s'", volname)
		}
		if ct != "vztmpl" {
			return dief("unable to use volume %s - content type needs to be 'vztmpl'", ostemplate)
		}
		f, err := pvecfg.TemplateVolume(volname)
		if err != nil {
			return dief("unable to parse directory volume name '%s'", volname)
		}
		tmplVolid, tmplStorage, tmplFile = ostemplate, scfg.Name, f
	}

	storage := "local"
	if s, ok := c.opts["storage"]; ok {
		storage = s
	}
	checkStorage := func(sid string) error {
		scfg, ok := pvecfg.FindStorage(storages, sid)
		if !ok {
			return dief("storage '%s' does not exist", sid)
		}
		if !scfg.HasContent("rootdir") {
			return &paramError{errors: map[string]string{
				"storage": fmt.Sprintf("storage '%s' does not support container directories", sid)}}
		}
		return nil
	}

	// Split disk parameters from the rest (bare sizes use --storage).
	mpParam := map[string]string{}
	conf := pvecfg.NewConfig()
	for k, v := range c.opts {
		switch {
		case createOnly[k]:
		case k == "rootfs" || strings.HasPrefix(k, "mp"):
			if reBareSize.MatchString(v) {
				v = storage + ":" + v
			}
			mpParam[k] = v
		case strings.HasPrefix(k, "unused"):
			fmt.Fprintf(n.Stderr, "ignoring '%s', cannot create/restore with unused volume\n", k)
		default:
			conf.Set(k, v)
		}
	}
	if len(mpParam) > 0 {
		if _, ok := mpParam["rootfs"]; !ok {
			return dief("mount points configured, but 'rootfs' not set - aborting")
		}
	}
	for k, v := range mpParam {
		mp, _ := pvecfg.MountFormatFor(n.PVEVersion()).Parse(k, v)
		if k == "rootfs" {
			mp, _ = pvecfg.RootfsFormatFor(n.PVEVersion()).Parse(k, v)
		}
		vol, _ := mp.Get("volume")
		if strings.HasPrefix(vol, "/") {
			continue // bind or device mount: root only, and we are root
		}
		sid, _, err := pvecfg.ParseVolumeID(vol)
		if err != nil {
			return dief("unable to parse volume ID '%s'", vol)
		}
		if err := checkStorage(sid); err != nil {
			return err
		}
	}
	if _, ok := mpParam["rootfs"]; !ok {
		if err := checkStorage(storage); err != nil {
			return err
		}
		mpParam["rootfs"] = storage + ":4"
	}
	if err := prepareConfigOptions(conf, n.PVEVersion()); err != nil {
		return err
	}
	if err := n.checkNetParams(conf); err != nil {
		return err
	}
	unpriv := true
	if v, ok := c.opts["unprivileged"]; ok {
		unpriv = v == "1"
	}
	conf.Options["unprivileged"] = "1"
	if !unpriv {
		delete(conf.Options, "unprivileged")
	}

	// create_and_lock_config (5 s lock): the `lock: create` placeholder,
	// then the task in a worker (worker.go).
	err = n.lockConfigFull(vmid, lockTimeout(createLockTimeout), func() error { return n.registerVMID(vmid) })
	if err != nil {
		return dief("unable to create CT %d - %s", vmid, strings.TrimSuffix(errorText(err), "\n"))
	}
	return n.runCreateWorker(&createJob{VMID: vmid, Conf: conf, MPParam: mpParam, Storages: storages,
		TmplVolid: tmplVolid, TmplStorage: tmplStorage, TmplFile: tmplFile, Ostemplate: ostemplate,
		Unpriv: unpriv, Start: c.flag("start")})
}

// prepareConfigOptions puts config options into their canonical form,
// as update_pct_config/vmconfig_apply_pending do: netN gets type=veth and
// a generated hwaddr, property strings are printed canonically, env is
// split into its NUL-separated variables. v is the node's version.
func prepareConfigOptions(conf *pvecfg.Config, ver pvecfg.Version) error {
	netFormat := pvecfg.NetFormatFor(ver)
	for k, v := range conf.Options {
		sc := pvecfg.ConfigSchema(ver)[k]
		switch {
		case strings.HasPrefix(k, "net"):
			p, err := netFormat.Parse(k, v)
			if err != nil {
				return err
			}
			p.Set("type", "veth")
			if _, ok := p.Get("hwaddr"); !ok {
				p.Set("hwaddr", randomMAC())
			}
			conf.Options[k] = netFormat.Canonical(p)
		case k == "tags":
			conf.Options[k] = pvecfg.NormalizeTags(v)
		case k == "description":
			delete(conf.Options, k)
			conf.Description = v
		case k == "env":
			delete(conf.Options, k)
			conf.Env = nil
			for _, e := range strings.Split(v, "\x00") {
				if e != "" {
					conf.Env = append(conf.Env, e)
				}
			}
		case sc != nil && sc.Props != nil:
			p, err := sc.Props.Parse(k, v)
			if err != nil {
				return err
			}
			conf.Options[k] = sc.Props.Canonical(p)
		}
	}
	return nil
}

// randomMAC is PVE::Tools::random_ether_addr with Proxmox's default
// prefix BC:24:11.
func randomMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", b[0], b[1], b[2])
}

// registerVMID is create_and_lock_config: under the cluster lock, refuse a
// vmid any node uses, then write `lock: create` and add it to .vmlist.
func (n *Node) registerVMID(vmid int) error {
	return n.lockCluster(func() error {
		list, err := n.vmidUsed(vmid)
		if err != nil {
			return err
		}
		lockConf := pvecfg.NewConfig()
		lockConf.Set("lock", "create")
		if err := n.writeConf(vmid, lockConf); err != nil {
			return err
		}
		list.Add(vmid, pvecfg.VMListEntry{Node: n.Name, Type: "lxc", Version: 1})
		if err := list.Write(n.VMListPath()); err != nil {
			os.Remove(n.ConfPath(vmid))
			return err
		}
		return nil
	})
}

// checkVMIDUnused is PVE::Cluster::check_vmid_unused, which create_vm
// runs before anything else touches the node.
func (n *Node) checkVMIDUnused(vmid int) error {
	_, err := n.vmidUsed(vmid)
	return err
}

// vmidUsed reads .vmlist and fails when any node has vmid.
func (n *Node) vmidUsed(vmid int) (*pvecfg.VMList, error) {
	list, err := pvecfg.ReadVMList(n.VMListPath())
	if err != nil {
		return nil, err
	}
	if e, ok := list.Lookup(vmid); ok {
		kind := "CT"
		if e.Type == "qemu" {
			kind = "VM"
		}
		return nil, dief("%s %d already exists on node '%s'", kind, vmid, e.Node)
	}
	if node := n.confNode(vmid); node != "" {
		return nil, dief("CT %d already exists on node '%s'", vmid, node)
	}
	return list, nil
}

// unregisterVMID removes the config and the .vmlist entry.
func (n *Node) unregisterVMID(vmid int) {
	_ = n.lockCluster(func() error {
		os.Remove(n.ConfPath(vmid))
		list, err := pvecfg.ReadVMList(n.VMListPath())
		if err != nil {
			return err
		}
		if _, ok := list.Lookup(vmid); ok {
			list.Remove(vmid)
			return list.Write(n.VMListPath())
		}
		return nil
	})
}

// createTask is the worker part of create: allocate volumes, extract the
// template, detect ostype/arch, fill defaults, write the config. On error
// it removes every volume it allocated.
func (n *Node) createTask(vmid int, conf *pvecfg.Config, mpParam map[string]string, storages []pvecfg.Storage,
	tmplVolid, tmplStorage, tmplFile, ostemplate string, unpriv bool) (err error) {
	var created []string
	defer func() {
		if err != nil {
			for _, p := range created {
				os.RemoveAll(p)
			}
			os.Remove(filepath.Dir(n.imagesDirHint(storages, vmid)))
			n.removeCtDir(vmid) // the rootfs mount point mount_all made
		}
	}()
	// Resolve the archive first: a missing template is the common failure.
	var archive string
	if tmplVolid != "" {
		scfg, _ := pvecfg.FindStorage(storages, tmplStorage)
		archive = filepath.Join(scfg.Path, "template/cache", tmplFile)
		if st, e := os.Stat(archive); e != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("can't find file '%s'", tmplVolid)
		}
	} else {
		archive = ostemplate
		if st, e := os.Stat(archive); e != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("can't find file '%s'", ostemplate)
		}
	}

	// Allocate disks: rootfs first, then mount points in index order.
	keys := sortedMPKeys(mpParam)
	disk := 0
	var rootfsPath string
	for _, k := range keys {
		format := pvecfg.MountFormat
		if k == "rootfs" {
			format = pvecfg.RootfsFormat
		}
		p, perr := format.Parse(k, mpParam[k])
		if perr != nil {
			return perr
		}
		vol, _ := p.Get("volume")
		var path string
		if strings.HasPrefix(vol, "/") {
			// Bind and device mount points are used as given
			// (create_disks); mount_all checks them below.
			path = vol
		} else {
			sid, volname, _ := pvecfg.ParseVolumeID(vol)
			scfg, _ := pvecfg.FindStorage(storages, sid)
			if scfg.Path == "" {
				return fmt.Errorf("storage '%s' (type %s) is not supported by the simulator", sid, scfg.Type)
			}
			if reBareSize.MatchString(volname) {
				// New volume STORAGE:SIZE_IN_GiB -> a directory standing in
				// for the raw image Proxmox would create.
				sizeGiB, _ := strconv.ParseFloat(volname, 64)
				name, dir, e := n.allocVolume(scfg, vmid, &disk)
				if e != nil {
					return e
				}
				created = append(created, dir)
				p.Set("volume", sid+":"+name)
				p.Set("size", pvecfg.FormatSize(int64(sizeGiB*(1<<30))))
				path = dir
			} else {
				p2, e := n.volumePath(vol)
				if e != nil {
					return e
				}
				if _, e := os.Stat(p2); e != nil {
					return fmt.Errorf("volume '%s' does not exist", vol)
				}
				path = p2
			}
		}
		if k == "rootfs" {
			rootfsPath = path
			conf.Options[k] = format.Canonical(p)
		} else {
			conf.Options[k] = format.Canonical(p)
		}
	}
	if unpriv {
		if e := os.Chown(rootfsPath, 100000, 100000); e != nil {
			return e
		}
	}

	// mount_all, then the template unpacked through the mounts (files
	// under a bind target land in the host directory), then the OS
	// detected, all in a private mount namespace that ends with it:
	// nothing stays mounted, whatever happens.
	if e := n.checkpoint("create-after-disks"); e != nil {
		return e
	}
	rootdir := n.ctRootfsDir(vmid)
	err = withMountNamespace(func() error {
		if e := n.mountAll(conf, rootdir); e != nil {
			return e
		}
		fmt.Fprintf(n.Stdout, "extracting archive '%s'\n", archive)
		if e := n.extractTemplate(archive, rootdir, unpriv); e != nil {
			return e
		}
		if e := n.checkpoint("create-after-extract"); e != nil {
			return e
		}
		if _, ok := conf.Get("arch"); !ok {
			conf.Set("arch", "amd64")
		}
		fmt.Fprintf(n.Stdout, "Detected container architecture: %s\n", conf.Options["arch"])
		if _, ok := conf.Get("ostype"); !ok {
			ostype, e := n.detectOSType(rootdir)
			if e != nil {
				return e
			}
			conf.Set("ostype", ostype)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// create_vm writes the config in full right after OS detection (this
	// replaces the `lock: create` placeholder), and again with defaults.
	if e := n.writeConf(vmid, conf); e != nil {
		return e
	}
	if e := n.checkpoint("create-after-config"); e != nil {
		return e
	}
	if _, ok := conf.Get("hostname"); !ok {
		conf.Set("hostname", "CT"+strconv.Itoa(vmid))
	}
	if _, ok := conf.Get("memory"); !ok {
		conf.Set("memory", "512")
	}
	if _, ok := conf.Get("swap"); !ok {
		conf.Set("swap", "512")
	}
	return n.writeConf(vmid, conf)
}

// allocVolume creates the next free vm-<vmid>-disk-<N>.raw under the
// storage's images/<vmid>/ as a directory and returns its volname.
func (n *Node) allocVolume(scfg *pvecfg.Storage, vmid int, next *int) (string, string, error) {
	dir := filepath.Join(scfg.Path, "images", strconv.Itoa(vmid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	for ; ; *next++ {
		name := fmt.Sprintf("vm-%d-disk-%d.raw", vmid, *next)
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err == nil {
			*next++
			return fmt.Sprintf("%d/%s", vmid, name), p, nil
		} else if !errors.Is(err, fs.ErrExist) {
			return "", "", err
		}
	}
}

// imagesDirHint is <local path>/images/<vmid>/x, used to remove an empty
// per-vmid image directory after a failed create.
func (n *Node) imagesDirHint(storages []pvecfg.Storage, vmid int) string {
	if s, ok := pvecfg.FindStorage(storages, "local"); ok && s.Path != "" {
		return filepath.Join(s.Path, "images", strconv.Itoa(vmid), "x")
	}
	return filepath.Join(n.Root, "var/lib/vz/images", strconv.Itoa(vmid), "x")
}

// sortedMPKeys orders rootfs first, then mp0, mp1, ... numerically.
func sortedMPKeys(m map[string]string) []string {
	var keys []string
	if _, ok := m["rootfs"]; ok {
		keys = append(keys, "rootfs")
	}
	for i := 0; i < pvecfg.MaxMountPoints; i++ {
		if _, ok := m["mp"+strconv.Itoa(i)]; ok {
			keys = append(keys, "mp"+strconv.Itoa(i))
		}
	}
	return keys
}

// readStorages reads /etc/pve/storage.cfg.
func (n *Node) readStorages() ([]pvecfg.Storage, error) {
	data, err := os.ReadFile(n.StorageCfgPath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, dief("pvesim: %s missing (run 'pvesim init')", n.StorageCfgPath())
		}
		return nil, err
	}
	list, err := pvecfg.ParseStorageConfig(data)
	if err != nil {
		return nil, dief("%v", err)
	}
	return list, nil
}

// errorText is an error's message as Perl would print it.
func errorText(err error) string {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.text
	}
	if pe, ok := err.(*paramError); ok {
		return render400(pe, "")
	}
	return err.Error()
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
