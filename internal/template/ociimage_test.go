package template

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sha(b []byte) digest.Digest {
	s := sha256.Sum256(b)
	return digest.Digest("sha256:" + hex.EncodeToString(s[:]))
}

// layers of the test image: layer 1 is a small rootfs, layer 2 deletes
// /etc/old (whiteout), replaces /opt's content (opaque) and adds files.
func testLayers(t testing.TB) [][]byte {
	l1 := tarBytes(t, rootfsEntries(elfAmd64,
		entry{name: "etc/old", body: "old"},
		entry{name: "etc/keep", body: "keep"},
		entry{name: "opt/", typ: tar.TypeDir},
		entry{name: "opt/lower", body: "lower"},
		entry{name: "usr/bin/tool", body: "v1", mode: 0o755},
	))
	l2 := tarBytes(t, []entry{
		{name: "etc/.wh.old", body: ""},
		{name: "opt/", typ: tar.TypeDir},
		{name: "opt/upper", body: "upper"},
		{name: "opt/.wh..wh..opq", body: ""},
		{name: "usr/bin/tool", body: "v2", mode: 0o4755},
		{name: "app/run.sh", body: "#!/bin/sh\necho hi\n", mode: 0o755},
	})
	return [][]byte{l1, l2}
}

var testImageConfig = ocispec.ImageConfig{
	Entrypoint: []string{"/app/run.sh"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin", "MODE=prod"},
	WorkingDir: "/app", User: "1000:1000", StopSignal: "SIGINT",
}

// writeLayout writes an OCI image layout with the test layers (layer 1
// gzip, layer 2 zstd) tagged tags (one manifest per tag).
func writeLayout(t testing.TB, dir string, arch string, tags ...string) {
	t.Helper()
	blob := func(b []byte) digest.Digest {
		d := sha(b)
		writeFile(t, filepath.Join(dir, "blobs/sha256", d.Encoded()), b)
		return d
	}
	layers := testLayers(t)
	var zbuf strings.Builder
	zw, _ := zstd.NewWriter(&zbuf)
	zw.Write(layers[1])
	zw.Close()
	l1 := compress(t, CompGzip, layers[0])
	l2 := []byte(zbuf.String())
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch}, Config: testImageConfig,
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{sha(layers[0]), sha(layers[1])}}}
	cb, _ := json.Marshal(cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: blob(cb), Size: int64(len(cb))},
		Layers: []ocispec.Descriptor{
			{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: blob(l1), Size: int64(len(l1))},
			{MediaType: ocispec.MediaTypeImageLayerZstd, Digest: blob(l2), Size: int64(len(l2))},
		}}
	mb, _ := json.Marshal(m)
	md := blob(mb)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if len(tags) == 0 {
		tags = []string{""}
	}
	for _, tag := range tags {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
		if tag != "" {
			d.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	ib, _ := json.Marshal(idx)
	writeFile(t, filepath.Join(dir, "index.json"), ib)
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
}

// tarDir archives a directory tree (files only, sorted).
func tarDir(t testing.TB, dir string) []byte {
	var es []entry
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, _ := os.ReadFile(p)
		es = append(es, entry{name: rel, body: string(b)})
		return nil
	})
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return tarBytes(t, es)
}

// writeDockerArchive writes a `docker save` style archive of the test
// layers (uncompressed layer.tar files) tagged repoTag.
func writeDockerArchive(t testing.TB, p, repoTag string) {
	layers := testLayers(t)
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Config: testImageConfig,
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{sha(layers[0]), sha(layers[1])}}}
	cb, _ := json.Marshal(cfg)
	man, _ := json.Marshal([]dockerManifest{{Config: sha(cb).Encoded() + ".json", RepoTags: []string{repoTag},
		Layers: []string{"l1/layer.tar", "l2/layer.tar"}}})
	writeFile(t, p, tarBytes(t, []entry{
		{name: sha(cb).Encoded() + ".json", body: string(cb)},
		{name: "l1/", typ: tar.TypeDir},
		{name: "l1/layer.tar", body: string(layers[0])},
		{name: "l2/", typ: tar.TypeDir},
		{name: "l2/layer.tar", body: string(layers[1])},
		{name: "manifest.json", body: string(man)},
	}))
}

// templateFiles lists a packed template's members with their content.
func templateFiles(t *testing.T, p string) map[string]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		v := string(b)
		if h.Typeflag == tar.TypeSymlink {
			v = "-> " + h.Linkname
		}
		if h.Mode&0o4000 != 0 {
			v += " (setuid)"
		}
		out[cleanRel(h.Name)] = v
	}
}

