package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/bundle"
)

const busyboxPath = "/bin/busybox"

// busyboxBundle writes a bundle in dir whose rootfs is busybox-static
// (one symlink per applet) running args.
func busyboxBundle(dir string, args []string) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("busybox-static is required (apt-get install busybox-static): %w", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil && !os.IsExist(err) {
				return err
			}
		}
	}
	for name, body := range map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n"} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	s := bundle.DefaultSpec()
	s.Process.Args = args
	return writeSpec(dir, s)
}

func writeSpec(dir string, s *specs.Spec) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

// fillRootfs adds about size bytes of files under rootfs/opt/bench: half
// incompressible (random) and half compressible (repeated text), like a
// real image, generated from a fixed seed so every run packs the same.
func fillRootfs(rootfs string, size int64) error {
	dir := filepath.Join(rootfs, "opt/bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const chunk = 1 << 20
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, chunk)
	line := []byte("nexcage benchmark filler: the quick brown fox jumps over the lazy dog 0123456789\n")
	text := bytes.Repeat(line, chunk/len(line)+1)[:chunk]
	for i := 0; int64(i)*chunk < size; i++ {
		data := text
		if i%2 == 0 {
			for j := 0; j < chunk; j += 8 {
				v := rng.Uint64()
				for k := 0; k < 8; k++ {
					buf[j+k] = byte(v >> (8 * k))
				}
			}
			data = buf
		}
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pveEnv is a pvesim node and a nexcage configured for it.
type pveEnv struct {
	root   string // PVESIM_ROOT
	log    string // PVESIM_LOG
	bin    string // pct, pveam, pvesh symlinks
	config string
	nroot  string // nexcage --root
}

func (e *pveEnv) env(latencyMS int) []string {
	env := []string{"PVESIM_ROOT=" + e.root, "PVESIM_LOG=" + e.log}
	if latencyMS > 0 {
		env = append(env, "PVESIM_LATENCY_MS="+strconv.Itoa(latencyMS))
	}
	return env
}

func (e *pveEnv) confDir() string { return filepath.Join(e.root, "etc/pve/nodes/pve/lxc") }

// newPveEnv initialises a pvesim node with its templates under dir, and
// writes a nexcage config routing runc-* to runc, crun-* to crun and
// everything else to proxmox-lxc.
func newPveEnv(dir, pvesim string) (*pveEnv, error) {
	e := &pveEnv{root: filepath.Join(dir, "pve"), bin: filepath.Join(dir, "bin"), nroot: filepath.Join(dir, "root")}
	e.log = filepath.Join(dir, "pvesim.log")
	for _, d := range []string{e.root, e.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, tool := range []string{"pct", "pveam", "pvesh", "pveversion"} {
		if err := os.Symlink(pvesim, filepath.Join(e.bin, tool)); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(pvesim, "init", "--with-templates")
	cmd.Env = append(os.Environ(), "PVESIM_ROOT="+e.root)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pvesim init: %v: %s", err, out)
	}
	cfg := map[string]any{
		"proxmox": map[string]any{
			"pct_path":        filepath.Join(e.bin, "pct"),
			"pveam_path":      filepath.Join(e.bin, "pveam"),
			"pvesh_path":      filepath.Join(e.bin, "pvesh"),
			"pveversion_path": filepath.Join(e.bin, "pveversion"),
			"etc_pve":         filepath.Join(e.root, "etc/pve"),
			"lxc_path":        filepath.Join(e.root, "var/lib/lxc"),
			"lock_dir":        filepath.Join(e.root, "run/lock/lxc"),
			"node":            "pve",
			"timeout":         120,
		},
		"storage": map[string]any{"image_path": filepath.Join(dir, "images")},
		"runtime": map[string]any{"routing": []map[string]string{
			{"pattern": "^runc-.*$", "runtime": "runc"},
			{"pattern": "^crun-.*$", "runtime": "crun"},
			{"pattern": ".*", "runtime": "proxmox-lxc"},
		}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	e.config = filepath.Join(dir, "nexcage.json")
	return e, os.WriteFile(e.config, data, 0o644)
}

// pctCall is one line of PVESIM_LOG.
type pctCall struct {
	Tool string   `json:"tool"`
	Argv []string `json:"argv"`
	Exit int      `json:"exit"`
	MS   int      `json:"ms"`
}

// pctCalls reads every pct line of PVESIM_LOG.
func (e *pveEnv) pctCalls() ([]pctCall, error) {
	data, err := os.ReadFile(e.log)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []pctCall
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var c pctCall
		if err := json.Unmarshal(l, &c); err != nil {
			return nil, fmt.Errorf("PVESIM_LOG line %q: %w", l, err)
		}
		if c.Tool == "pct" {
			out = append(out, c)
		}
	}
	return out, nil
}

// cleanup stops and destroys whatever is left on the node.
func (e *pveEnv) cleanup(r *runner) {
	ents, _ := os.ReadDir(e.confDir())
	for _, en := range ents {
		vmid := strings.TrimSuffix(en.Name(), ".conf")
		if _, err := strconv.Atoi(vmid); err != nil {
			continue
		}
		pct := filepath.Join(e.bin, "pct")
		_, _ = r.run(e.env(0), pct, "stop", vmid)
		_, _ = r.run(e.env(0), pct, "destroy", vmid, "--purge", "1")
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
