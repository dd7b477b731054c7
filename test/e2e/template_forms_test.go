package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// templateRootfs is a busybox root filesystem whose /sbin/init (busybox
// init with an empty inittab) idles like a distribution's init.
func templateRootfs(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "rootfs")
	testutil.BusyboxRootfs(t, dir)
	if err := os.Symlink("../bin/busybox", filepath.Join(dir, "sbin/init")); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/inittab":     "::sysinit:/etc/init.d/rcS\n::shutdown:/bin/true\n",
		"etc/init.d/rcS":  "#!/bin/sh\nexit 0\n",
		"etc/os-release":  "ID=alpine\nVERSION_ID=3.22.0\n",
		"etc/marker-base": "base\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tarTree archives dir (files, dirs, symlinks) with names relative to it,
// plus extra raw entries, gzip-compressed when gz.
func tarTree(t *testing.T, dir string, gz bool, extra ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if dir != "" {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == dir {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			link := ""
			if fi.Mode()&fs.ModeSymlink != 0 {
				link, _ = os.Readlink(p)
			}
			h, err := tar.FileInfoHeader(fi, link)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			h.Name = rel
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				data, _ := os.ReadFile(p)
				tw.Write(data)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range extra {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	if !gz {
		return buf.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(buf.Bytes())
	zw.Close()
	return z.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// imageLayers are the test image's layers (uncompressed): layer 1 the
// template rootfs, layer 2 a whiteout of /etc/marker-base and a new file.
func imageLayers(t *testing.T, rootfs string) [][]byte {
	return [][]byte{
		tarTree(t, rootfs, false),
		tarTree(t, "", false,
			&tar.Header{Name: "etc/.wh.marker-base", Typeflag: tar.TypeReg, Mode: 0o644},
			&tar.Header{Name: "etc/marker-image", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}),
	}
}

// imageConfigJSON runs `sleep 1000` with an env variable.
func imageConfigJSON(layers [][]byte) []byte {
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, digestOf(l))
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/bin/sleep"}, "Cmd": []string{"1000"},
			"Env": []string{"PATH=/bin:/sbin", "FROM_IMAGE=yes"}, "WorkingDir": "/etc"},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	return cfg
}

func gzipBytes(b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

// writeOCILayout writes the test image as an OCI layout tagged tag.
func writeOCILayout(t *testing.T, rootfs, dir, tag string) {
	blob := func(b []byte) string {
		d := digestOf(b)
		p := filepath.Join(dir, "blobs/sha256", strings.TrimPrefix(d, "sha256:"))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	layers := imageLayers(t, rootfs)
	cfg := imageConfigJSON(layers)
	l1, l2 := gzipBytes(layers[0]), gzipBytes(layers[1])
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfg), "size": len(cfg)},
		"layers": []map[string]any{
			{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(l1), "size": len(l1)},
			{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(l2), "size": len(l2)},
		},
	})
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{{"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest": blob(man), "size": len(man), "annotations": map[string]string{"org.opencontainers.image.ref.name": tag}}},
	})
	os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// writeDockerArchive writes the test image as `docker save` would.
