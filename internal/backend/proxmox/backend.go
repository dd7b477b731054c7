package proxmox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lockfile"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/template"
)

// Keys of state.Container.Data used by this backend.
const (
	DataVMID        = "vmid"         // the Proxmox VMID
	DataNode        = "node"         // node the container was created on
	DataOSTemplate  = "ostemplate"   // volume id given to pct create
	DataPacked      = "packed"       // file name of the template nexcage packed for it
	DataTemplateRef = "template_ref" // this container's reference on the packed template
	DataStartTime   = "pid_start"    // start time (clock ticks) of the init pid, against pid reuse
	DataVanished    = "vanished"     // "1" when the Proxmox side no longer exists
	DataHostname    = "hostname"     // the hostname given to pct create
)

// maxVMIDAttempts bounds the VMIDs one create tries when pct create says
// "already exists" (taken by a creator on another node, or a person).
const maxVMIDAttempts = 32

// Backend runs OCI containers as Proxmox LXC containers through pct.
type Backend struct {
	cfg     *config.Config
	log     *slog.Logger
	pct     *pve.Pct
	etcPve  string
	lxcPath string
	node    string
	lxcInfo string
	// tmpl resolves --image and the template annotation (internal/template).
	tmpl *template.Resolver
	// PidTimeout bounds the wait for the init pid after pct start.
	PidTimeout time.Duration
	// SelfExe is the nexcage binary used as init helper and supervisor;
	// empty means os.Executable().
	SelfExe string
	// NoInitHelper makes create leave bundle containers stopped (start
	// is then a pct start) instead of running them through the init
	// helper; for tests of the pct sequence without LXC.
	NoInitHelper bool

	// supervisors holds, per container id, the exit of the supervisors
	// this process started (for a foreground run's Wait).
	supervisors sync.Map
}

var (
	_ runtime.Backend = (*Backend)(nil)
	_ runtime.Stopper = (*Backend)(nil)
)

// New builds the backend from the configuration. It does not call pct.
func New(cfg *config.Config, log *slog.Logger) (*Backend, error) {
	if cfg == nil {
		cfg = config.Default()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := cfg.Proxmox
	if p.Node == "" {
		return nil, errs.New(errs.KindInvalidConfig, "proxmox.node is not set and the host name is unknown").
			WithHint("set proxmox.node to this Proxmox node's name")
	}
	if strings.ContainsAny(p.Node, "/\x00") || p.Node == "." || p.Node == ".." {
		return nil, errs.New(errs.KindInvalidConfig, "proxmox.node %q is not a node name", p.Node)
	}
	pct := p.PctPath
	if pct == "" {
		pct = "pct"
	}
	timeout := time.Duration(p.Timeout) * time.Second
	b := &Backend{
		cfg:    cfg,
		log:    log,
		pct:    &pve.Pct{Path: pct, Timeout: timeout, Retries: 3, RetryDelay: 500 * time.Millisecond, Log: log},
		etcPve: orDefault(p.EtcPve, "/etc/pve"), lxcPath: orDefault(p.LxcPath, "/var/lib/lxc"),
		node: p.Node, lxcInfo: "lxc-info", PidTimeout: 30 * time.Second,
	}
	b.tmpl = TemplateResolver(cfg, log, os.Stderr, nil)
	return b, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// Name is the backend's name in state records.
func (b *Backend) Name() string { return config.BackendProxmox }

func (b *Backend) confPath(node string, vmid int) string {
	return filepath.Join(b.etcPve, "nodes", node, "lxc", strconv.Itoa(vmid)+".conf")
}

func (b *Backend) storages() ([]pve.Storage, error) {
	p := filepath.Join(b.etcPve, "storage.cfg")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "cannot read Proxmox storage configuration %s", p).
			WithHint("is this a Proxmox VE host? set proxmox.etc_pve if /etc/pve lives elsewhere")
	}
	s, err := pve.ParseStorageConfig(data)
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "cannot parse %s", p)
	}
	return s, nil
}

