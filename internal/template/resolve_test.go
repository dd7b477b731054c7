package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/testutil"
)

const (
	ubuntu22 = "ubuntu-22.04-standard_22.04-1_amd64.tar.zst"
	ubuntu20 = "ubuntu-20.04-standard_20.04-1_amd64.tar.gz"
	debian12 = "debian-12-standard_12.7-1_amd64.tar.zst"
	alpine   = "alpine-3.22-default_20250617_amd64.tar.xz"
)

func osRelease(id string) entry { return entry{name: "./etc/os-release", body: "ID=" + id + "\n"} }

// tmplData builds a valid template archive for file name (compression by
// its extension) of distribution id.
func tmplData(t testing.TB, file, id string) []byte {
	comp := map[string]string{".tar.zst": CompZstd, ".tar.gz": CompGzip, ".tar.xz": CompXz, ".tar": CompNone, ".tar.bz2": CompBzip2}[TemplateExt(file)]
	return compress(t, comp, tarBytes(t, rootfsEntries(elfAmd64, osRelease(id))))
}

func TestClassify(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	writeFile(t, filepath.Join(bundle, "config.json"), []byte("{}"))
	layout := filepath.Join(dir, "layout")
	writeFile(t, filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	rootfsTar := writeFile(t, filepath.Join(dir, "rootfs.tar.gz"), tmplData(t, "x.tar.gz", "debian"))
	ociTar := writeFile(t, filepath.Join(dir, "img.tar"), tarBytes(t, []entry{{name: "oci-layout", body: "{}"}, {name: "index.json", body: "{}"}}))
	dockerTar := writeFile(t, filepath.Join(dir, "docker.tar"), tarBytes(t, []entry{{name: "manifest.json", body: "[]"}}))
	cases := []struct {
		in   string
		form Form
		ref  string
	}{
		{"local:vztmpl/" + ubuntu22, FormVolID, "local:vztmpl/" + ubuntu22},
		{"local:iso/x.iso", FormVolID, "local:iso/x.iso"},
		{ubuntu22, FormFile, ubuntu22},
		{"ubuntu-22.04", FormShort, "ubuntu-22.04"},
		{"alpine", FormShort, "alpine"},
		{"https://example.org/r.tar.xz#sha256=ab", FormURL, "https://example.org/r.tar.xz#sha256=ab"},
		{"alpine:3.20", FormRegistry, "alpine:3.20"},
		{"docker.io/library/alpine:3.20", FormRegistry, "docker.io/library/alpine:3.20"},
		{"localhost:5000/busybox:1", FormRegistry, "localhost:5000/busybox:1"},
		{"docker://alpine", FormRegistry, "alpine"},
		{bundle, FormBundle, bundle},
		{layout, FormOCILayout, layout},
		{layout + ":v1", FormOCILayout, layout + ":v1"},
		{"oci:" + layout + ":v1", FormOCILayout, layout + ":v1"},
		{rootfsTar, FormPath, rootfsTar},
		{ociTar, FormOCIArchive, ociTar},
		{ociTar + ":latest", FormOCIArchive, ociTar + ":latest"},
		{dockerTar + ":busybox:1", FormDockerArchive, dockerTar + ":busybox:1"},
		{"docker-archive:" + dockerTar, FormDockerArchive, dockerTar},
	}
	for _, c := range cases {
		form, ref, err := Classify(c.in)
		if err != nil || form != c.form || ref != c.ref {
			t.Errorf("Classify(%q) = %s, %q, %v; want %s, %q", c.in, form, ref, err, c.form, c.ref)
		}
	}
	bad := map[string]errs.Kind{
		"":                     errs.KindTemplate,
		"ftp://x/y.tar":        errs.KindTemplate,
		"x\n.tar.zst":          errs.KindTemplate,
		"/does/not/exist.tar":  errs.KindNotFound,
		dir:                    errs.KindTemplate, // neither bundle nor layout
		rootfsTar + ":tag":     errs.KindTemplate,
		"Not A Valid Thing!":   errs.KindTemplate,
		"bad name.tar.zst":     errs.KindTemplate,
		"docker://UPPER/Case!": errs.KindTemplate,
	}
	for in, kind := range bad {
		_, _, err := Classify(in)
		wantErr(t, err, kind)
	}
}

func TestResolveVolID(t *testing.T) {
	e := newEnv(t, nil)
	e.addLocal(ubuntu22, tmplData(t, ubuntu22, "ubuntu"))
	res, err := e.r.Resolve(context.Background(), "local:vztmpl/"+ubuntu22)
	if err != nil {
		t.Fatal(err)
	}
	if res.VolID != "local:vztmpl/"+ubuntu22 || res.OSType != "ubuntu" || res.Arch != "amd64" || res.Form != FormVolID || res.Packed {
		t.Errorf("got %+v", res)
	}
	if res.Path != filepath.Join(e.cache, ubuntu22) {
		t.Errorf("path %s", res.Path)
	}
	if _, err := os.Stat(res.Path + MetaSuffix); err != nil {
		t.Errorf("no metadata cached: %v", err)
	}
	// A second resolve reads no archive: garble the content but keep size
	// and time, and the cached metadata still answers.
	fi, _ := os.Stat(res.Path)
	if err := os.WriteFile(res.Path, make([]byte, fi.Size()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(res.Path, fi.ModTime(), fi.ModTime())
	res2, err := e.r.Resolve(context.Background(), "local:vztmpl/"+ubuntu22)
	if err != nil || res2.OSType != "ubuntu" || res2.Digest != res.Digest {
		t.Errorf("second resolve: %+v, %v", res2, err)
	}
	// A changed file is inspected again.
	os.Chtimes(res.Path, fi.ModTime().Add(time.Hour), fi.ModTime().Add(time.Hour))
	_, err = e.r.Resolve(context.Background(), "local:vztmpl/"+ubuntu22)
	wantErr(t, err, errs.KindTemplate, "not a tar archive")
	if n := e.run.count("pveam"); n != 0 {
		t.Errorf("pveam called %d times for a local template", n)
	}
}

func TestResolveVolIDErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.addLocal(ubuntu22, tmplData(t, ubuntu22, "ubuntu"))
	e.addLocal(ubuntu20, tmplData(t, ubuntu20, "ubuntu"))
	e.catalog[debian12] = tmplData(t, debian12, "debian")
	ctx := context.Background()
	cases := []struct {
		image string
		kind  errs.Kind
		parts []string
	}{
		{"nosuch:vztmpl/" + ubuntu22, errs.KindTemplate, []string{"storage 'nosuch' is not defined", "local"}},
		{"local-lvm:vztmpl/" + ubuntu22, errs.KindTemplate, []string{"does not hold container templates", "rootdir,images"}},
		{"isos:vztmpl/" + ubuntu22, errs.KindTemplate, []string{"storage 'isos' does not hold container templates"}},
		{"local:iso/ubuntu.iso", errs.KindTemplate, []string{"content type 'iso'", "vztmpl"}},
		{"local:vztmpl/ubuntu.iso", errs.KindTemplate, []string{"does not name a template file", ".tar.zst"}},
		{"local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.gz", errs.KindTemplate,
			[]string{"template local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.gz not found", "available: local:vztmpl/" + ubuntu22 + ", local:vztmpl/" + ubuntu20}},
	}
	for _, c := range cases {
		_, err := e.r.Resolve(ctx, c.image)
		wantErr(t, err, c.kind, c.parts...)
	}
}

func TestResolveArchMismatch(t *testing.T) {
	e := newEnv(t, nil)
	const arm = "debian-12-standard_12.7-1_arm64.tar.gz"
	e.addLocal(arm, compress(t, CompGzip, tarBytes(t, rootfsEntries(elfArm64, osRelease("debian")))))
	_, err := e.r.Resolve(context.Background(), arm)
	wantErr(t, err, errs.KindTemplate, "built for arm64", "host runs amd64")
}

func TestResolveFileDownloads(t *testing.T) {
	e := newEnv(t, nil)
	e.catalog[debian12] = tmplData(t, debian12, "debian")
	res, err := e.r.Resolve(context.Background(), debian12)
	if err != nil {
		t.Fatal(err)
	}
	if res.VolID != "local:vztmpl/"+debian12 || res.OSType != "debian" || res.Form != FormFile {
		t.Errorf("got %+v", res)
	}
	if n := e.run.count("pveam download local " + debian12); n != 1 {
		t.Errorf("pveam download called %d times, calls %v", n, e.run.calls)
	}
	for _, c := range e.run.calls {
		if strings.Contains(c, ".tar.zst.tar.zst") {
			t.Errorf("doubled extension in %q", c)
		}
	}
	// Now local: no second download.
	if _, err := e.r.Resolve(context.Background(), debian12); err != nil {
		t.Fatal(err)
	}
	if n := e.run.count("pveam"); n != 2 { // available + download, once
		t.Errorf("pveam calls %v", e.run.calls)
	}
}

func TestResolveFileNoAutoDownload(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AutoDownload = false })
	e.catalog[debian12] = tmplData(t, debian12, "debian")
	_, err := e.r.Resolve(context.Background(), debian12)
	wantErr(t, err, errs.KindTemplate, "pveam download local "+debian12, "auto_download")
	if n := e.run.count("pveam download"); n != 0 {
		t.Errorf("downloaded although auto_download is off")
	}
}

