package security

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// The local user's view of container content: what it can read and list.
// Boundary: container data (packed templates, image-built templates and
// their metadata, nexcage's scratch space, an exec'd process's
// environment) is readable by root only.

func init() {
	testutil.RegisterAction("find-secret", findSecret)
}

// findSecret (run as the local user) looks for the secret it reads on
// stdin (not on its own command line or environment, where it would find
// itself) in every /proc/*/cmdline and /proc/*/environ the user can read
// and in every small regular file it can read under args (directories it
// cannot enter are skipped, as they are for any local user; so are other
// proc mounts). It prints each hit and exits 1 when there is one, 0 when
// there is none.
func findSecret(args []string) int {
	secret, err := io.ReadAll(os.Stdin)
	if err != nil || len(secret) < 8 {
		fmt.Fprintln(os.Stderr, "find-secret: no secret on stdin")
		return 2
	}
	self := strconv.Itoa(os.Getpid())
	found := 0
	procs, _ := filepath.Glob("/proc/[0-9]*")
	readProcs := 0
	for _, p := range procs {
		if filepath.Base(p) == self {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join(p, f))
			if err != nil {
				continue
			}
			readProcs++
			if bytes.Contains(data, secret) {
				fmt.Printf("%s/%s\n", p, f)
				found++
			}
		}
	}
	readFiles := 0
	for _, top := range args {
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				var st syscall.Statfs_t
				if syscall.Statfs(p, &st) == nil && st.Type == procSuperMagic {
					return filepath.SkipDir // /proc was read above
				}
				return nil
			}
			// Small files only: a secret is short, and the walk must not
			// read through the busybox binaries of every test's rootfs.
			if fi, err := d.Info(); err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			defer f.Close()
			readFiles++
			data, _ := io.ReadAll(io.LimitReader(f, 64<<20))
			if bytes.Contains(data, secret) {
				fmt.Println(p)
				found++
			}
			return nil
		})
	}
	fmt.Fprintf(os.Stderr, "read %d /proc entries and %d files\n", readProcs, readFiles)
	if found > 0 {
		return 1
	}
	return 0
}

// procSuperMagic is procfs's statfs type (PROC_SUPER_MAGIC).
const procSuperMagic = 0x9fa0

// findSecretAs runs find-secret as u over dirs with secret on stdin.
func findSecretAs(u *testutil.LocalUser, secret string, dirs ...string) testutil.Result {
	cmd := u.Action("find-secret", dirs...)
	cmd.Stdin = strings.NewReader(secret)
	return u.Run(cmd)
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "s3cr3t-" + hex.EncodeToString(b)
}

// ociLayoutWithSecret writes an OCI image layout (tag v1) of a busybox
// rootfs whose image config carries SECRET=secret in its environment.
func ociLayoutWithSecret(t *testing.T, secret string) string {
	t.Helper()
	rootfs := t.TempDir()
	testutil.BusyboxRootfs(t, rootfs)
	tb := bytes.NewBuffer(testutil.TarDir(t, rootfs))
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(tb.Bytes())
	zw.Close()

	dir := filepath.Join(t.TempDir(), "image")
	blob := func(b []byte) string {
		s := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(s[:])
		p := filepath.Join(dir, "blobs/sha256", hex.EncodeToString(s[:]))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	diff := sha256.Sum256(tb.Bytes())
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/bin/sleep"}, "Cmd": []string{"1000"},
			"Env": []string{"PATH=/bin:/sbin", "SECRET=" + secret}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff[:])}},
	})
	layer := zb.Bytes()
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfg), "size": len(cfg)},
		"layers": []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(layer), "size": len(layer)}},
	})
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{{"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest": blob(man), "size": len(man), "annotations": map[string]string{"org.opencontainers.image.ref.name": "v1"}}},
	})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTemplatesPrivate creates, with umask 0, a Proxmox container from a
