// Package template turns whatever a user names as a container's root
// filesystem (--image or the org.nexcage.proxmox.template annotation) into
// a validated Proxmox template volume id that `pct create` accepts: volume
// ids, template file names, short names, archive paths, URLs, OCI bundles,
// OCI images and registry references. See docs/IMAGES.md.
//
// It knows Proxmox storage and template conventions and OCI image layouts,
// but nothing about translating an OCI runtime spec (the backend's job).
package template

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/nexcage/nexcage/internal/trust"
)

// Form is the kind of image reference the user gave.
type Form string

// The accepted forms, in the order of docs/IMAGES.md.
const (
	FormVolID         Form = "volid"          // local:vztmpl/x.tar.zst
	FormFile          Form = "file"           // x.tar.zst in the template storage
	FormShort         Form = "short"          // ubuntu-22.04, alpine
	FormPath          Form = "path"           // /srv/t/rootfs.tar.gz
	FormURL           Form = "url"            // https://host/x.tar.xz#sha256=...
	FormBundle        Form = "bundle"         // OCI bundle directory
	FormOCILayout     Form = "oci-layout"     // OCI image layout directory[:tag]
	FormOCIArchive    Form = "oci-archive"    // tar of an OCI layout[:tag]
	FormDockerArchive Form = "docker-archive" // `docker save` output[:tag]
	FormRegistry      Form = "registry"       // docker.io/library/alpine:3.20
)

