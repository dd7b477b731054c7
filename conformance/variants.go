package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Variant is one runtime the suite is run against (RUNTIME=...).
type Variant struct {
	Name  string // as in expected.txt
	Title string
	// Plain is "runc" or "crun" for the runtime itself (comparison).
	Plain string
	// Backend is where nexcage routes every id: runc, crun, proxmox-lxc.
	Backend string
	PVE     string // proxmox-lxc: the Proxmox VE version pvesim simulates
	// Unprivileged: proxmox-lxc containers as nexcage creates them by
	// default (proxmox.unprivileged); otherwise privileged, as issue 15
	// measured.
	Unprivileged bool
	failAll      bool
}

// Calibration is the runtime that fails every command: a test that passes
// against it asserts only refusals, so its pass proves nothing.
var Calibration = Variant{Name: "fail-all", Title: "a runtime that fails every command (calibration)", failAll: true}

// Variants are the runtimes a full run covers, in report order.
var Variants = []Variant{
	{Name: "nexcage-runc", Title: "nexcage routed to runc", Backend: "runc"},
	{Name: "nexcage-crun", Title: "nexcage routed to crun", Backend: "crun"},
	{Name: "nexcage-pve9.1", Title: "nexcage routed to Proxmox (pvesim as PVE 9.1, privileged containers)", Backend: "proxmox-lxc", PVE: "9.1"},
	{Name: "nexcage-pve8.4", Title: "nexcage routed to Proxmox (pvesim as PVE 8.4, privileged containers)", Backend: "proxmox-lxc", PVE: "8.4"},
	{Name: "nexcage-pve9.1-unpriv", Title: "nexcage routed to Proxmox (pvesim as PVE 9.1, unprivileged containers: nexcage's default)", Backend: "proxmox-lxc", PVE: "9.1", Unprivileged: true},
	{Name: "runc", Title: "runc itself (comparison)", Plain: "runc"},
	{Name: "crun", Title: "crun itself (comparison)", Plain: "crun"},
}

// VariantByName finds a variant of Variants (or the calibration).
func VariantByName(name string) (Variant, bool) {
	for _, v := range append(Variants, Calibration) {
		if v.Name == name {
			return v, true
		}
	}
	return Variant{}, false
}

// env is a variant set up under its own directory: the environment the
// tests run with, their working directory, and how to remove what a test
// left behind.
type env struct {
	v       Variant
	dir     string
	cwd     string // runtimetest and the rootfs tarball (the tests use relative paths)
	out     string // each test's stdout/stderr
	vars    []string
	nexcage string
	pvesim  string
	pveRoot string
	state   string // plain runc/crun --root
	tool    string // plain runc/crun binary
}