func TestResolveFileNotOffered(t *testing.T) {
	e := newEnv(t, nil)
	e.catalog[debian12] = tmplData(t, debian12, "debian")
	_, err := e.r.Resolve(context.Background(), "debian-12-standard_12.7-2_amd64.tar.zst")
	wantErr(t, err, errs.KindTemplate, "not found; storage 'local' holds no templates", "closest names: "+debian12)
}

func TestResolveDownloadFails(t *testing.T) {
	e := newEnv(t, nil)
	e.catalog[debian12] = tmplData(t, debian12, "debian")
	e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
		"pveam": func(argv []string) ([]byte, []byte, error) {
			if argv[1] == "download" {
				return nil, []byte("download failed: 500 Can't connect\n"), os.ErrDeadlineExceeded
			}
			return []byte("system          " + debian12 + "\n"), nil, nil
		},
	}
	_, err := e.r.Resolve(context.Background(), debian12)
	wantErr(t, err, errs.KindTemplate, "pveam download local "+debian12, "Can't connect")
}

func TestResolveNonDirStorage(t *testing.T) {
	e := newEnv(t, nil)
	res, err := e.r.Resolve(context.Background(), "remote:vztmpl/"+debian12)
	if err != nil {
		t.Fatal(err)
	}
	if res.VolID != "remote:vztmpl/"+debian12 || res.Path != "" || res.OSType != "" || res.Arch != "amd64" {
		t.Errorf("got %+v", res)
	}
	_, err = e.r.Resolve(context.Background(), "remote:vztmpl/"+ubuntu22)
	wantErr(t, err, errs.KindTemplate, "available: remote:vztmpl/"+debian12)
}