func checkImageResult(t *testing.T, e *env, res *Resolved) {
	t.Helper()
	if !res.Packed || res.Arch != "amd64" || res.OSType != "unmanaged" {
		t.Errorf("got %+v", res)
	}
	if res.Image == nil || !slices.Equal(res.Image.Entrypoint, testImageConfig.Entrypoint) ||
		!slices.Equal(res.Image.Cmd, testImageConfig.Cmd) || !slices.Equal(res.Image.Env, testImageConfig.Env) ||
		res.Image.WorkingDir != "/app" || res.Image.User != "1000:1000" || res.Image.StopSignal != "SIGINT" {
		t.Errorf("image config %+v", res.Image)
	}
	files := templateFiles(t, filepath.Join(e.cache, res.File))
	for name, want := range map[string]string{
		"etc/keep": "keep", "opt/upper": "upper", "usr/bin/tool": "v2 (setuid)",
		"app/run.sh": "#!/bin/sh\necho hi\n", "bin/sh": "-> busybox", "proc": "", "dev": "",
	} {
		if got, ok := files[name]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", name, got, ok, want)
		}
	}
	for _, gone := range []string{"etc/old", "opt/lower", "etc/.wh.old", "opt/.wh..wh..opq"} {
		if _, ok := files[gone]; ok {
			t.Errorf("%s should have been whited out", gone)
		}
	}
	noTemps(t, e.cache)
	if ents, _ := os.ReadDir(e.r.o.WorkDir); len(ents) > 1 { // only locks/
		t.Errorf("scratch space left behind: %v", ents)
	}
}

func TestResolveOCILayout(t *testing.T) {
	e := newEnv(t, nil)
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64", "1.0", "latest")
	res, err := e.r.Resolve(context.Background(), layout+":1.0")
	if err != nil {
		t.Fatal(err)
	}
	if res.Form != FormOCILayout {
		t.Errorf("form %s", res.Form)
	}
	checkImageResult(t, e, res)
	// Cached: the same image resolves to the same template, config included.
	res2, err := e.r.Resolve(context.Background(), layout+":1.0")
	if err != nil || res2.File != res.File || res2.Image == nil || res2.Image.StopSignal != "SIGINT" {
		t.Errorf("second: %+v %v", res2, err)
	}
	// Two tags and none chosen: an error naming them.
	_, err = e.r.Resolve(context.Background(), layout)
	wantErr(t, err, errs.KindTemplate, "add :<tag>", "1.0", "latest")
	_, err = e.r.Resolve(context.Background(), layout+":2.0")
	wantErr(t, err, errs.KindTemplate, `no image tagged "2.0"`)
}

func TestResolveOCIArchive(t *testing.T) {
	e := newEnv(t, nil)
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64", "docker.io/library/app:1")
	archive := writeFile(t, filepath.Join(t.TempDir(), "app.tar"), tarDir(t, layout))
	res, err := e.r.Resolve(context.Background(), archive+":app:1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Form != FormOCIArchive {
		t.Errorf("form %s", res.Form)
	}
	checkImageResult(t, e, res)
}

func TestResolveDockerArchive(t *testing.T) {
	e := newEnv(t, nil)
	archive := filepath.Join(t.TempDir(), "saved.tar")
	writeDockerArchive(t, archive, "busybox:stable")
	for _, image := range []string{archive, archive + ":busybox:stable", "docker-archive:" + archive + ":docker.io/library/busybox:stable"} {
		res, err := e.r.Resolve(context.Background(), image)
		if err != nil {
			t.Fatalf("%s: %v", image, err)
		}
		if res.Form != FormDockerArchive {
			t.Errorf("form %s", res.Form)
		}
		checkImageResult(t, e, res)
	}
	_, err := e.r.Resolve(context.Background(), archive+":busybox:1.0")
	wantErr(t, err, errs.KindTemplate, `no image tagged "busybox:1.0"`, "busybox:stable")
}

func TestResolveImageWrongArch(t *testing.T) {
	e := newEnv(t, nil)
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "s390x")
	_, err := e.r.Resolve(context.Background(), layout)
	wantErr(t, err, errs.KindTemplate, "built for linux/s390x", "host runs amd64")
}

