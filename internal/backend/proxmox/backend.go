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

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/atomicfile"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/hooks"
	"github.com/nexcage/nexcage/internal/lockfile"
	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/pve"
	"github.com/nexcage/nexcage/internal/runtime"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/template"
	"github.com/nexcage/nexcage/internal/trust"
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
	// DataOwnerRef is this container's secret reference, written into the
	// CT's description at create (nexcage-ref=<hex>): the only proof that
	// the CT at the recorded VMID is this container's (ownership.go).
	DataOwnerRef = "owner_ref"
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
	lockDir string // Proxmox's lock directory (pve-config-<vmid>.lock)
	node    string
	lxcInfo string
	// tmpl resolves --image and the template annotation (internal/template).
	tmpl *template.Resolver
	// PidTimeout bounds the wait for the init pid after pct start.
	PidTimeout time.Duration
	// ConfigLockWait bounds the wait for Proxmox's config lock before
	// nexcage edits a CT config (default pve.DefaultConfigLockWait).
	ConfigLockWait time.Duration
	// SelfExe is the nexcage binary used as init helper and supervisor;
	// empty means os.Executable().
	SelfExe string
	// lxcAttach is the lxc-attach binary exec uses.
	lxcAttach string
	// SubUID and SubGID are the node's delegated id range files a
	// bundle's own user namespace mapping is checked against
	// (Input.SubUID); "" skips the check.
	SubUID, SubGID string
	// StateDir is the backend's private directory in the state root
	// (state.Store.BackendRoot): it holds the cache of the node's version
	// (nodeversion.go). Empty: nothing is cached.
	StateDir string

	// hooks runs the OCI hooks; nil is a hooks.Runner logging to log
	// (tests set their own).
	hooks *hooks.Runner

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
	grace := time.Duration(p.KillGrace) * time.Second
	b := &Backend{
		cfg:    cfg,
		log:    log,
		pct:    &pve.Pct{Path: pct, Timeout: timeout, KillGrace: grace, Retries: 3, RetryDelay: 500 * time.Millisecond, Log: log},
		etcPve: orDefault(p.EtcPve, "/etc/pve"), lxcPath: orDefault(p.LxcPath, "/var/lib/lxc"),
		lockDir: orDefault(p.LockDir, pve.DefaultLockDir),
		node:    p.Node, lxcInfo: "lxc-info", lxcAttach: "lxc-attach", PidTimeout: 30 * time.Second,
		ConfigLockWait: pve.DefaultConfigLockWait, SubUID: "/etc/subuid", SubGID: "/etc/subgid",
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
// running). Any failure, and a cancelled ctx (SIGINT/SIGTERM), undoes
// everything done so far.
//
// Persist before acquire: every resource is recorded in c and
// checkpointed before it is taken (template reference, helper directory,
// packed template, VMID), so that after a crash at any step `delete
// --force` finds and frees it. When an undo step fails the error wraps
// runtime.ErrCleanupIncomplete and the record stays for delete --force.
func (b *Backend) Create(ctx context.Context, c *state.Container, opts runtime.CreateOptions) (err error) {
	if err := refusePod(c.ID, opts.Spec); err != nil {
		return err
	}
	if c.Data == nil {
		c.Data = map[string]string{}
	}
	save := func() error {
		if opts.Checkpoint == nil {
			return nil
		}
		return opts.Checkpoint(c)
	}
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		var failed []error
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				failed = append(failed, uerr)
			}
		}
		if len(failed) > 0 {
			b.log.Error("create failed and its undo is incomplete; the record stays for delete --force", "id", c.ID, "err", errors.Join(failed...))
			err = incomplete(c.ID, err, failed)
		}
	}()
	c.Data[DataNode] = b.node
	if c.Data[DataOwnerRef] == "" {
		c.Data[DataOwnerRef] = newOwnerRef()
	}

	storages, err := b.storages()
	if err != nil {
		return err
	}
	rootStorage, err := b.rootStorage(storages)
	if err != nil {
		return err
	}
	node, rememberNode := b.nodeVersionForCreate(ctx, c.ID)
	in := Input{
		ID: c.ID, Spec: opts.Spec, BundleDir: opts.Bundle, Storage: rootStorage,
		Bridge: b.cfg.Network.Bridge, Unprivileged: b.cfg.Proxmox.Unprivileged == nil || *b.cfg.Proxmox.Unprivileged,
		Node:   node,
		SubUID: b.SubUID, SubGID: b.SubGID,
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
		in.Rootfs = rootfs
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
		c.Data[DataTemplateRef], c.Data[DataOSTemplate] = ref, ostemplate
		if err := save(); err != nil {
			return err
		}
		undo = append(undo, func() error { return b.releaseResolved(ostemplate, ref, c.ID) })
		if err := b.tmpl.Use(ctx, ostemplate, ref); err != nil {
			return addContainer(c.ID, err)
		}
	}
	// Every container with a process runs it through the init helper,
	// whatever its rootfs (packed bundle rootfs or template): the helper
	// directory is bind-mounted by lxc.mount.entry.
	helper := wantsHelper(in.Spec)
	if helper {
		// prepareHelper records the directory (checkpoint) before it
		// makes it; from then on the undo removes it.
		undo = append(undo, func() error { b.cleanupHelper(c); return nil })
		dir, err := b.prepareHelper(c, save)
		if err != nil {
			return err
		}
		in.InitHelperDir = dir
	}
	req, err := Translate(in)
	if err != nil {
		return err
	}
	if helper {
		// Only now is it known whose root the container's is.
		if err := ownHelperDir(c.ID, in.InitHelperDir, req.RootUID, req.RootGID); err != nil {
			return err
		}
		// In <helper dir>.dev, which the undo (cleanupHelper) removes.
		if err := makeDevices(c.ID, in.InitHelperDir, req.Devices, req.RootUID, req.RootGID); err != nil {
			return err
		}
	}
	for _, w := range req.Warnings {
		b.log.Warn(w, "id", c.ID)
	}
	// Hooks: paths checked and the later verbs' hooks recorded before the
	// CT exists (hooks.go). A create whose prestart or createRuntime hook
	// ran and failed continues the lifecycle at delete: the undo destroys
	// the CT, then runs the poststop hooks (this entry runs after the
	// CT's, the undo going backwards).
	hasHooks, err := b.recordHooks(c, in.Spec.Hooks)
	if err != nil {
		return err
	}
	ranCreateHooks := false
	if hasHooks {
		undo = append(undo, func() error {
			if ranCreateHooks {
				b.runPoststop(c)
			}
			return nil
		})
	}
	if req.ResolvConf != nil {
		if err := atomicfile.Write(filepath.Join(in.InitHelperDir, ResolvConfName), req.ResolvConf, 0o644); err != nil {
			return errs.Wrap(errs.KindBackend, err, "container %s: cannot write its resolv.conf", c.ID)
		}
	}
	if rootfs != "" {
		undo = append(undo, func() error {
			if volid, ref := c.Data[DataOSTemplate], c.Data[DataTemplateRef]; volid != "" && ref != "" {
				return b.releaseResolved(volid, ref, c.ID)
			}
			return nil
		})
		p, err := b.pack(ctx, c, rootfs, req, save)
		if err != nil {
			return err
		}
		ostemplate = p.VolID
		c.Data[DataPacked] = p.Name
	}
	c.Data[DataOSTemplate] = ostemplate

	vmid, err := b.createCT(ctx, c, ostemplate, req, save)
	if err != nil {
		return err
	}
	undo = append(undo, func() error { return b.destroyOwn(c, vmid) })

	if err := pve.AppendRawLocked(ctx, b.lockDir, b.confPath(b.node, vmid), vmid, req.Raw, b.configLockWait()); err != nil {
		return addContainer(c.ID, fmt.Errorf("cannot add raw lxc settings to CT %d: %w", vmid, err))
	}
	c.Status = state.Created
	c.Pid = 0
	if helper {
		// pct start now: the init helper holds process.args until start.
		if err := b.startSupervised(ctx, c, vmid, opts, req.Process, req.Net, req.Rootfs, req.RootUID, req.RootGID); err != nil {
			return err
		}
		// The process inherits it from the helper (oom.go).
		if err := setOOMScoreAdj(c.ID, c.Pid, req.Process.OOMScoreAdj); err != nil {
			return err
		}
		if hasHooks {
			ranCreateHooks = true
			if err := b.runCreateHooks(ctx, c, in.Spec.Hooks); err != nil {
				return err
			}
		}
	}
	rememberNode()
	b.log.Info("proxmox container created", "id", c.ID, "vmid", vmid, "ostemplate", ostemplate, "pid", c.Pid)
	return nil
}

