package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/trust"
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

// skopeo returns the skopeo binary to run here, or why there is none; a
// skopeo that is installed but not trusted (trust.LookPath) is an
// invalid-config error, not a reason to pull through Proxmox instead.
func (r *Resolver) skopeo() (string, error) {
	if r.o.NoSkopeo {
		return "", errors.New("skopeo is not used on this host (templates.skopeo_path is \"\")")
	}
	name := r.o.SkopeoPath
	if name == "" {
		name = "skopeo"
	}
	p, err := trust.LookPath(name)
	if refused(err) {
		return "", errs.Wrap(errs.KindInvalidConfig, err, "templates.skopeo_path %s: refusing to run it", name)
	}
	if err != nil {
		return "", fmt.Errorf("skopeo is not installed (%s: not found)", name)
	}
	if r.o.SkopeoPath != "" {
		return r.o.SkopeoPath, nil
	}
	return p, nil
}

// resolveRegistry pulls ref into an oci-archive (once; later creates
// reuse the template built from it) and builds a template from it. The
// pull runs skopeo here when it is installed, else asks Proxmox VE 9.1's
// oci-registry-pull, which runs skopeo on the node.
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
	skopeo, noSkopeo := r.skopeo()
	if refused(noSkopeo) {
		return nil, noSkopeo
	}
	unlock, err := r.lock(ctx, "pull:"+source)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if tmpl, m := findBySource(dir, source, nil); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	if noSkopeo != nil {
		return r.pullWithProxmox(ctx, ref, source, dir, noSkopeo)
	}
	if err := r.workDir(); err != nil {
		return nil, err
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
	if refused(err) {
		return nil, err
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "pulling %s with skopeo failed: %s", ref, strings.TrimSpace(string(stderr))).
			WithHint("check the reference and that the registry is reachable (`skopeo inspect docker://%s`)", ref)
	}
	return r.resolveImage(ctx, FormOCIArchive, archive, "", source)
}

// pullPrefix starts the name of an archive Proxmox pulls for nexcage. It
// is hidden from Proxmox's template lists, removed once the template is
// built, and `templates prune` removes one a crash left after a day.
const pullPrefix = "." + PackedPrefix + "partial-pull-"

// PullFileName is the file name nexcage asks Proxmox's oci-registry-pull
// to give the archive of the registry image source (docker://<ref>), as
// the `filename` parameter; Proxmox appends ".tar". Without it Proxmox
// would name the file after the reference's last path element only
// (docker.io/library/alpine:3.20 -> alpine_3.20.tar), so images of two
// registries could collide, and it refuses to overwrite a file.
func PullFileName(source string) string {
	sum := sha256.Sum256([]byte(source))
	return pullPrefix + hex.EncodeToString(sum[:8])
}

// ProxmoxReference is ref as oci-registry-pull accepts it: the API takes
// [registry/]name:tag only, so a missing tag becomes :latest (as skopeo
// reads it) and a digest is refused.
func ProxmoxReference(ref string) (string, error) {
	if strings.Contains(ref, "@") {
		return "", errs.New(errs.KindTemplate, "Proxmox's oci-registry-pull cannot pull %s: it accepts name:tag references, not digests", ref).
			WithHint("install skopeo on this host (`apt-get install skopeo`) to pull by digest, or name the image by a tag")
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.Contains(last, ":") {
		ref += ":latest"
	}
	return ref, nil
}

// pullWithProxmox pulls ref with `pvesh create /nodes/<node>/storage/
// <storage>/oci-registry-pull`: Proxmox VE 9.1 runs `skopeo copy
// docker://<ref> oci-archive:<cache>/<filename>.tar` as a task. Run on
// its own node, pvesh runs the task in the foreground (its output on
// stdout, then the task's UPID) and exits 0 even when the task failed,
// printing the task's error on stderr; so the archive's presence is
// what tells success. The archive then serves as an oci-archive and is
// removed once the template is built from it.
func (r *Resolver) pullWithProxmox(ctx context.Context, ref, source, dir string, noSkopeo error) (*Resolved, error) {
	fail := func(format string, a ...any) *errs.Error {
		return errs.New(errs.KindTemplate, "cannot pull %s: %s, and "+format, append([]any{ref, noSkopeo}, a...)...).
			WithHint("install skopeo on this host (`apt-get install skopeo`), or run nexcage on a Proxmox VE 9.1 or later node (its oci-registry-pull API); or pull the image elsewhere and pass the oci-archive file (`skopeo copy docker://%s oci-archive:/path/img.tar`)", ref)
	}
	pveRef, err := ProxmoxReference(ref)
	if err != nil {
		return nil, err
	}
	name := PullFileName(source)
	archive := filepath.Join(dir, name+".tar")
	// Left by an interrupted pull (we hold the pull lock): Proxmox
	// refuses to overwrite a file.
	_ = os.Remove(archive)
	defer os.Remove(archive)
	api := "/nodes/" + r.o.Node + "/storage/" + r.o.Storage + "/oci-registry-pull"
	argv := []string{r.o.PveshPath, "create", api, "--reference", pveRef, "--filename", name}
	var stdout, stderr []byte
	err = r.external("pulling "+ref+" through Proxmox (oci-registry-pull)", archive, func() (err error) {
		stdout, stderr, err = r.o.Exec.Run(ctx, argv)
		return err
	})
	if refused(err) {
		return nil, err
	}
	msg := strings.TrimSpace(string(stderr))
	if err != nil {
		if msg == "" {
			msg = err.Error()
		}
		return nil, fail("Proxmox's oci-registry-pull failed (`%s`): %s", strings.Join(argv, " "), msg)
	}
	upid := lastUPID(stdout)
	if _, statErr := os.Stat(archive); statErr != nil {
		if msg == "" {
			msg = "no archive " + archive + " appeared"
			if upid != "" {
				msg += " (task " + upid + "; if proxmox.node is not this host's node name, the task ran elsewhere)"
			}
		}
		return nil, fail("Proxmox's oci-registry-pull task failed: %s", msg)
	}
	// Proxmox wrote it with its own mode (0644): it is container data
	// from now on, and removed once the template is built.
	if err := os.Chmod(archive, FileMode); err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot make the pulled archive %s private", archive)
	}
	r.log.Info("pulled through Proxmox", "image", ref, "task", upid)
	return r.resolveImage(ctx, FormOCIArchive, archive, "", source)
}

// lastUPID is the last task id (UPID:...) pvesh printed.
func lastUPID(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "UPID:") {
			return l
		}
	}
	return ""
}
