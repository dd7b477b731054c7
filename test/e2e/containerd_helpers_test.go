package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/procfs"
	"github.com/nexcage/nexcage/internal/testutil"
)

// ctrImage is the name the busybox test image is imported under.
const ctrImage = "localhost/nexcage-busybox:latest"

// ctrNamespace is the containerd namespace the tests use; nexcage's
// state root is <runc-root>/<namespace>, as the runc v2 shim passes it.
const ctrNamespace = "nexcage-e2e"

// containerd is a private containerd daemon (own socket, root and state
// under a temp dir, CRI off) whose shims run nexcage as their runc.
type containerd struct {
	t        *testing.T
	dir      string
	sock     string
	runcRoot string // --runc-root given to ctr run: nexcage's --root is <runcRoot>/<namespace>
	nexcage  string
	cmd      *exec.Cmd
	exited   chan struct{}
	logFile  string
}

// newContainerd starts containerd with env added to its environment (the
// shim, and so nexcage, inherit it: NEXCAGE_CONFIG and pvesim's
// variables travel that way) and imports the busybox image.
func newContainerd(t *testing.T, env []string) *containerd {
	t.Helper()
	for _, tool := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (apt-get install containerd, or make deps): %v", tool, err)
		}
	}
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "nxctd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{t: t, dir: dir, sock: filepath.Join(dir, "ctd.sock"), runcRoot: filepath.Join(dir, "runc"),
		nexcage: NexcageBin(t), exited: make(chan struct{}), logFile: filepath.Join(dir, "containerd.log")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(c.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command("containerd", "--config", cfgPath)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(c.stop)
	Eventually(t, 30*time.Second, "containerd to serve", func() bool {
		select {
		case <-c.exited:
			t.Fatalf("containerd exited:\n%s", c.log())
		default:
		}
		_, err := exec.Command("ctr", "-a", c.sock, "version").CombinedOutput()
		return err == nil
	})
	archive := busyboxOCIArchive(t)
	if r := c.ctr("image", "import", archive); r.Code != 0 {
		t.Fatalf("ctr image import: %s", r)
	}
	return c
}

func (c *containerd) log() string {
	data, _ := os.ReadFile(c.logFile)
	return string(data)
}

// ctr runs ctr against this daemon in the test namespace.
func (c *containerd) ctr(args ...string) Result {
	c.t.Helper()
	return c.ctrTimeout(2*time.Minute, args...)
}

func (c *containerd) ctrTimeout(timeout time.Duration, args ...string) Result {
	c.t.Helper()
	cmd := exec.Command("ctr", append([]string{"-a", c.sock, "-n", ctrNamespace}, args...)...)
	stdout, stderr := tempFile(c.t, "ctr-stdout"), tempFile(c.t, "ctr-stderr")
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		c.t.Fatalf("ctr %v did not finish in %v; stdout %q stderr %q", args, timeout, readAll(c.t, stdout), readAll(c.t, stderr))
	}
	res := Result{Stdout: readAll(c.t, stdout), Stderr: readAll(c.t, stderr)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		c.t.Fatalf("ctr %v: %v", args, err)
	}
	return res
}

// run is `ctr run --runc-binary <nexcage> --runc-root <root> <flags> <image> <id> <args>`.
func (c *containerd) run(flags []string, id string, args ...string) Result {
	c.t.Helper()
	argv := append([]string{"run", "--runc-binary", c.nexcage, "--runc-root", c.runcRoot}, flags...)
	argv = append(append(argv, ctrImage, id), args...)
	return c.ctr(argv...)
}

// nexcageRoot is the --root the shim gives nexcage.
func (c *containerd) nexcageRoot() string { return filepath.Join(c.runcRoot, ctrNamespace) }

// taskStatus is the STATUS column of `ctr task ls` for id ("" if absent).
func (c *containerd) taskStatus(id string) string {
	c.t.Helper()
	r := c.ctr("task", "ls")
	for _, line := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// taskPid is the PID column of `ctr task ls` for id.
func (c *containerd) taskPid(id string) int {
	c.t.Helper()
	r := c.ctr("task", "ls")
	for _, line := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// stop removes every task and container left in the namespace, stops
// containerd, kills shims it left (only those serving this daemon) and
// unmounts what remains under its directories.
func (c *containerd) stop() {
	t := c.t
	select {
	case <-c.exited:
	default:
		if r := c.ctrTimeout(time.Minute, "task", "ls", "-q"); r.Code == 0 {
			for _, id := range strings.Fields(r.Stdout) {
				c.ctrTimeout(time.Minute, "task", "kill", "-s", "KILL", id)
				c.ctrTimeout(time.Minute, "task", "delete", "--force", id)
			}
		}
		if r := c.ctrTimeout(time.Minute, "container", "ls", "-q"); r.Code == 0 {
			for _, id := range strings.Fields(r.Stdout) {
				c.ctrTimeout(time.Minute, "container", "delete", id)
			}
		}
		_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exited
		}
	}
	for _, pid := range shimsOf(c.sock) {
		t.Errorf("containerd shim %d left running; killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	unmountUnder(t, c.dir)
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("cleanup of containerd dir: %v", err)
	}
	if t.Failed() {
		t.Logf("containerd log:\n%s", c.log())
	}
}

// shimsOf lists the pids of shims started for the daemon at sock.
func shimsOf(sock string) []int {
	pids, _ := procfs.Pids()
	var out []int
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == sock {
				out = append(out, pid)
			}
		}
	}
	return out
}

// unmountUnder detaches every mount below dir (deepest first).
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		t.Errorf("mount %s left behind; unmounting", mounts[i])
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
}

// busyboxOCIArchive builds an OCI image archive of a busybox rootfs (one
// uncompressed layer, Cmd sh) named ctrImage, for `ctr image import`.
func busyboxOCIArchive(t *testing.T) string {
	t.Helper()
	rootfs := t.TempDir()
	testutil.BusyboxRootfs(t, rootfs)
	return ociArchive(t, rootfs, ctrImage, map[string]any{"Cmd": []string{"sh"}, "Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}})
}

// ociArchive builds an OCI image-layout archive named name (for `ctr
// image import`) of one uncompressed layer holding rootfs, with the image
// config's "config" object imgConfig.
func ociArchive(t *testing.T, rootfs, name string, imgConfig map[string]any) string {
	t.Helper()
	layer := bytes.NewBuffer(testutil.TarDir(t, rootfs))
	blobs := map[string][]byte{}
	add := func(data []byte) (string, int) {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = data
		return d, len(data)
	}
	mustJSON := func(v any) []byte {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	layerDigest, layerSize := add(layer.Bytes())
	configDigest, configSize := add(mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": imgConfig,
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	}))
	manifestDigest, manifestSize := add(mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	}))
	index := mustJSON(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": manifestSize,
			"annotations": map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"},
		}},
	})
	archive := filepath.Join(t.TempDir(), "image-oci.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	aw := tar.NewWriter(f)
	write := func(name string, data []byte) {
		if err := aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := aw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	write("index.json", index)
	for d, data := range blobs {
		write("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), data)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return archive
}