// rootStorage is proxmox.storage or the first storage with rootdir content.
func (b *Backend) rootStorage(storages []pve.Storage) (string, error) {
	if s := b.cfg.Proxmox.Storage; s != "" {
		return s, nil
	}
	for _, s := range storages {
		if s.HasContent("rootdir") && s.Props["disable"] == "" {
			return s.Name, nil
		}
	}
	return "", errs.New(errs.KindInvalidConfig, "no storage in %s can hold container root filesystems", filepath.Join(b.etcPve, "storage.cfg")).
		WithHint("add content rootdir to a storage, or set proxmox.storage")
}

func vmidOf(c *state.Container) (int, bool) {
	v, ok := c.Data[DataVMID]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n > 0
}

func (b *Backend) nodeOf(c *state.Container) string {
	if n := c.Data[DataNode]; n != "" {
		return n
	}
	return b.node
}

// Create makes the Proxmox container with one pct create, then adds the
// raw lxc lines to its .conf. It does not start it (OCI created !=
// running). Any failure undoes everything done so far.
func (b *Backend) Create(ctx context.Context, c *state.Container, opts runtime.CreateOptions) (err error) {
	if c.Data == nil {
		c.Data = map[string]string{}
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	storages, err := b.storages()
	if err != nil {
		return err
	}
	rootStorage, err := b.rootStorage(storages)
	if err != nil {
		return err
	}
	in := Input{
		ID: c.ID, Spec: opts.Spec, BundleDir: opts.Bundle, Storage: rootStorage,
		Bridge: b.cfg.Network.Bridge, Unprivileged: b.cfg.Proxmox.Unprivileged == nil || *b.cfg.Proxmox.Unprivileged,
		Nameservers: b.cfg.Network.DNSServers, NetTimeout: time.Duration(b.cfg.Network.DHCPTimeout) * time.Second,
	}
	if in.Spec == nil {
		// A container from a template alone keeps the template's init.
		in.Spec = &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}
		in.KeepTemplateInit = true
	}
	image := opts.Image
	if t, ok := in.Spec.Annotations[AnnotationTemplate]; ok {
		image = t
	}
	rootfs, ostemplate := "", ""
	if image == "" {
		if in.Spec.Root == nil || opts.Bundle == "" {
			return errs.New(errs.KindInvalidBundle, "container %s: no rootfs and no template", c.ID)
		}
		rootfs = in.Spec.Root.Path
		if !filepath.IsAbs(rootfs) {
			rootfs = filepath.Join(opts.Bundle, rootfs)
		}
		in.OSType = template.DetectOSType(rootfs)
		if _, err := os.Lstat(filepath.Join(rootfs, "bin/sh")); err == nil {
			in.CanInjectScript = true
		}
	} else {
		// A template (volume id, file or short name, path, URL, OCI
		// image ...) resolved and validated by internal/template.
		r, err := b.tmpl.Resolve(ctx, image)
		if err != nil {
			return addContainer(c.ID, err)
		}
		ostemplate = r.VolID
		if r.OSType != "" {
			in.OSType = r.OSType
		}
		if in.KeepTemplateInit && r.Image != nil {
			if err := applyImageConfig(in.Spec, r.Image); err != nil {
				return addContainer(c.ID, err)
			}
		}
		ref := newRef(c.ID)
		if err := b.tmpl.Use(ctx, ostemplate, ref); err != nil {
			return addContainer(c.ID, err)
		}
		c.Data[DataTemplateRef] = ref
		undo = append(undo, func() { b.releaseResolved(ostemplate, ref, c.ID) })
	}
	helper := wantsHelper(opts) && image == "" && !b.NoInitHelper
	if helper {
		dir, err := b.prepareHelper(c)
		if err != nil {
			return err
		}
		in.InitHelperDir = dir
		undo = append(undo, func() { b.cleanupHelper(c) })
	}
	req, err := Translate(in)
	if err != nil {
		return err
	}
	for _, w := range req.Warnings {
		b.log.Warn(w, "id", c.ID)
	}
	if req.ResolvConf != nil {
		if err := renameio.WriteFile(filepath.Join(in.InitHelperDir, ResolvConfName), req.ResolvConf, 0o644); err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot write its resolv.conf", c.ID)
		}
	}
	if rootfs != "" {
		p, err := b.pack(ctx, c, rootfs, req)
		if err != nil {
			return err
		}
		ostemplate = p.VolID
		undo = append(undo, func() { b.releaseResolved(p.VolID, c.Data[DataTemplateRef], c.ID) })
		c.Data[DataPacked] = p.Name
	}
	c.Data[DataOSTemplate] = ostemplate
	c.Data[DataNode] = b.node

	vmid, err := b.createCT(ctx, c, ostemplate, req, opts.Checkpoint)
	if err != nil {
		return err
	}
	undo = append(undo, func() { b.destroyQuietly(c.ID, vmid) })

	if err := b.appendRaw(b.confPath(b.node, vmid), req.Raw); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot add raw lxc settings to CT %d", c.ID, vmid)
	}
	c.Status = state.Created
	c.Pid = 0
	if helper {
		// pct start now: the init helper holds process.args until start.
		if err := b.startSupervised(ctx, c, vmid, opts, req.Net); err != nil {
			return err
		}
	}
	b.log.Info("proxmox container created", "id", c.ID, "vmid", vmid, "ostemplate", ostemplate, "pid", c.Pid)
	return nil
}