// bundle (nexcage packs its rootfs into a template) and one from an OCI
// layout whose image config holds a secret (nexcage unpacks the verified
// layers in its scratch space and places a template with metadata), then,
// as an unprivileged local user: the template cache directory (Proxmox's)
// can be listed, as on a real node, but neither template, nor their
// metadata, nor nexcage's reference directory or scratch space can be
// read or listed, and no file the user can read anywhere in the node
// holds the image's secret.
func TestTemplatesPrivate(t *testing.T) {
	w := newWorld(t)
	u := testutil.NewLocalUser(t)
	secret := randomSecret(t)
	layout := ociLayoutWithSecret(t, secret)
	px := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	old := syscall.Umask(0)
	w.must("create", "--bundle", px, "tmpl-px")
	w.cleanup("tmpl-px")
	w.must("create", "--name", "tmpl-img", "--image", layout+":v1")
	w.cleanup("tmpl-img")
	syscall.Umask(old)

	cache := filepath.Join(w.sim, "var/lib/vz/template/cache")
	templates, _ := filepath.Glob(filepath.Join(cache, "nexcage-*"))
	var tmpls, metas int
	for _, p := range templates {
		if strings.HasSuffix(p, ".nexcage.json") {
			metas++
		} else {
			tmpls++
		}
	}
	if tmpls < 2 || metas < 1 {
		t.Fatalf("expected the packed and the image's template and metadata in %s, found %v", cache, templates)
	}
	// Control: the user reaches the cache directory and lists it (its
	// mode is Proxmox's), so the refusals below are the files' own.
	if r := u.Run(u.Command("/bin/ls", cache)); r.Code != 0 || !strings.Contains(r.Stdout, "nexcage-") {
		t.Fatalf("the local user cannot list the storage's cache directory %s (exit %d: %s%s): the test could not tell file modes from an unreachable directory",
			cache, r.Code, r.Stdout, r.Stderr)
	}
	for _, p := range templates {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o, want 600", p, fi.Mode().Perm())
		}
		if r := u.Run(u.Command("/bin/cat", p)); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("the local user read %s: exit %d, stderr %q", p, r.Code, r.Stderr)
		}
	}
	images := filepath.Join(w.sim, "nexcage-images")
	for _, d := range []string{filepath.Join(cache, ".nexcage"), images, filepath.Join(images, "locks")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Errorf("expected nexcage's directory %s: %v", d, err)
			continue
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %o, want 700", d, fi.Mode().Perm())
		}
		if r := u.Run(u.Command("/bin/ls", d)); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("the local user listed %s: exit %d, stdout %q, stderr %q", d, r.Code, r.Stdout, r.Stderr)
		}
	}
	if r := findSecretAs(u, secret, filepath.Dir(w.sim)); r.Code != 0 {
		t.Errorf("the local user found the image's secret (exit %d):\n%s%s", r.Code, r.Stdout, r.Stderr)
	} else {
		t.Logf("find-secret: %s", strings.TrimSpace(r.Stderr))
	}
	// The scan is not blind: root finds the secret in the image metadata.
	if !anyFileContains(t, cache, secret) {
		t.Errorf("no file of %s holds the secret: the image's environment was not recorded, so the scan proved nothing", cache)
	}
}

func anyFileContains(t *testing.T, dir, s string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if data, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && bytes.Contains(data, []byte(s)) {
			return true
		}
	}
	return false
}

// TestExecSecretNotExposed runs, in a running Proxmox container, an exec
// whose process (containerd's way: --process with a 0600 process.json)
// carries SECRET in its environment, and while it runs checks that no
// process's command line holds the secret (all of /proc, read as root),
// and that the local user finds it in no /proc/*/environ or cmdline it
// can read and no file it can read on the node or in /tmp and /run.
func TestExecSecretNotExposed(t *testing.T) {
	w := newWorld(t)
	u := testutil.NewLocalUser(t)
	secret := randomSecret(t)
	b := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
	w.must("create", "--bundle", b, "exec-secret")
	w.cleanup("exec-secret")
	w.must("start", "exec-secret")

	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(b, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	// A unique argument to find the exec'd process by.
	marker := strconv.Itoa(900000 + int(time.Now().UnixNano()%99999))
	p := *spec.Process
	p.Args = []string{"sleep", marker}
	p.Env = append(p.Env, "SECRET="+secret)
	pj := filepath.Join(t.TempDir(), "process.json")
	data, _ = json.Marshal(&p)
	if err := os.WriteFile(pj, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(w.nexcage, "--root", w.root, "--config", w.config, "exec", "--process", pj, "exec-secret")
	cmd.Env = append(os.Environ(), w.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()

	// Wait for the exec'd process itself (the secret is in its
	// environment from then on).
	var pid int
	deadline := time.Now().Add(60 * time.Second)
	for pid == 0 {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("exec ended before its process was seen: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exec'd process (sleep %s) did not appear\n%s", marker, stderr.String())
		}
		pid = procWithArgs("sleep\x00" + marker + "\x00")
		if pid == 0 {
			time.Sleep(20 * time.Millisecond) // polling /proc: no event to wait on
		}
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil || !bytes.Contains(env, []byte("SECRET="+secret)) {
		t.Fatalf("the exec'd process %d lacks the secret in its environment (%v): the checks below would prove nothing", pid, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range procs {
		if data, err := os.ReadFile(c); err == nil && bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds the secret: %q", c, bytes.ReplaceAll(data, []byte{0}, []byte{' '}))
		}
	}
	if r := findSecretAs(u, secret, filepath.Dir(w.sim), "/tmp", "/run", "/dev/shm"); r.Code != 0 {
		t.Errorf("the local user found the exec's secret (exit %d):\n%s%s", r.Code, r.Stdout, r.Stderr)
	} else {
		t.Logf("find-secret: %s", strings.TrimSpace(r.Stderr))
	}
	// End the exec: its process is killed, and exec reports it.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatal(err)
	}
	select {
	case <-exited:
		exited <- nil
	case <-time.After(60 * time.Second):
		t.Errorf("exec did not end after its process was killed\n%s", stderr.String())
	}
}

// procWithArgs is the pid of a process whose command line starts with
// prefix (NUL-separated), or 0.
func procWithArgs(prefix string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range procs {
		data, err := os.ReadFile(c)
		if err == nil && strings.HasPrefix(string(data), prefix) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(c)))
			return pid
		}
	}
	return 0
}