func TestResolveImageCorruptLayer(t *testing.T) {
	e := newEnv(t, nil)
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	// Flip the content of the biggest blob (a layer) without renaming it.
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(layout, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && fi.Size() > size && !strings.Contains(readHead(p), "{") {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	b, _ := os.ReadFile(biggest)
	b = append(b, 0) // trailing garbage after the compressed stream
	os.WriteFile(biggest, b, 0o644)
	_, err := e.r.Resolve(context.Background(), layout)
	wantErr(t, err, errs.KindTemplate, "corrupt")
	if p := placedFiles(t, e.cache); len(p) != 0 {
		t.Errorf("placed %v", p)
	}
}

func readHead(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 1 {
		return string(b[:1])
	}
	return ""
}

// TestApplyLayerConfined: layers cannot write outside the rootfs, neither
// by ".." nor through symlinks.
func TestApplyLayerConfined(t *testing.T) {
	outside := t.TempDir()
	rootfsDir := t.TempDir()
	root, err := os.OpenRoot(rootfsDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	// ".." is cleaned away: the file lands inside the rootfs.
	l1 := tarBytes(t, []entry{{name: "../../" + filepath.Base(outside) + "/escaped", body: "x"}})
	if err := applyLayerTimes(root, strings.NewReader(string(l1)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
		t.Fatal("a layer wrote outside the rootfs with ..")
	}
	// A symlink to the outside, then a file through it: refused.
	l2 := tarBytes(t, []entry{
		{name: "evil", typ: tar.TypeSymlink, link: outside},
		{name: "evil/pwned", body: "x"},
	})
	err = applyLayerTimes(root, strings.NewReader(string(l2)), nil)
	if err == nil {
		t.Error("writing through a symlink to the outside was not refused")
	}
	rel := tarBytes(t, []entry{
		{name: "up", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside},
		{name: "up/pwned2", body: "x"},
	})
	if err := applyLayerTimes(root, strings.NewReader(string(rel)), nil); err == nil {
		t.Error("writing through a relative symlink to the outside was not refused")
	}
	// A hard link to a host file: refused too.
	host := writeFile(t, filepath.Join(outside, "secret"), []byte("s"))
	hl := tarBytes(t, []entry{{name: "stolen", typ: tar.TypeLink, link: "../../../../../../../.." + host}})
	applyLayerTimes(root, strings.NewReader(string(hl)), nil)
	if b, err := os.ReadFile(filepath.Join(rootfsDir, "stolen")); err == nil && string(b) == "s" {
		t.Error("a hard link reached a host file")
	}
	ents, _ := os.ReadDir(outside)
	for _, e := range ents {
		if e.Name() != "secret" {
			t.Errorf("written outside the rootfs: %s", e.Name())
		}
	}
}

func TestResolveRegistry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SkopeoPath = "skopeo" })
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	archive := tarDir(t, layout)
	var argvSeen []string
	e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
		"skopeo": func(argv []string) ([]byte, []byte, error) {
			argvSeen = argv
			dest := strings.TrimPrefix(argv[len(argv)-1], "oci-archive:")
			writeFile(t, dest, archive)
			return nil, nil, nil
		},
	}
	res, err := e.r.Resolve(context.Background(), "localhost:5000/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Form != FormRegistry {
		t.Errorf("form %s", res.Form)
	}
	checkImageResult(t, e, res)
	if !slices.Contains(argvSeen, "--src-tls-verify=false") || !slices.Contains(argvSeen, "docker://localhost:5000/app:1") {
		t.Errorf("skopeo argv %v", argvSeen)
	}
	// Pulled once.
	if _, err := e.r.Resolve(context.Background(), "docker://localhost:5000/app:1"); err != nil {
		t.Fatal(err)
	}
	if n := e.run.count("skopeo"); n != 1 {
		t.Errorf("%d pulls", n)
	}
	// Remote registries verify TLS.
	e.r.Resolve(context.Background(), "docker.io/library/alpine:3.20")
	if slices.Contains(argvSeen, "--src-tls-verify=false") {
		t.Errorf("TLS verification off for docker.io: %v", argvSeen)
	}
}

func TestResolveRegistryErrors(t *testing.T) {
	t.Run("skopeo missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		e := newEnv(t, nil)
		_, err := e.r.Resolve(context.Background(), "alpine:3.20")
		// Not installed: Proxmox's oci-registry-pull is tried (and fails here).
		wantErr(t, err, errs.KindTemplate, "skopeo is not installed", "oci-registry-pull", "apt-get install skopeo")
	})
	t.Run("pull fails", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.SkopeoPath = "skopeo" })
		e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
			"skopeo": func(argv []string) ([]byte, []byte, error) {
				return nil, []byte("manifest unknown"), errors.New("exit status 1")
			},
		}
		_, err := e.r.Resolve(context.Background(), "alpine:3.99")
		wantErr(t, err, errs.KindTemplate, "pulling alpine:3.99 with skopeo failed: manifest unknown", "skopeo inspect")
	})
}

// TestImagePacksDeterministically: the same image as a layout and as an
// archive becomes one template file.
func TestImagePacksDeterministically(t *testing.T) {
	e := newEnv(t, nil)
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	archive := writeFile(t, filepath.Join(t.TempDir(), "img.tar"), tarDir(t, layout))
	a, err := e.r.Resolve(context.Background(), layout)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.r.Resolve(context.Background(), archive)
	if err != nil {
		t.Fatal(err)
	}
	if a.File != b.File || len(placedFiles(t, e.cache)) != 1 {
		t.Errorf("layout gave %s, archive %s; placed %v", a.File, b.File, placedFiles(t, e.cache))
	}
	// Both sources are remembered, so neither is unpacked again.
	m := readMeta(filepath.Join(e.cache, a.File))
	if m == nil || len(m.Sources) != 2 {
		t.Fatalf("sources %+v", m)
	}
	for _, src := range []string{string(FormOCILayout) + ":" + layout, string(FormOCIArchive) + ":" + archive} {
		if tmpl, got := findBySource(e.cache, src, nil); got == nil || filepath.Base(tmpl) != a.File || got.Image == nil {
			t.Errorf("source %s not found in the cache", src)
		}
	}
}