// pack packs the bundle's rootfs, with the mount targets and init script
// the translation needs, into a template (internal/template's packer).
func (b *Backend) pack(ctx context.Context, c *state.Container, rootfs string, req *Request) (*template.Packed, error) {
	c.Data[DataTemplateRef] = newRef(c.ID)
	popts := template.PackOptions{Rootfs: rootfs, Source: c.Bundle, What: "packing the rootfs of " + c.ID}
	for _, t := range req.MountTargets {
		popts.Targets = append(popts.Targets, template.Target{Path: t.Path, File: t.File})
	}
	if req.InitScript != nil {
		popts.Extra = append(popts.Extra, template.ExtraFile{Path: InitScriptPath, Mode: 0o755, Data: req.InitScript})
	}
	p, err := b.tmpl.PackAndAcquire(ctx, popts, c.Data[DataTemplateRef])
	if err != nil {
		return nil, addContainer(c.ID, err)
	}
	b.log.Debug("rootfs packed", "id", c.ID, "template", p.VolID, "new", p.Created)
	return p, nil
}

// createCT allocates a VMID and runs pct create, retrying with another
// VMID when another creator took it first.
//
// nexcage processes on one node take turns (vmidLock) from reading the
// cluster's .vmlist until the VMID they picked is registered there (pct
// create registers it first, before the slow part), so they never pick the
// same one. Creators nexcage does not know of (other nodes, people) can
// still take a VMID between our pick and pct's registration: then pct
// fails with "already exists" and the next free VMID is tried, up to
// maxVMIDAttempts times.
func (b *Backend) createCT(ctx context.Context, c *state.Container, ostemplate string, req *Request, checkpoint func(*state.Container) error) (int, error) {
	save := func(c *state.Container) error {
		if checkpoint == nil {
			return nil
		}
		return checkpoint(c)
	}
	lo, hi := b.cfg.Proxmox.VMIDRange[0], b.cfg.Proxmox.VMIDRange[1]
	if lo == 0 && hi == 0 {
		lo, hi = 100, 999999999
	}
	// Recorded for delete --force: a create killed before pct wrote the
	// config leaves one that only says `lock: create`.
	c.Data[DataHostname] = req.Hostname
	tried := map[int]bool{}
	for attempt := 0; ; attempt++ {
		nl, err := b.vmidLock(ctx)
		if err != nil {
			return 0, addContainer(c.ID, err)
		}
		vmid, err := b.allocateVMID(lo, hi, tried)
		if err != nil {
			_ = nl.UnlockRemove()
			return 0, addContainer(c.ID, err)
		}
		tried[vmid] = true
		// Persist the VMID before pct creates anything, so that a crash
		// leaves a record `delete --force` can clean up.
		c.Data[DataVMID] = strconv.Itoa(vmid)
		if err := save(c); err != nil {
			_ = nl.UnlockRemove()
			delete(c.Data, DataVMID)
			return 0, err
		}
		err = b.pctCreateRegistering(ctx, vmid, ostemplate, req.Options, nl)
		if err == nil {
			return vmid, nil
		}
		delete(c.Data, DataVMID)
		var pe *pve.PctError
		if errors.As(err, &pe) {
			switch pe.Reason {
			case pve.ReasonAlreadyExists:
				if attempt+1 < maxVMIDAttempts {
					b.log.Debug("vmid taken, trying another", "id", c.ID, "vmid", vmid)
					continue
				}
				_ = save(c)
				return 0, errs.Wrap(errs.KindAlreadyExists, err, "container %s: %d VMIDs in proxmox.vmid_range [%d, %d] were taken by other creators while nexcage tried them", c.ID, maxVMIDAttempts, lo, hi).
					WithHint("retry; if it persists, give nexcage a VMID range of its own (proxmox.vmid_range) that nothing else uses")
			case pve.ReasonTimeout:
				// pct was killed mid-create: remove what it left, but
				// only if the config is recognisably ours.
				b.destroyIfOurs(c.ID, vmid, req.Hostname)
			case pve.ReasonTemplateMissing:
				_ = save(c)
				return 0, errs.Wrap(errs.KindTemplate, err, "container %s: template %s", c.ID, ostemplate)
			}
		}
		_ = save(c)
		return 0, fmt.Errorf("container %s: %w", c.ID, err)
	}
}