// setup prepares variant v under base.
func setup(ctx context.Context, s *Suite, o *Options, v Variant, base string) (*env, error) {
	e := &env{v: v, dir: filepath.Join(base, v.Name)}
	e.cwd, e.out = filepath.Join(e.dir, "cwd"), filepath.Join(e.dir, "out")
	tmp := filepath.Join(e.dir, "tmp")
	for _, d := range []string{e.cwd, e.out, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyFile(filepath.Join(s.Bin, "runtimetest"), filepath.Join(e.cwd, "runtimetest"), 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(s.Rootfs, filepath.Join(e.cwd, filepath.Base(s.Rootfs)), 0o644); err != nil {
		return nil, err
	}
	// The suite makes its bundles with os.MkdirTemp("", ...): under TMPDIR,
	// so inside this run's directory.
	e.vars = []string{"TMPDIR=" + tmp}
	var runtimePath string
	switch {
	case v.failAll:
		runtimePath = filepath.Join(e.dir, "fail-all")
		if err := writeScript(runtimePath, "echo 'fail-all: this runtime fails every command' >&2\nexit 1"); err != nil {
			return nil, err
		}
	case v.Plain != "":
		bin, err := exec.LookPath(v.Plain)
		if err != nil {
			return nil, fmt.Errorf("%s is required (apt-get install %s): %w", v.Plain, v.Plain, err)
		}
		e.tool, e.state = bin, filepath.Join(e.dir, "state")
		// The only change to the runtime's command line is a --root of
		// this run's own, so that the cleanup sees only this run's
		// containers.
		body := "exec " + shQuote(bin) + " --root " + shQuote(e.state) + ` "$@"`
		if v.Plain == "crun" {
			// crun refuses the hybrid cgroup layout unless the v2
			// hierarchy is out of its mount namespace (see
			// shared/reference/oci-runtime.md §4 and docs/ARCHITECTURE.md).
			body = `exec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"' ` + body[len("exec "):]
		}
		runtimePath = filepath.Join(e.dir, v.Plain)
		if err := writeScript(runtimePath, body); err != nil {
			return nil, err
		}
	default:
		e.nexcage = o.Nexcage
		runtimePath = o.Nexcage
		cfg, err := e.nexcageConfig(ctx, o)
		if err != nil {
			return nil, err
		}
		e.vars = append(e.vars, "NEXCAGE_CONFIG="+cfg)
	}
	e.vars = append(e.vars, "RUNTIME="+runtimePath)
	return e, nil
}

// nexcageConfig writes a nexcage config routing every id to the variant's
// backend (and, for Proxmox, initialises a pvesim node) and returns its
// path. nexcage reads it through NEXCAGE_CONFIG, so RUNTIME is the nexcage
// binary itself; the state root is the config's runtime.root_path.
func (e *env) nexcageConfig(ctx context.Context, o *Options) (string, error) {
	cfg := map[string]any{
		"runtime": map[string]any{
			"root_path": filepath.Join(e.dir, "root"),
			"routing":   []map[string]string{{"pattern": ".*", "runtime": e.v.Backend}},
		},
		"storage": map[string]any{"image_path": filepath.Join(e.dir, "images")},
	}
	if e.v.Backend == "proxmox-lxc" {
		e.pvesim = o.Pvesim
		e.pveRoot = filepath.Join(e.dir, "pve")
		bin := filepath.Join(e.dir, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			return "", err
		}
		for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
			if err := os.Symlink(o.Pvesim, filepath.Join(bin, tool)); err != nil {
				return "", err
			}
		}
		e.vars = append(e.vars, "PVESIM_ROOT="+e.pveRoot, "PVESIM_PVE_VERSION="+e.v.PVE)
		if out, err := e.command(ctx, o.Pvesim, "init", "--with-templates").CombinedOutput(); err != nil {
			return "", fmt.Errorf("pvesim init (PVE %s): %v: %s", e.v.PVE, err, out)
		}
		unprivileged := e.v.Unprivileged
		cfg["proxmox"] = map[string]any{
			"pct_path":        filepath.Join(bin, "pct"),
			"pveam_path":      filepath.Join(bin, "pveam"),
			"pvesh_path":      filepath.Join(bin, "pvesh"),
			"pveversion_path": filepath.Join(bin, "pveversion"),
			"etc_pve":         filepath.Join(e.pveRoot, "etc/pve"),
			"lxc_path":        filepath.Join(e.pveRoot, "var/lib/lxc"),
			"lock_dir":        filepath.Join(e.pveRoot, "run/lock/lxc"),
			"node":            "pve",
			"timeout":         120,
			// Privileged unless the variant says otherwise, as issue 15
			// measured: the suite's tests (devices, sysctl, uid mappings)
			// are written for a runtime running as root.
			"unprivileged": unprivileged,
		}
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, "nexcage.json")
	return path, os.WriteFile(path, data, 0o644)
}

// command is argv with the variant's environment.
func (e *env) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), e.vars...)
	cmd.Dir = e.cwd
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// cleanup force-deletes every container the variant's runtime still knows
// and, on a pvesim node, stops and destroys every container left there. It
// returns what it removed (a test that leaves containers behind is worth
// knowing about).
func (e *env) cleanup(ctx context.Context) []string {
	var removed []string
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	list := func(name string, args ...string) []string {
		out, err := e.command(ctx, name, args...).Output()
		if err != nil {
			return nil
		}
		return strings.Fields(string(out))
	}
	switch {
	case e.nexcage != "":
		for _, id := range list(e.nexcage, "list", "-q") {
			_ = e.command(ctx, e.nexcage, "delete", "--force", id).Run()
			removed = append(removed, id)
		}
	case e.tool != "":
		for _, id := range list(e.tool, "--root", e.state, "list", "-q") {
			_ = e.command(ctx, e.tool, "--root", e.state, "delete", "-f", id).Run()
			removed = append(removed, id)
		}
	}
	if e.pveRoot != "" {
		confs, _ := filepath.Glob(filepath.Join(e.pveRoot, "etc/pve/nodes/pve/lxc/*.conf"))
		for _, c := range confs {
			vmid := strings.TrimSuffix(filepath.Base(c), ".conf")
			if _, err := strconv.Atoi(vmid); err != nil {
				continue
			}
			_ = e.command(ctx, e.pvesim, "pct", "stop", vmid).Run()
			_ = e.command(ctx, e.pvesim, "pct", "destroy", vmid, "--purge", "1").Run()
			removed = append(removed, "vmid "+vmid)
		}
	}
	removed = append(removed, unmountUnder(e.dir)...)
	removed = append(removed, removeSuiteCgroups()...)
	// Bundles the suite did not remove (a test killed by its timeout).
	tmps, _ := filepath.Glob(filepath.Join(e.dir, "tmp", "*"))
	for _, t := range tmps {
		_ = os.RemoveAll(t)
	}
	return removed
}

// unmountUnder detaches every mount below dir, deepest first, and
// returns them. linux_ns_itype runs its container in the host's mount
// namespace (every namespace "inherited"), so runc's mounts of its proc,
// dev and sys stay on the host after the container is gone, and the
// suite's own cleanup cannot remove the bundle.
func unmountUnder(dir string) []string {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
	var out []string
	for _, m := range ms {
		if m.Mountpoint == dir {
			continue
		}
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err == nil {
			out = append(out, "mount "+m.Mountpoint)
		}
	}
	return out
}

// suiteCgroups are the cgroups the suite's tests ask for
// (runtime-tools' cgroups.AbsCgroupPath and RelCgroupPath), children first.
// runc removes the container's own cgroup but not the parents it created
// for a relative path.
var suiteCgroups = []string{"testdir/cgrouptest/container", "testdir/cgrouptest", "testdir", "cgrouptest"}

// removeSuiteCgroups removes what is left of the suite's cgroups in every
// hierarchy. rmdir removes only a cgroup without processes or children,
// so nothing in use goes.
func removeSuiteCgroups() []string {
	var out []string
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	hs = append(hs, "/sys/fs/cgroup")
	for _, h := range hs {
		for _, c := range suiteCgroups {
			p := filepath.Join(h, c)
			if err := unix.Rmdir(p); err == nil {
				out = append(out, "cgroup "+p)
			}
		}
	}
	return out
}

func writeScript(path, body string) error {
	return os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755)
}

// shQuote quotes s for sh (the paths are this run's own temporary ones).
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