func writeDockerArchive(t *testing.T, rootfs, p, repoTag string) {
	dir := t.TempDir()
	layers := imageLayers(t, rootfs)
	cfg := imageConfigJSON(layers)
	cfgName := strings.TrimPrefix(digestOf(cfg), "sha256:") + ".json"
	os.WriteFile(filepath.Join(dir, cfgName), cfg, 0o644)
	var names []string
	for i, l := range layers {
		name := fmt.Sprintf("l%d/layer.tar", i+1)
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), l, 0o644)
		names = append(names, name)
	}
	man, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{repoTag}, "Layers": names}})
	os.WriteFile(filepath.Join(dir, "manifest.json"), man, 0o644)
	if err := os.WriteFile(p, tarTree(t, dir, false), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTemplateForms creates and starts a container from every --image
// form against pvesim, then checks that invalid forms fail with errors
// that name the problem, without calling pct.
func TestTemplateForms(t *testing.T) {
	e := newPveEnv(t, true, "")
	n := e.n
	// pveam is pvesim too; nexcage finds it on PATH.
	n.Env = append(append([]string{}, e.env...), "PATH="+filepath.Dir(e.pct)+":"+os.Getenv("PATH"))

	rootfs := templateRootfs(t)
	work := t.TempDir()
	archive := filepath.Join(work, "rootfs.tar.gz")
	data := tarTree(t, rootfs, true)
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rootfs.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	defer srv.Close()
	layout := filepath.Join(work, "layout")
	writeOCILayout(t, rootfs, layout, "v1")
	ociArchive := filepath.Join(work, "image.tar")
	if err := os.WriteFile(ociArchive, tarTree(t, layout, false), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerArchive := filepath.Join(work, "saved.tar")
	writeDockerArchive(t, rootfs, dockerArchive, "app:v1")
	bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)

	cases := []struct {
		name, image string
		imageInit   bool // the image config's sleep runs as init
		// helper: a process (a bundle's, or an OCI image config's) runs
		// through nexcage's init helper (docs/CONTAINERD.md): create =
		// pct create + pct start, start = no pct call. A template alone
		// keeps its own init: create = pct create, start = pct start.
		helper bool
	}{
		{"volid", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", false, false},
		{"file-download", "ubuntu-20.04-standard_20.04-1_amd64.tar.gz", false, false},
		{"short-local", "alpine", false, false},
		{"short-download", "debian-11", false, false},
		{"path", archive, false, false},
		{"url", srv.URL + "/rootfs.tar.gz#sha256=" + strings.TrimPrefix(digestOf(data), "sha256:"), false, false},
		{"bundle", bundle, true, true},
		{"oci-layout", layout + ":v1", true, true},
		{"oci-archive", ociArchive, true, true},
		{"docker-archive", dockerArchive + ":app:v1", true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "tf-" + c.name
			wantCreate, wantStart := map[string]int{"create": 1}, map[string]int{"start": 1}
			if c.helper {
				wantCreate, wantStart = map[string]int{"create": 1, "start": 1}, nil
			}
			calls := e.countCalls(func() { n.Must("create", "--name", id, "--image", c.image) })
			wantCalls(t, "create", calls, wantCreate)
			n.CleanupContainer(id)
			wantCalls(t, "start", e.countCalls(func() { n.Must("start", id) }), wantStart)
			s := waitStatus(t, n, id, "running")
			if s.Pid <= 1 {
				t.Fatalf("state: %+v", s)
			}
			if c.imageInit {
				if cmd := strings.Join(readProc(t, s.Pid, "cmdline"), " "); !strings.HasSuffix(cmd, "sleep 1000") {
					t.Errorf("init runs %q, want the image's sleep 1000", cmd)
				}
			}
			if strings.HasPrefix(c.name, "oci") || strings.HasPrefix(c.name, "docker") {
				env := strings.Join(readProc(t, s.Pid, "environ"), "\n")
				if !strings.Contains(env, "FROM_IMAGE=yes") {
					t.Errorf("image env missing: %q", env)
				}
				if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/etc/marker-image", s.Pid)); err != nil {
					t.Errorf("file of layer 2 missing: %v", err)
				}
				if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/etc/marker-base", s.Pid)); err == nil {
					t.Error("file whited out by layer 2 is present")
				}
			}
			n.Must("delete", "--force", id)
		})
	}
	// The downloaded official templates are now in the cache.
	for _, f := range []string{"ubuntu-20.04-standard_20.04-1_amd64.tar.gz", "debian-11-standard_11.7-1_amd64.tar.zst"} {
		if _, err := os.Stat(filepath.Join(e.cacheDir(), f)); err != nil {
			t.Errorf("%s not downloaded into the cache: %v", f, err)
		}
	}

	// Invalid forms: exit 7 (template), a message naming the problem, no pct call.
	bad := filepath.Join(work, "notes.tar")
	os.WriteFile(bad, tarTree(t, "", false, &tar.Header{Name: "notes.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5}), 0o644)
	errCases := []struct{ image, want string }{
		{"local:vztmpl/nosuch-1_amd64.tar.zst", "template local:vztmpl/nosuch-1_amd64.tar.zst not found"},
		{"fedora-40", "no template matches the short name 'fedora-40'"},
		{"local:iso/x.iso", "content type 'iso'"},
		{bad, "holds no root filesystem"},
		{srv.URL + "/rootfs.tar.gz#sha256=" + strings.Repeat("0", 64), "not the expected"},
		{srv.URL + "/missing.tar.gz", "404"},
		{layout + ":v2", `no image tagged "v2"`},
	}
	for _, c := range errCases {
		calls := e.countCalls(func() { n.Fails(7, c.want, "create", "--name", "tf-bad", "--image", c.image) })
		wantCalls(t, "create "+c.image, calls, nil)
	}
	// What stays: the templates built from the path/URL (same content) and
	// from the OCI layout/archive (same image), cached for the next create,
	// with no container recorded as using them.
	placed := map[string]bool{}
	for _, f := range e.packedTemplates() {
		placed[strings.TrimSuffix(f, ".nexcage.json")] = true
	}
	if len(placed) != 2 {
		t.Errorf("cached templates: %v, want 2 (path/URL and image)", e.packedTemplates())
	}
	if refs, _ := filepath.Glob(filepath.Join(e.cacheDir(), ".nexcage", "*.refs")); len(refs) > 0 {
		t.Errorf("template users left after every container was deleted: %v", refs)
	}
	for f := range placed { // what `templates prune` would remove
		os.Remove(filepath.Join(e.cacheDir(), f))
		os.Remove(filepath.Join(e.cacheDir(), f+".nexcage.json"))
	}
	e.assertNothingLeft("end")
}

// startRegistry runs Debian's docker-registry on a loopback port and
// returns its host:port and a function stopping it (also run when the
// test ends).
func startRegistry(t *testing.T) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	body := "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: " + filepath.Join(dir, "data") +
		"\nhttp:\n  addr: " + addr + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfg)
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatalf("docker-registry (apt package docker-registry): %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	t.Cleanup(stop)
	Eventually(t, 30*time.Second, "registry on "+addr, func() bool {
		select {
		case <-exited:
			t.Fatalf("docker-registry exited: %s", logBuf.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return addr, stop
}

// TestTemplateRegistryPull pushes an image to a loopback registry with
// skopeo, then creates and starts a container from its reference; the
// second create uses the cached template (the registry is gone by then).
func TestTemplateRegistryPull(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	addr, stopRegistry := startRegistry(t)
	layout := filepath.Join(t.TempDir(), "layout")
	writeOCILayout(t, templateRootfs(t), layout, "v1")
	ref := addr + "/nexcage/app:v1"
	push := exec.Command("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:"+layout+":v1", "docker://"+ref)
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy to the registry: %v\n%s", err, out)
	}
	n.Fails(7, "pulling "+addr+"/nexcage/app:v9 with skopeo failed", "create", "--name", "reg-bad", "--image", addr+"/nexcage/app:v9")

	for i, image := range []string{ref, "docker://" + ref} {
		id := fmt.Sprintf("reg-%d", i)
		// The image's config has a process: create runs it through the
		// init helper, held until start (pct create + pct start).
		calls := e.countCalls(func() { n.Must("create", "--name", id, "--image", image) })
		wantCalls(t, "create", calls, map[string]int{"create": 1, "start": 1})
		n.CleanupContainer(id)
		n.Must("start", id)
		s := waitStatus(t, n, id, "running")
		if cmd := strings.Join(readProc(t, s.Pid, "cmdline"), " "); !strings.HasSuffix(cmd, "sleep 1000") {
			t.Errorf("init runs %q, want the image's sleep 1000", cmd)
		}
		n.Must("delete", "--force", id)
		if i == 0 {
			stopRegistry() // the next create must not need it
		}
	}
	placed := e.packedTemplates()
	if len(placed) != 2 { // the template and its .nexcage.json
		t.Errorf("cached: %v", placed)
	}
	for _, f := range placed {
		os.Remove(filepath.Join(e.cacheDir(), f))
	}
	e.assertNothingLeft("end")
}
