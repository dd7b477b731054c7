package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
)

// proxmoxPull answers `pvesh create .../oci-registry-pull` as Proxmox VE
// 9.1 does on its own node: it writes <filename>.tar into the storage's
// template cache, prints the task's output and UPID, and exits 0.
func proxmoxPull(t *testing.T, e *env, archive []byte, argvSeen *[]string) func([]string) ([]byte, []byte, error) {
	return func(argv []string) ([]byte, []byte, error) {
		*argvSeen = slices.Clone(argv)
		i := slices.Index(argv, "--filename")
		if i < 0 || i+1 >= len(argv) {
			t.Errorf("no --filename in %v", argv)
			return nil, nil, errors.New("exit status 255")
		}
		dest := filepath.Join(e.cache, argv[i+1]+".tar")
		if _, err := os.Stat(dest); err == nil {
			return nil, []byte("refusing to override existing file '" + argv[i+1] + ".tar'\n"), errors.New("exit status 255")
		}
		writeFile(t, dest, archive)
		return []byte("Getting image source signatures\nCopying blob 4abcf2066143 done\nWriting manifest to image destination\n" +
			"UPID:pve1:00001234:00005678:65000000:ociregistrypull:" + argv[i+1] + ".tar:root@pam:\n"), nil, nil
	}
}

func TestPullThroughProxmox(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.NoSkopeo, o.Node, o.PveshPath = true, "pve1", "/usr/bin/pvesh" })
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	var argv []string
	e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
		"/usr/bin/pvesh": proxmoxPull(t, e, tarDir(t, layout), &argv),
	}
	res, err := e.r.Resolve(context.Background(), "docker.io/library/alpine:3.20")
	if err != nil {
		t.Fatal(err)
	}
	name := PullFileName("docker://docker.io/library/alpine:3.20")
	want := []string{"/usr/bin/pvesh", "create", "/nodes/pve1/storage/local/oci-registry-pull",
		"--reference", "docker.io/library/alpine:3.20", "--filename", name}
	if !slices.Equal(argv, want) {
		t.Errorf("pvesh argv\n got %q\nwant %q", argv, want)
	}
	if res.Form != FormRegistry || !strings.HasPrefix(res.VolID, "local:vztmpl/nexcage-") {
		t.Errorf("result %+v", res)
	}
	checkImageResult(t, e, res)
	// The pulled archive served its purpose: only the template stays.
	if _, err := os.Stat(filepath.Join(e.cache, name+".tar")); !os.IsNotExist(err) {
		t.Errorf("pulled archive left in the cache: %v", err)
	}
	// The template is reused: no second pull, also when written as docker://.
	if _, err := e.r.Resolve(context.Background(), "docker://docker.io/library/alpine:3.20"); err != nil {
		t.Fatal(err)
	}
	if n := e.run.count("/usr/bin/pvesh"); n != 1 {
		t.Errorf("%d pulls, want 1", n)
	}
	if n := e.run.count("skopeo"); n != 0 {
		t.Errorf("skopeo ran %d times although it is turned off", n)
	}
}

// Without skopeo on PATH, pulls go through Proxmox; a reference without a
// tag gets :latest (Proxmox's API requires a tag); a file an interrupted
// pull left is removed first (Proxmox refuses to overwrite one).
func TestPullThroughProxmoxWithoutSkopeo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	e := newEnv(t, func(o *Options) { o.Node = "pve1" })
	layout := filepath.Join(t.TempDir(), "img")
	writeLayout(t, layout, "amd64")
	name := PullFileName("docker://localhost:5000/app")
	writeFile(t, filepath.Join(e.cache, name+".tar"), []byte("left by a crash"))
	var argv []string
	e.run.handlers = map[string]func([]string) ([]byte, []byte, error){
		"pvesh": proxmoxPull(t, e, tarDir(t, layout), &argv),
	}
	res, err := e.r.Resolve(context.Background(), "docker://localhost:5000/app")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pvesh", "create", "/nodes/pve1/storage/local/oci-registry-pull",
		"--reference", "localhost:5000/app:latest", "--filename", name}
	if !slices.Equal(argv, want) {
		t.Errorf("pvesh argv\n got %q\nwant %q", argv, want)
	}
	checkImageResult(t, e, res)
}