// vmidLockWait bounds the wait for another nexcage on this node to
// register its VMID: pct create does that first, within seconds.
const vmidLockWait = 5 * time.Minute

// vmidLock takes this node's VMID allocation lock. It lives in the LXC
// path, which is local to the node (unlike /etc/pve), and goes with its
// last holder.
func (b *Backend) vmidLock(ctx context.Context) (*lockfile.Lock, error) {
	dir := b.helperBase()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, errs.Wrap(errs.KindBackend, err, "cannot create %s", dir)
	}
	wait := vmidLockWait
	if t := b.pct.Timeout; t > wait {
		wait = t
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	p := filepath.Join(dir, "vmid.lock")
	l, err := lockfile.Acquire(lctx, p, 20*time.Millisecond)
	if err != nil {
		if lctx.Err() != nil {
			return nil, errs.Wrap(errs.KindLocked, err, "waited %v for another nexcage on this node to pick its VMID", wait).
				WithHint("a pct create may hang; check `ps -C pct` and %s", p)
		}
		return nil, errs.Wrap(errs.KindBackend, err, "cannot take the VMID lock %s", p)
	}
	return l, nil
}

// pctCreateRegistering runs pct create and releases nl as soon as vmid is
// in the cluster's .vmlist (registered, by this create or anyone else) or
// pct has finished, whichever comes first. nl is released in every case.
func (b *Backend) pctCreateRegistering(ctx context.Context, vmid int, ostemplate string, opts []pve.Option, nl *lockfile.Lock) error {
	defer func() { _ = nl.UnlockRemove() }()
	done := make(chan error, 1)
	go func() { done <- b.pct.Create(ctx, vmid, ostemplate, opts) }()
	vmlist := filepath.Join(b.etcPve, ".vmlist")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if l, err := pve.ReadVMList(vmlist); err == nil {
				if _, ok := l.Lookup(vmid); ok {
					_ = nl.UnlockRemove()
					return <-done
				}
			}
		}
	}
}

func (b *Backend) allocateVMID(lo, hi int, tried map[int]bool) (int, error) {
	p := filepath.Join(b.etcPve, ".vmlist")
	l, err := pve.ReadVMList(p)
	if err != nil {
		return 0, errs.Wrap(errs.KindBackend, err, "cannot read the cluster's VMID list %s", p)
	}
	for id := lo; id <= hi; id++ {
		if _, used := l.Lookup(id); !used && !tried[id] {
			return id, nil
		}
	}
	return 0, errs.New(errs.KindAlreadyExists, "no free VMID in proxmox.vmid_range [%d, %d]", lo, hi).
		WithHint("widen proxmox.vmid_range or delete unused containers")
}

