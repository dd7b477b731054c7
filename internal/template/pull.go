package template

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
)

// insecureHosts are registries reached without TLS verification (as
// docker treats loopback registries); everything else must verify.
var insecureHosts = []string{"localhost", "127.0.0.1", "[::1]"}

func registryHost(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io"
	}
	return first
}

func insecureRegistry(ref string) bool {
	host := registryHost(ref)
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		host = h
	} else if i := strings.LastIndex(host, "]:"); i > 0 {
		host = host[:i+1]
	}
	for _, h := range insecureHosts {
		if host == h {
			return true
		}
	}
	return false
}

// skopeo returns the skopeo binary to use.
func (r *Resolver) skopeo() (string, error) {
	if r.o.SkopeoPath != "" {
		return r.o.SkopeoPath, nil
	}
	p, err := exec.LookPath("skopeo")
	if err != nil {
		return "", errs.New(errs.KindTemplate, "pulling images from a registry needs skopeo, which is not installed").
			WithHint("install it (`apt-get install skopeo`), or pull the image elsewhere and pass the oci-archive file: `skopeo copy docker://<ref> oci-archive:/path/img.tar`")
	}
	return p, nil
}

// resolveRegistry pulls ref with skopeo into an oci-archive (once; later
// creates reuse the template built from it) and builds a template from it.
func (r *Resolver) resolveRegistry(ctx context.Context, ref string) (*Resolved, error) {
	if !isRegistryRef(ref) {
		return nil, errs.New(errs.KindTemplate, "%q is not a valid image reference", ref).
			WithHint("write it like docker.io/library/alpine:3.20")
	}
	source := "docker://" + ref
	dir, err := r.placeDir()
	if err != nil {
		return nil, err
	}
	if tmpl, m := findBySource(dir, source, nil); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	skopeo, err := r.skopeo()
	if err != nil {
		return nil, err
	}
	unlock, err := r.lock(ctx, "pull:"+source)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if tmpl, m := findBySource(dir, source, nil); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	if err := os.MkdirAll(r.o.WorkDir, 0o700); err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot create %s", r.o.WorkDir).WithHint("check storage.image_path")
	}
	work, err := os.MkdirTemp(r.o.WorkDir, "pull-")
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot create scratch space in %s", r.o.WorkDir)
	}
	defer os.RemoveAll(work)
	archive := filepath.Join(work, "image.tar")
	argv := []string{skopeo, "copy", "--quiet"}
	if insecureRegistry(ref) {
		argv = append(argv, "--src-tls-verify=false")
	}
	argv = append(argv, "docker://"+ref, "oci-archive:"+archive)
	var stderr []byte
	err = r.external("pulling "+ref+" with skopeo", archive, func() (err error) {
		_, stderr, err = r.o.Exec.Run(ctx, argv)
		return err
	})
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "pulling %s with skopeo failed: %s", ref, strings.TrimSpace(string(stderr))).
			WithHint("check the reference and that the registry is reachable (`skopeo inspect docker://%s`)", ref)
	}
	return r.resolveImage(ctx, FormOCIArchive, archive, "", source)
}