func TestResolveShortName(t *testing.T) {
	e := newEnv(t, nil)
	e.addLocal(ubuntu20, tmplData(t, ubuntu20, "ubuntu"))
	e.addLocal("debian-11-standard_11.7-1_amd64.tar.zst", tmplData(t, "x.tar.zst", "debian"))
	e.catalog[ubuntu22] = tmplData(t, ubuntu22, "ubuntu")
	e.catalog[alpine] = tmplData(t, alpine, "alpine")
	e.catalog["alpine-3.21-default_20241217_amd64.tar.xz"] = tmplData(t, alpine, "alpine")
	e.catalog["debian-12-turnkey-core_18.1-1_amd64.tar.gz"] = tmplData(t, "x.tar.gz", "debian")
	e.catalog["debian-12-turnkey-nginx_18.0-1_amd64.tar.gz"] = tmplData(t, "x.tar.gz", "debian")
	ctx := context.Background()

	// Local match wins even though a newer ubuntu is downloadable.
	res, err := e.r.Resolve(ctx, "ubuntu")
	if err != nil || res.File != ubuntu20 || res.Form != FormShort {
		t.Fatalf("ubuntu: %+v %v", res, err)
	}
	if e.run.count("pveam") != 0 {
		t.Errorf("pveam asked although a local template matched: %v", e.run.calls)
	}
	// Only downloadable: the newest is fetched.
	res, err = e.r.Resolve(ctx, "alpine")
	if err != nil || res.File != alpine || res.OSType != "alpine" {
		t.Fatalf("alpine: %+v %v", res, err)
	}
	if e.run.count("pveam download local "+alpine) != 1 {
		t.Errorf("calls %v", e.run.calls)
	}
	res, err = e.r.Resolve(ctx, "ubuntu-22.04")
	if err != nil || res.File != ubuntu22 {
		t.Fatalf("ubuntu-22.04: %+v %v", res, err)
	}
	_, err = e.r.Resolve(ctx, "debian-12-turnkey")
	wantErr(t, err, errs.KindTemplate, "matches several", "debian-12-turnkey-core", "debian-12-turnkey-nginx")
	_, err = e.r.Resolve(ctx, "fedora-40")
	wantErr(t, err, errs.KindTemplate, "no template matches the short name 'fedora-40'", "closest:")
}