// Runner runs an external command given as argv (never a shell string).
// Tests replace it with a table.
type Runner interface {
	Run(ctx context.Context, argv []string) (stdout, stderr []byte, err error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// Run runs argv and returns its output; a non-zero exit is an error.
// argv[0] (pveam, pvesh, skopeo from the config) must pass
// trust.LookPath: nexcage runs it as root. A refusal is an
// errs.KindInvalidConfig error, which callers return unwrapped (see
// refused).
func (ExecRunner) Run(ctx context.Context, argv []string) ([]byte, []byte, error) {
	if _, err := trust.LookPath(argv[0]); errs.KindOf(err) == errs.KindInvalidConfig {
		return nil, nil, err
	}
	var out, stderr strings.Builder
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	return []byte(out.String()), []byte(stderr.String()), err
}

// refused reports whether err is a Runner's refusal to run an untrusted
// program, which keeps its invalid-config kind (exit code) instead of
// being reported as a failed template operation.
func refused(err error) bool {
	var e *errs.Error
	return errors.As(err, &e) && e.Kind == errs.KindInvalidConfig
}

// Options configure a Resolver. Zero values get the defaults noted.
type Options struct {
	EtcPve       string // directory holding storage.cfg; default /etc/pve
	Storage      string // template storage (proxmox.template_storage); default "local"
	AutoDownload bool   // templates.auto_download: fetch official templates with pveam
	PveamPath    string // default "pveam"
	SkopeoPath   string // registry pulls on this host; default "skopeo" on PATH
	// NoSkopeo keeps registry pulls off this host's skopeo
	// (templates.skopeo_path ""): they go through Proxmox.
	NoSkopeo bool
	// PveshPath (default "pvesh") and Node (default: the host name up to
	// the first dot) reach Proxmox VE 9.1's oci-registry-pull, used when
	// skopeo is not.
	PveshPath string
	Node      string
	// WorkDir holds locks and scratch space for unpacking images
	// (storage.image_path); default /var/lib/nexcage/images.
	WorkDir string
	Exec    Runner       // default ExecRunner
	Logger  *slog.Logger // default: discard
	// Progress receives a progress bar of long work (packing, downloads,
	// pulls) when it is a terminal; otherwise (or nil) ProgressLog gets
	// one line when the work starts and one when it ends.
	Progress    io.Writer
	ProgressLog *slog.Logger // default Logger
	HostArch    string       // default HostArch()
	HTTPClient  *http.Client // default http.DefaultClient
	Now         func() time.Time
	// LockTimeout bounds waiting for another nexcage preparing the same
	// template; default 30 minutes.
	LockTimeout time.Duration
}

// Resolver resolves image references. It is safe for concurrent use, also
// across processes (template preparation is serialised by file locks).
type Resolver struct {
	o   Options
	log *slog.Logger
}

// NewResolver returns a Resolver with defaults filled in.
func NewResolver(o Options) *Resolver {
	if o.EtcPve == "" {
		o.EtcPve = "/etc/pve"
	}
	if o.Storage == "" {
		o.Storage = "local"
	}
	if o.PveamPath == "" {
		o.PveamPath = "pveam"
	}
	if o.PveshPath == "" {
		o.PveshPath = "pvesh"
	}
	if o.Node == "" {
		h, _ := os.Hostname()
		o.Node, _, _ = strings.Cut(h, ".")
	}
	if o.WorkDir == "" {
		o.WorkDir = "/var/lib/nexcage/images"
	}
	if o.Exec == nil {
		o.Exec = ExecRunner{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ProgressLog == nil {
		o.ProgressLog = o.Logger
	}
	if o.HostArch == "" {
		o.HostArch = HostArch()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Minute
	}
	return &Resolver{o: o, log: o.Logger}
}

// ImageConfig is the part of an OCI image configuration that the backend
// applies to the container (the image's defaults; the caller's values win).
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	StopSignal string   `json:"stop_signal,omitempty"`
}

// Resolved is a template ready for `pct create`.
type Resolved struct {
	VolID  string // storage:vztmpl/<file>, the ostemplate argument
	Path   string // host path of the archive ("" on non-directory storages)
	File   string // template file name
	OSType string // Proxmox ostype or "unmanaged"; "" when not inspected (pct detects)
	Arch   string // Proxmox arch; "" when not inspected
	Size   int64
	Digest string // sha256:<hex> of the archive; "" when not inspected
	Form   Form
	// Image holds the image configuration when the template was built from
	// an OCI image; nil otherwise.
	Image *ImageConfig
	// BundleDir is the bundle directory for FormBundle (the backend applies
	// its process settings).
	BundleDir string
	// Packed: nexcage itself placed this template in the cache (packed,
	// copied, downloaded from a URL or built from an image), so it is listed
	// by `templates list` and removable by `templates prune`.
	Packed bool
}

// Resolve turns image into a template volume id, preparing (downloading,
// copying, packing, pulling) the template when needed and validating it
// before pct sees it. Errors are KindTemplate or KindNotFound and say what
// to do.
func (r *Resolver) Resolve(ctx context.Context, image string) (*Resolved, error) {
	form, ref, err := Classify(image)
	if err != nil {
		return nil, err
	}
	r.log.Debug("resolving image", "image", image, "form", form)
	var res *Resolved
	switch form {
	case FormVolID:
		st, vol, _ := splitVolID(ref)
		res, err = r.resolveVolID(ctx, st, vol, form)
	case FormFile:
		res, err = r.resolveVolID(ctx, r.o.Storage, "vztmpl/"+ref, form)
	case FormShort:
		res, err = r.resolveShort(ctx, ref)
	case FormPath:
		res, err = r.resolvePath(ctx, ref)
	case FormURL:
		res, err = r.resolveURL(ctx, ref)
	case FormBundle:
		res, err = r.resolveBundle(ctx, ref)
	case FormOCILayout, FormOCIArchive, FormDockerArchive:
		p, tag := splitTag(ref)
		res, err = r.resolveImage(ctx, form, p, tag, "")
	case FormRegistry:
		res, err = r.resolveRegistry(ctx, ref)
	default:
		err = errs.New(errs.KindInternal, "image form %s not handled", form)
	}
	if err != nil {
		return nil, err
	}
	res.Form = form
	return res, nil
}

var (
	volIDRe = lazyre.New(`^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$`)
	// contentDirs are the volume name prefixes of Proxmox content types.
	contentDirs = map[string]bool{
		"vztmpl": true, "iso": true, "images": true, "rootdir": true, "backup": true,
		"snippets": true, "import": true,
	}
	transportRe = lazyre.New(`^(oci|oci-archive|docker-archive|docker):`)
)

func splitVolID(s string) (storage, volume string, ok bool) {
	m := volIDRe.FindStringSubmatch(s)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// splitTag splits "path:tag" when the whole string is not an existing
// path but a part before a colon is (the tag may itself hold colons, as in
// docker-archive:x.tar:alpine:3.20).
func splitTag(s string) (string, string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' || i == 0 {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil && s[i+1:] != "" {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// Classify says which form image is, returning the reference with any
// explicit transport prefix removed. Paths are looked at on disk (a
// directory with config.json is a bundle, with oci-layout an image layout;
// a file is a template archive or an image archive by its content).
func Classify(image string) (Form, string, error) {
	if image == "" {
		return "", "", errs.New(errs.KindTemplate, "no image given").
			WithHint("pass --image with a template volume id, file name, short name, path, URL, bundle directory or image reference (see docs/IMAGES.md)")
	}
	if strings.ContainsFunc(image, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", "", errs.New(errs.KindTemplate, "image %q contains control characters", image)
	}
	lower := strings.ToLower(image)
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		return FormURL, image, nil
	case strings.Contains(image, "://") && !strings.HasPrefix(image, "docker://"):
		return "", "", errs.New(errs.KindTemplate, "image %q: unsupported URL scheme", image).
			WithHint("use http://, https:// or docker://")
	}
	if m := transportRe.FindStringSubmatch(image); m != nil {
		rest := strings.TrimPrefix(image[len(m[0]):], "//")
		switch m[1] {
		case "docker":
			if !isRegistryRef(rest) {
				return "", "", errs.New(errs.KindTemplate, "%q is not a valid image reference", rest).
					WithHint("write it like docker://docker.io/library/alpine:3.20")
			}
			return FormRegistry, rest, nil
		case "oci":
			return explicitPath(FormOCILayout, rest)
		case "oci-archive":
			return explicitPath(FormOCIArchive, rest)
		case "docker-archive":
			return explicitPath(FormDockerArchive, rest)
		}
	}
	if strings.HasPrefix(image, "/") || strings.HasPrefix(image, "./") || strings.HasPrefix(image, "../") || image == "." {
		return classifyPath(image)
	}
	if st, vol, ok := splitVolID(image); ok {
		dir, _, _ := strings.Cut(vol, "/")
		if contentDirs[dir] && strings.Contains(vol, "/") {
			return FormVolID, st + ":" + vol, nil
		}
	}
	if !strings.Contains(image, "/") && !strings.Contains(image, ":") && TemplateExt(image) != "" {
		if !ValidFileName(image) {
			return "", "", errs.New(errs.KindTemplate, "template file name %q is not valid", image).
				WithHint("template names use only letters, digits, '.', '_', '+' and '-' and end in .tar, .tar.gz, .tar.xz, .tar.zst or .tar.bz2")
		}
		return FormFile, image, nil
	}
	if IsShortName(image) {
		return FormShort, image, nil
	}
	if isRegistryRef(image) {
		return FormRegistry, image, nil
	}
	return "", "", errs.New(errs.KindTemplate, "cannot tell what image %q is", image).
		WithHint("use a volume id (local:vztmpl/x.tar.zst), a template file name, a short name (debian-12), an absolute path, an http(s) URL, a bundle directory or an image reference (docker.io/library/alpine:3.20); see docs/IMAGES.md")
}

// explicitPath handles transport-prefixed paths (oci:/p[:tag] ...).
func explicitPath(f Form, rest string) (Form, string, error) {
	abs, err := filepath.Abs(rest)
	if err != nil || rest == "" {
		return "", "", errs.New(errs.KindTemplate, "%s: needs a path", f)
	}
	p, tag := splitTag(abs)
	if _, err := os.Stat(p); err != nil {
		return "", "", errs.New(errs.KindNotFound, "%s %s does not exist", f, p)
	}
	if tag != "" {
		return f, p + ":" + tag, nil
	}
	return f, p, nil
}

func classifyPath(image string) (Form, string, error) {
	abs, err := filepath.Abs(image)
	if err != nil {
		return "", "", errs.Wrap(errs.KindTemplate, err, "image path %s", image)
	}
	p, tag := splitTag(abs)
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", errs.New(errs.KindNotFound, "image path %s does not exist", p).
				WithHint("give the path of a template archive, an OCI bundle directory or an OCI image layout/archive")
		}
		return "", "", errs.Wrap(errs.KindTemplate, err, "image path %s is not readable", p)
	}
	withTag := func(f Form) (Form, string, error) {
		if tag != "" {
			return f, p + ":" + tag, nil
		}
		return f, p, nil
	}
	if fi.IsDir() {
		switch {
		case fileExists(filepath.Join(p, "oci-layout")):
			return withTag(FormOCILayout)
		case fileExists(filepath.Join(p, "config.json")) && tag == "":
			return FormBundle, p, nil
		}
		return "", "", errs.New(errs.KindTemplate, "directory %s is neither an OCI bundle (no config.json) nor an OCI image layout (no oci-layout file)", p).
			WithHint("point --image at a bundle directory, an image layout, or an archive file")
	}
	if !fi.Mode().IsRegular() {
		return "", "", errs.New(errs.KindTemplate, "image path %s is not a regular file or directory", p)
	}
	kind := sniffImageArchive(p)
	if kind != "" {
		return withTag(kind)
	}
	if tag != "" {
		return "", "", errs.New(errs.KindTemplate, "%s is a template archive, not an image archive: a :%s tag makes no sense", p, tag)
	}
	return FormPath, p, nil
}

// registryRefRe is the distribution reference grammar, simplified:
// [domain[:port]/]path[:tag][@sha256:digest] with lowercase path parts.
var registryRefRe = lazyre.New(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`)

func isRegistryRef(s string) bool { return len(s) <= 512 && registryRefRe.MatchString(s) }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