// pack packs the bundle's rootfs, with the mount targets and init script
// the translation needs, into a template (internal/template's packer).
//
// The packed template's volume id and this container's reference on it
// are checkpointed once the content's digest names it, before anything is
// written to the template cache.
func (b *Backend) pack(ctx context.Context, c *state.Container, rootfs string, req *Request, save func() error) (*template.Packed, error) {
	ref := newRef(c.ID)
	popts := template.PackOptions{Rootfs: rootfs, Source: c.Bundle, What: "packing the rootfs of " + c.ID,
		BeforeAcquire: func(volid string) error {
			c.Data[DataOSTemplate], c.Data[DataTemplateRef] = volid, ref
			return save()
		}}
	for _, t := range req.MountTargets {
		popts.Targets = append(popts.Targets, template.Target{Path: t.Path, File: t.File})
	}
	p, err := b.tmpl.PackAndAcquire(ctx, popts, ref)
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
func (b *Backend) createCT(ctx context.Context, c *state.Container, ostemplate string, req *Request, save func() error) (int, error) {
	lo, hi := b.cfg.Proxmox.VMIDRange[0], b.cfg.Proxmox.VMIDRange[1]
	if lo == 0 && hi == 0 {
		lo, hi = 100, 999999999
	}
	c.Data[DataHostname] = req.Hostname
	// The CT's description carries our reference: the only thing that
	// says "this CT is ours" later (ownership.go). It is written with
	// the full config, so a create killed before that leaves a bare
	// `lock: create` config instead.
	opts := withOwnerRef(req.Options, c.Data[DataOwnerRef])
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
		if err := save(); err != nil {
			_ = nl.UnlockRemove()
			delete(c.Data, DataVMID)
			return 0, err
		}
		err = b.pctCreateRegistering(ctx, vmid, ostemplate, opts, nl)
		if err == nil {
			return vmid, nil
		}
		if isReason(err, pve.ReasonTimeout) || ctx.Err() != nil {
			// pct got SIGTERM (timeout or our own interrupt) and, on a
			// real node, its worker rolls back. Remove what it may have
			// left, only if it is ours. If that fails the VMID stays
			// recorded for delete --force.
			if cerr := b.removeInterrupted(c, vmid); cerr != nil {
				_ = save()
				return 0, incomplete(c.ID, fmt.Errorf("container %s: %w", c.ID, err), []error{cerr})
			}
			delete(c.Data, DataVMID)
			_ = save()
			return 0, fmt.Errorf("container %s: %w", c.ID, err)
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
				_ = save()
				return 0, errs.Wrap(errs.KindAlreadyExists, err, "container %s: %d VMIDs in proxmox.vmid_range [%d, %d] were taken by other creators while nexcage tried them", c.ID, maxVMIDAttempts, lo, hi).
					WithHint("retry; if it persists, give nexcage a VMID range of its own (proxmox.vmid_range) that nothing else uses")
			case pve.ReasonTemplateMissing:
				_ = save()
				return 0, errs.Wrap(errs.KindTemplate, err, "container %s: template %s", c.ID, ostemplate)
			}
		}
		_ = save()
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
	if _, err := b.makeHelperBase(); err != nil {
		return nil, err
	}
	wait := vmidLockWait
	if t := b.pct.Timeout; t > wait {
		wait = t
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	p := b.vmidLockPath()
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

// newRef is a container's reference on a template: unique even across
// nexcage state roots that reuse container ids.
func newRef(id string) string {
	r := make([]byte, 6)
	_, _ = rand.Read(r)
	return SanitizeHostname(id) + "-" + hex.EncodeToString(r)
}

// releaseResolved drops the container's use of a resolved template. It
// runs on a context of its own: undo steps run after a cancel too.
func (b *Backend) releaseResolved(volid, ref, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.tmpl.Release(ctx, volid, ref); err != nil {
		b.log.Warn("cannot release template", "id", id, "template", volid, "err", err)
		return err
	}
	return nil
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
			return unsupported("image config User", "%q is not numeric; only uid[:gid] can be used on Proxmox (the image's user database is not read)", ic.User)
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
		if err := b.startSupervisedProcess(c); err != nil {
			return err
		}
		b.runPoststart(ctx, c)
		return nil
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
		if errors.Is(err, errHostPidNS) {
			return errs.New(errs.KindState, "container %s: kill --all refused: the recorded init (pid %d) is in the host's pid namespace, not in a container", c.ID, c.Pid).
				WithHint("the container's state is wrong; check `lxc-info -P %s -n %s -p` and delete the container with `nexcage delete --force %s`", b.lxcPath, c.Data[DataVMID], c.ID)
		}
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

// Delete destroys the Proxmox container (pct destroy --purge 1
// --destroy-unreferenced-disks 1; a running one only with force, after
// pct stop) and releases the packed template. A container already gone
// from Proxmox, or whose VMID now holds a CT that is not ours (by the
// reference in its description, ownership.go), is not an error: nothing
// is destroyed and only our own resources go.
func (b *Backend) Delete(ctx context.Context, c *state.Container, force bool) error {
	vmid, ok := vmidOf(c)
	// create did not finish (it crashed or was killed, at any step).
	unfinished := c.Status == state.Creating
	if ok {
		if err := b.Refresh(ctx, []*state.Container{c}); err != nil {
			return err
		}
		if unfinished {
			// create did not finish (it crashed or was killed): the VMID
			// may hold a half-made CT of ours, or be someone else's.
			mine, err := b.claimUnfinished(ctx, c, vmid, force)
			if err != nil {
				return err
			}
			if !mine {
				c.Data[DataVanished] = "1"
			}
		} else if c.Data[DataVanished] == "" && !b.stillOurs(c, vmid) {
			c.Data[DataVanished] = "1"
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
			if unfinished {
				// An interrupted pct create may have left the rootfs
				// mounted (with its loop device); pct destroy cannot
				// free a mounted volume.
				if err := b.unmountLeftRootfs(vmid); err != nil {
					return addContainer(c.ID, err)
				}
			}
			err := b.pct.Destroy(ctx, vmid, destroyOpts)
			if isReason(err, pve.ReasonDestroyRunning) && force {
				if err = b.pct.Stop(ctx, vmid); err == nil || isReason(err, pve.ReasonNotRunning) {
					err = b.pct.Destroy(ctx, vmid, destroyOpts)
				}
			}
			if err != nil && !isReason(err, pve.ReasonNoConfig) {
				return fmt.Errorf("container %s: %w", c.ID, err)
			}
		}
	}
	// A template packed from the bundle goes with its last user.
	if ref, volid := c.Data[DataTemplateRef], c.Data[DataOSTemplate]; ref != "" && volid != "" {
		// On failure the record stays, so that a retry releases it.
		if err := b.releaseResolved(volid, ref, c.ID); err != nil {
			return addContainer(c.ID, err)
		}
	}
	b.cleanupHelper(c)
	if unfinished {
		b.tidyVMIDLock()
	}
	c.Status, c.Pid = state.Stopped, 0
	// The container is deleted: its poststop hooks (hooks.go).
	b.runPoststop(c)
	return nil
}

// tidyVMIDLock removes the node's VMID lock file if nobody holds it: a
// create killed while it held the lock could not remove it (the lock
// itself went with the process).
func (b *Backend) tidyVMIDLock() {
	p := b.vmidLockPath()
	if _, err := os.Lstat(p); err != nil {
		return
	}
	l, err := lockfile.TryAcquire(p)
	if err != nil || l == nil {
		return // held: its holder removes it
	}
	_ = l.UnlockRemove()
}

func (b *Backend) vmidLockPath() string { return filepath.Join(b.helperBase(), "vmid.lock") }

// destroyOpts frees everything of a VMID that is ours: the volumes the
// config names and those it does not (left by an interrupted create), and
// its entries in backup jobs, replication and HA.
var destroyOpts = pve.DestroyOptions{Purge: true, UnreferencedDisks: true}

// errHostPidNS: a container's recorded init is in the host's pid
// namespace, whose processes are all of the host's.
var errHostPidNS = errors.New("the process is in the host's pid namespace")

// pidsInNamespace lists the host pids sharing init's pid namespace. It
// refuses (errHostPidNS) when that namespace is nexcage's own: that would
// be every process of the host, never a container's.
func pidsInNamespace(initPid int) ([]int, error) {
	ns, err := os.Readlink("/proc/" + strconv.Itoa(initPid) + "/ns/pid")
	if err != nil {
		return nil, err
	}
	own, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return nil, err
	}
	if ns == own {
		return nil, errHostPidNS
	}
	pids, err := procfs.Pids()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range pids {
		if l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid"); err == nil && l == ns {
			out = append(out, pid)
		}
	}
	return out, nil
}

// execOutput runs name with args (argv, no shell) and returns its stdout.
// name (lxc-info, pveversion) runs as root, so it must be trusted
// (internal/trust): a program found in a directory another user can
// write is refused without being run.
func execOutput(ctx context.Context, name string, args ...string) (string, error) {
	if _, err := trust.LookPath(name); errs.KindOf(err) == errs.KindInvalidConfig {
		return "", err
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), err
}