// appendRaw adds the raw lxc lines to the .conf, rewriting it atomically.
func (b *Backend) appendRaw(path string, raw []pve.RawLine) error {
	if len(raw) == 0 {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	conf, _, err := pve.ParseConfig(data)
	if err != nil {
		return err
	}
	for _, r := range raw {
		if err := pve.CheckRawKey(r.Key); err != nil {
			return err
		}
		if r.Key == pve.EnvKey {
			conf.Env = append(conf.Env, r.Value)
		} else {
			conf.Raw = append(conf.Raw, r)
		}
	}
	out, err := conf.Marshal()
	if err != nil {
		return err
	}
	return renameio.WriteFile(path, out, 0o640)
}

// destroyQuietly removes a container during rollback.
func (b *Backend) destroyQuietly(id string, vmid int) {
	ctx, cancel := context.WithTimeout(context.Background(), b.pct.Timeout+time.Minute)
	defer cancel()
	if err := b.pct.Destroy(ctx, vmid, true, true); err != nil && !isReason(err, pve.ReasonNoConfig) {
		b.log.Error("rollback: cannot destroy Proxmox container", "id", id, "vmid", vmid, "err", err)
	}
}

// claimUnfinished decides what delete does with the VMID of a container
// whose create never finished. It reports whether the CT there is ours to
// destroy: its config carries our tag and hostname, or it is a bare
// `lock: create` config (pct create was killed before it wrote the rest).
// With force it also clears that stale `create` lock (pct unlock), which
// pct destroy would refuse. A CT that is not ours is left alone (another
// creator took the VMID before our pct create could).
func (b *Backend) claimUnfinished(ctx context.Context, c *state.Container, vmid int, force bool) (bool, error) {
	data, err := os.ReadFile(b.confPath(b.nodeOf(c), vmid))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // pct never registered it
	}
	if err != nil {
		return false, errs.Wrap(errs.KindBackend, err, "container %s: cannot read the config of CT %d", c.ID, vmid)
	}
	conf, _, err := pve.ParseConfig(data)
	if err != nil {
		return false, errs.Wrap(errs.KindBackend, err, "container %s: cannot parse the config of CT %d", c.ID, vmid)
	}
	lock, _ := conf.Get("lock")
	host, hasHost := conf.Get("hostname")
	tags, hasTags := conf.Get("tags")
	ours := strings.Contains(";"+tags+";", ";"+Tag+";") && (c.Data[DataHostname] == "" || host == c.Data[DataHostname])
	bare := lock == "create" && !hasHost && !hasTags && len(conf.Raw) == 0
	switch {
	case !ours && !bare:
		b.log.Warn("the VMID recorded for an unfinished create holds a CT that is not this container's; leaving it alone",
			"id", c.ID, "vmid", vmid, "hostname", host, "tags", tags)
		return false, nil
	case lock != "create" || !force:
		return true, nil
	}
	// A pct create still running holds the config lock, so pct unlock
	// fails (lock timeout) rather than pull a create from under its feet.
	b.log.Warn("clearing the create lock left by an interrupted pct create", "id", c.ID, "vmid", vmid)
	if err := b.pct.Unlock(ctx, vmid); err != nil && !isReason(err, pve.ReasonNoConfig) {
		return false, fmt.Errorf("container %s: %w", c.ID, err)
	}
	return true, nil
}

// destroyIfOurs destroys vmid only when its config carries our tag and
// hostname: after a timeout nobody knows whose container that VMID is.
func (b *Backend) destroyIfOurs(id string, vmid int, hostname string) {
	data, err := os.ReadFile(b.confPath(b.node, vmid))
	if err != nil {
		return
	}
	conf, _, err := pve.ParseConfig(data)
	if err != nil {
		return
	}
	tags, _ := conf.Get("tags")
	h, _ := conf.Get("hostname")
	if h == hostname && strings.Contains(";"+tags+";", ";"+Tag+";") {
		b.destroyQuietly(id, vmid)
	}
}

// newRef is a container's reference on a template: unique even across
// nexcage state roots that reuse container ids.
func newRef(id string) string {
	r := make([]byte, 6)
	_, _ = rand.Read(r)
	return SanitizeHostname(id) + "-" + hex.EncodeToString(r)
}

// releaseResolved drops the container's use of a resolved template.
func (b *Backend) releaseResolved(volid, ref, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.tmpl.Release(ctx, volid, ref); err != nil {
		b.log.Warn("cannot release template", "id", id, "template", volid, "err", err)
	}
}

// applyImageConfig gives a template-only container the process of the
// OCI image it was built from (Entrypoint+Cmd, Env, WorkingDir, numeric
// User), as Proxmox 9.1 does for OCI images.
func applyImageConfig(s *specs.Spec, ic *template.ImageConfig) error {
	args := append(append([]string{}, ic.Entrypoint...), ic.Cmd...)
	if len(args) == 0 {
		return nil
	}
	p := &specs.Process{Args: args, Env: ic.Env, Cwd: ic.WorkingDir}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if ic.User != "" {
		u, g, hasGroup := strings.Cut(ic.User, ":")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return unsupported("image config User", "%q is not numeric; only uid[:gid] can be mapped to lxc.init.uid/gid", ic.User)
		}
		p.User.UID = uint32(uid)
		if hasGroup {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return unsupported("image config User", "%q: group is not numeric", ic.User)
			}
			p.User.GID = uint32(gid)
		}
	}
	s.Process = p
	return nil
}