func TestResolveShortNameNoAutoDownload(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AutoDownload = false })
	e.catalog[alpine] = tmplData(t, alpine, "alpine")
	_, err := e.r.Resolve(context.Background(), "alpine-3.22")
	wantErr(t, err, errs.KindTemplate, "pveam download local "+alpine)
}

func TestResolveFileInCurrentDirHint(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mine.tar.gz"), tmplData(t, "mine.tar.gz", "debian"))
	t.Chdir(dir)
	_, err := e.r.Resolve(context.Background(), "mine.tar.gz")
	wantErr(t, err, errs.KindTemplate, "local:vztmpl/mine.tar.gz not found", "write ./mine.tar.gz")
	res, err := e.r.Resolve(context.Background(), "./mine.tar.gz")
	if err != nil || res.Form != FormPath {
		t.Errorf("./mine.tar.gz: %+v %v", res, err)
	}
}

func TestResolveNonDirStorageArch(t *testing.T) {
	e := newEnv(t, nil)
	e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
		"pveam": func(argv []string) ([]byte, []byte, error) {
			return []byte("NAME SIZE\nremote:vztmpl/debian-12-standard_12.7-1_arm64.tar.zst 1.00MB\n"), nil, nil
		},
	}
	_, err := e.r.Resolve(context.Background(), "remote:vztmpl/debian-12-standard_12.7-1_arm64.tar.zst")
	wantErr(t, err, errs.KindTemplate, "built for arm64")
}

// TestExecRunnerRefusesUntrusted: pveam, pvesh and skopeo from the config
// run as root, so ExecRunner refuses one in a directory others can write
// (invalid-config, which refused() lets callers pass on) without running
// it.
func TestExecRunnerRefusesUntrusted(t *testing.T) {
	evil, open, marker := testutil.PlantedProgram(t, "pveam", "")
	_, _, err := ExecRunner{}.Run(context.Background(), []string{evil, "available"})
	if !refused(err) || !strings.Contains(err.Error(), "directory "+open+" is writable") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the untrusted program ran")
	}
	// Through the resolver the refusal keeps its kind.
	r := NewResolver(Options{PveamPath: evil, AutoDownload: true})
	_, err = r.available(context.Background())
	if errs.KindOf(err) != errs.KindInvalidConfig {
		t.Fatalf("available: %v", err)
	}
}
