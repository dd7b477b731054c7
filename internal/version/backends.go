package version

import (
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/trust"
)

// Backend is one backend tool nexcage can find, with its version.
type Backend struct {
	Name    string // "runc", "crun" or "pve-container"
	Path    string // the binary found (for pve-container: pct)
	Version string // first line of its version output; "" when Err is set
	Err     error  // why it was not found or did not answer
}

// Probe says where to look; empty fields take the defaults.
type Probe struct {
	Runc, Crun, Pct string // binaries (name on PATH or path); default runc, crun, pct
	// LookPath and Output are trust.LookPath and running a command for its
	// stdout; tests replace them.
	LookPath func(string) (string, error)
	Output   func(ctx context.Context, name string, args ...string) ([]byte, error)
	Timeout  time.Duration // per command; default 10s
}

// Backends finds runc and crun (with `--version`) and, only when pct is
// present (a Proxmox VE host), pve-container's package version, asked
// with `dpkg-query -W -f ${Version} pve-container` and, failing that,
// read from `pveversion -v`. runc and crun are always listed (with Err
// when missing); pve-container only on Proxmox.
func Backends(ctx context.Context, p Probe) []Backend {
	if p.LookPath == nil {
		p.LookPath = trust.LookPath
	}
	if p.Output == nil {
		p.Output = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).Output()
		}
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	run := func(name string, args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, p.Timeout)
		defer cancel()
		out, err := p.Output(cctx, name, args...)
		return strings.TrimSpace(string(out)), err
	}
	var out []Backend
	for _, b := range []struct{ name, bin string }{{"runc", p.Runc}, {"crun", p.Crun}} {
		if b.bin == "" {
			b.bin = b.name
		}
		r := Backend{Name: b.name}
		if r.Path, r.Err = p.LookPath(b.bin); r.Err == nil {
			var v string
			if v, r.Err = run(r.Path, "--version"); r.Err == nil {
				r.Version, _, _ = strings.Cut(v, "\n")
			}
		}
		out = append(out, r)
	}
	pct := p.Pct
	if pct == "" {
		pct = "pct"
	}
	path, err := p.LookPath(pct)
	if err != nil {
		return out // not a Proxmox host
	}
	r := Backend{Name: "pve-container", Path: path}
	if v, err := run("dpkg-query", "-W", "-f", "${Version}", "pve-container"); err == nil && v != "" {
		r.Version = v
	} else if v, err2 := run("pveversion", "-v"); err2 == nil && pveContainerLine(v) != "" {
		r.Version = pveContainerLine(v)
	} else {
		r.Err = err
		if r.Err == nil {
			r.Err = err2
		}
	}
	return append(out, r)
}

// pveContainerLine finds "pve-container: 6.0.15" in `pveversion -v` output.
func pveContainerLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "pve-container:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