func isReason(err error, r pve.Reason) bool {
	var pe *pve.PctError
	return errors.As(err, &pe) && pe.Reason == r
}

// Start runs pct start and records the host pid of the container's init.
func (b *Backend) Start(ctx context.Context, c *state.Container) error {
	vmid, ok := vmidOf(c)
	if !ok {
		return errs.New(errs.KindState, "container %s has no Proxmox VMID (create did not finish)", c.ID).
			WithHint("delete it with `nexcage delete --force %s` and create it again", c.ID)
	}
	if supervised(c) {
		return b.startSupervisedProcess(c)
	}
	if err := b.pct.Start(ctx, vmid); err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	pid, err := b.initPid(ctx, vmid)
	if err != nil {
		return addContainer(c.ID, err)
	}
	c.Status, c.Pid = state.Running, pid
	if st, ok := procfs.StartTime(pid); ok {
		c.Data[DataStartTime] = st
	}
	return nil
}

// initPid asks LXC (not pct) for the host pid of the container's init,
// waiting until it is known.
func (b *Backend) initPid(ctx context.Context, vmid int) (int, error) {
	deadline := time.Now().Add(b.PidTimeout)
	var last string
	for {
		out, err := execOutput(ctx, b.lxcInfo, "-P", b.lxcPath, "-n", strconv.Itoa(vmid), "-p", "-H")
		s := strings.TrimSpace(out)
		if err == nil {
			if pid, perr := strconv.Atoi(s); perr == nil && pid > 0 {
				return pid, nil
			}
		}
		last = strings.TrimSpace(s + " " + errText(err))
		if time.Now().After(deadline) {
			return 0, errs.New(errs.KindBackend, "CT %d was started but its init pid is unknown (lxc-info: %s)", vmid, last).
				WithHint("check `lxc-info -P %s -n %d` and the container's log /run/pve/ct-%d.stderr", b.lxcPath, vmid, vmid)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Refresh updates status and pid from /proc and the cluster file system
// only: no pct and no LXC calls. A container whose init died is stopped;
// one whose Proxmox config is gone is stopped and marked vanished.
func (b *Backend) Refresh(ctx context.Context, cs []*state.Container) error {
	for _, c := range cs {
		vmid, ok := vmidOf(c)
		if !ok || c.Status == state.Creating {
			continue
		}
		if !b.exists(c, vmid) {
			c.Status, c.Pid = state.Stopped, 0
			c.Data[DataVanished] = "1"
			continue
		}
		delete(c.Data, DataVanished)
		if c.Status == state.Running || c.Pid > 0 {
			if b.alive(c) {
				c.Status = state.Running
				if supervised(c) && c.Data[DataStarted] == "" {
					c.Status = state.Created // the init helper waits for start
				}
			} else {
				c.Status, c.Pid = state.Stopped, 0
				delete(c.Data, DataStartTime)
			}
		}
	}
	return nil
}

// exists reports whether the container's config is still in the cluster
// file system (pmxcfs keeps /etc/pve identical on every node).
func (b *Backend) exists(c *state.Container, vmid int) bool {
	_, err := os.Stat(b.confPath(b.nodeOf(c), vmid))
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// alive reports whether c's recorded init pid is still that process.
func (b *Backend) alive(c *state.Container) bool {
	if c.Pid <= 0 {
		return false
	}
	st, ok := procfs.StartTime(c.Pid)
	if !ok {
		return false
	}
	if want := c.Data[DataStartTime]; want != "" && want != st {
		return false // pid reused by another process
	}
	return true
}

// Kill signals the container's init directly by its host pid; with all,
// every process in the container's pid namespace.
func (b *Backend) Kill(ctx context.Context, c *state.Container, sig syscall.Signal, all bool) error {
	if err := b.Refresh(ctx, []*state.Container{c}); err != nil {
		return err
	}
	if c.Status != state.Running && !(c.Status == state.Created && c.Pid > 0) {
		return errs.New(errs.KindState, "container %s: container not running", c.ID)
	}
	b.recordSignal(c, sig)
	if all {
		pids, err := pidsInNamespace(c.Pid)
		if err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot list its processes", c.ID)
		}
		for _, p := range pids {
			if p != c.Pid {
				_ = syscall.Kill(p, sig)
			}
		}
	}
	if err := syscall.Kill(c.Pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return errs.New(errs.KindState, "container %s: container not running", c.ID)
		}
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot signal init (pid %d)", c.ID, c.Pid)
	}
	return nil
}

// Stop shuts the container down gracefully with pct shutdown, killing it
// after timeoutSec.
func (b *Backend) Stop(ctx context.Context, c *state.Container, timeoutSec int) error {
	vmid, ok := vmidOf(c)
	if !ok {
		return errs.New(errs.KindState, "container %s: container not running", c.ID)
	}
	if err := b.pct.Shutdown(ctx, vmid, timeoutSec, true); err != nil && !isReason(err, pve.ReasonNotRunning) {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	c.Status, c.Pid = state.Stopped, 0
	delete(c.Data, DataStartTime)
	return nil
}

// Delete destroys the Proxmox container (pct destroy --purge 1; a running
// one only with force, after pct stop) and releases the packed template.
// A container already gone from Proxmox is not an error.
func (b *Backend) Delete(ctx context.Context, c *state.Container, force bool) error {
	vmid, ok := vmidOf(c)
	if ok {
		if err := b.Refresh(ctx, []*state.Container{c}); err != nil {
			return err
		}
		if c.Status == state.Creating {
			// create did not finish (it crashed or was killed): the VMID
			// may hold a half-made CT of ours, or be someone else's.
			mine, err := b.claimUnfinished(ctx, c, vmid, force)
			if err != nil {
				return err
			}
			if !mine {
				c.Data[DataVanished] = "1"
			}
		}
		if c.Data[DataVanished] == "" {
			if c.Status == state.Created && supervised(c) && c.Pid > 0 {
				// Its init helper runs (waiting for start): stop it.
				if err := b.pct.Stop(ctx, vmid); err != nil && !isReason(err, pve.ReasonNotRunning) && !isReason(err, pve.ReasonNoConfig) {
					return fmt.Errorf("container %s: %w", c.ID, err)
				}
			} else if c.Status == state.Stopped && supervised(c) {
				b.waitLxcStopped(ctx, vmid)
			}
			if c.Status == state.Running {
				if !force {
					return errs.New(errs.KindState, "container %s is running; cannot delete it", c.ID).
						WithHint("stop it first (`nexcage stop %s`) or use `nexcage delete --force %s`", c.ID, c.ID)
				}
				if err := b.pct.Stop(ctx, vmid); err != nil && !isReason(err, pve.ReasonNotRunning) && !isReason(err, pve.ReasonNoConfig) {
					return fmt.Errorf("container %s: %w", c.ID, err)
				}
			}
			err := b.pct.Destroy(ctx, vmid, true, false)
			if isReason(err, pve.ReasonDestroyRunning) && force {
				if err = b.pct.Stop(ctx, vmid); err == nil || isReason(err, pve.ReasonNotRunning) {
					err = b.pct.Destroy(ctx, vmid, true, false)
				}
			}
			if err != nil && !isReason(err, pve.ReasonNoConfig) {
				return fmt.Errorf("container %s: %w", c.ID, err)
			}
		}
	}
	// A template packed from the bundle goes with its last user.
	if ref, volid := c.Data[DataTemplateRef], c.Data[DataOSTemplate]; ref != "" && volid != "" {
		b.releaseResolved(volid, ref, c.ID)
	}
	b.cleanupHelper(c)
	c.Status, c.Pid = state.Stopped, 0
	return nil
}

// pidsInNamespace lists the host pids sharing init's pid namespace.
func pidsInNamespace(initPid int) ([]int, error) {
	ns, err := os.Readlink("/proc/" + strconv.Itoa(initPid) + "/ns/pid")
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			out = append(out, pid)
		}
	}
	return out, nil
}

// execOutput runs name with args (argv, no shell) and returns its stdout.
func execOutput(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), err
}