// PullFileName: one name per source, hidden, and unchanged by Proxmox's
// file name normalisation (letters, digits, '_', '.', '-' only).
func TestPullFileName(t *testing.T) {
	a, b := PullFileName("docker://docker.io/library/alpine:3.20"), PullFileName("docker://quay.io/library/alpine:3.20")
	if a == b || a != PullFileName("docker://docker.io/library/alpine:3.20") {
		t.Errorf("names %q %q", a, b)
	}
	for _, n := range []string{a, b} {
		if !strings.HasPrefix(n, "."+PackedPrefix+"partial-") || strings.ContainsFunc(n, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
		}) {
			t.Errorf("name %q", n)
		}
	}
	for ref, want := range map[string]string{
		"alpine:3.20":                "alpine:3.20",
		"alpine":                     "alpine:latest",
		"localhost:5000/app":         "localhost:5000/app:latest",
		"localhost:5000/app:v1":      "localhost:5000/app:v1",
		"docker.io/library/debian":   "docker.io/library/debian:latest",
		"registry.example.org/a/b:c": "registry.example.org/a/b:c",
	} {
		if got, err := ProxmoxReference(ref); err != nil || got != want {
			t.Errorf("ProxmoxReference(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
}

// A leftover of a crashed pull goes with `templates prune` after a day.
func TestPruneRemovesOldPulls(t *testing.T) {
	now := time.Now()
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	p := writeFile(t, filepath.Join(e.cache, PullFileName("docker://alpine:1")+".tar"), []byte("x"))
	tmp := writeFile(t, p+".tmp.4242", []byte("x")) // Proxmox's own temporary file
	if _, err := e.r.Prune(context.Background(), 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal("a fresh pull was pruned")
	}
	now = now.Add(25 * time.Hour)
	if _, err := e.r.Prune(context.Background(), 0, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, tmp} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s survived the prune", filepath.Base(f))
		}
	}
}

func TestPullThroughProxmoxErrors(t *testing.T) {
	both := []string{"apt-get install skopeo", "Proxmox VE 9.1"}
	for _, tc := range []struct {
		name   string
		ref    string
		answer func([]string) ([]byte, []byte, error)
		want   []string
	}{
		{"simulator", "alpine:3.20", func([]string) ([]byte, []byte, error) {
			return nil, []byte("pvesim: registry pulls are not available in the simulator (no network) - cannot pull 'alpine:3.20'\n"), errors.New("exit status 255")
		}, []string{"cannot pull alpine:3.20: skopeo is not used on this host", "oci-registry-pull failed", "registry pulls are not available in the simulator"}},
		{"before 9.1", "alpine:3.20", func([]string) ([]byte, []byte, error) {
			return nil, []byte("No 'create' handler defined for '/nodes/pve1/storage/local/oci-registry-pull'\n"), errors.New("exit status 2")
		}, []string{"No 'create' handler defined"}},
		{"task failed", "alpine:3.99", func(argv []string) ([]byte, []byte, error) {
			// pvesh exits 0 after a failed task; its error is on stderr.
			return []byte("UPID:pve1:00001234:00005678:65000000:ociregistrypull:x.tar:root@pam:\n"),
				[]byte("command 'skopeo copy docker://alpine:3.99 oci-archive:/var/lib/vz/template/cache/x.tar.tmp.1' failed: exit code 1\n"), nil
		}, []string{"oci-registry-pull task failed", "skopeo copy docker://alpine:3.99"}},
		{"no archive", "alpine:3.20", func(argv []string) ([]byte, []byte, error) {
			return []byte("UPID:pve2:00001234:00005678:65000000:ociregistrypull:x.tar:root@pam:\n"), nil, nil
		}, []string{"no archive", "proxmox.node"}},
		{"pvesh missing", "alpine:3.20", nil, []string{"no such command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.NoSkopeo, o.Node = true, "pve1" })
			if tc.answer != nil {
				e.run.handlers = map[string]func([]string) ([]byte, []byte, error){"pvesh": tc.answer}
			}
			_, err := e.r.Resolve(context.Background(), tc.ref)
			wantErr(t, err, errs.KindTemplate, append(tc.want, both...)...)
			noTemps(t, e.cache)
		})
	}
	t.Run("digest", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.NoSkopeo = true })
		_, err := e.r.Resolve(context.Background(), "alpine@sha256:"+strings.Repeat("a", 64))
		wantErr(t, err, errs.KindTemplate, "not digests", "apt-get install skopeo")
		if n := e.run.count("pvesh"); n != 0 {
			t.Errorf("pvesh called %d times", n)
		}
	})
}
