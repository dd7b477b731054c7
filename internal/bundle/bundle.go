// Package bundle loads an OCI bundle (a directory with config.json and a
// root filesystem) and validates it against the runtime-spec before any
// backend sees it. It knows OCI and nothing about Proxmox.
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/jsonerr"
)

// ConfigFile is the name of the bundle's configuration file.
const ConfigFile = "config.json"

// MaxConfigSize bounds config.json; real ones are a few KiB, so anything
// bigger is refused rather than read into memory.
const MaxConfigSize = 16 << 20

// MaxHostnameLen is the kernel's HOST_NAME_MAX.
const MaxHostnameLen = 64

// Bundle is a loaded and validated OCI bundle.
type Bundle struct {
	// Dir is the bundle's absolute path.
	Dir string
	// Spec is the parsed config.json. Relative mount destinations are
	// already rewritten to absolute ones (see Warnings).
	Spec *specs.Spec
	// Rootfs is the absolute path of root.path.
	Rootfs string
	// Warnings are accepted oddities worth telling the user about.
	Warnings []string
}

// Check names one validation rule, so callers and tests can tell which
// check a bundle failed (see Error).
type Check string

// The checks Load performs, in order.
const (
	CheckBundleDir   Check = "bundle-dir"   // the bundle exists and is a directory
	CheckConfigFile  Check = "config-file"  // config.json exists, is a regular file, is readable
	CheckConfigSize  Check = "config-size"  // config.json is at most MaxConfigSize bytes
	CheckJSON        Check = "json"         // config.json is valid JSON of the right shape
	CheckOCIVersion  Check = "oci-version"  // ociVersion is present and 1.x.y
	CheckRoot        Check = "root"         // root and root.path are present
	CheckRootPath    Check = "root-path"    // root.path exists and is a directory
	CheckProcessArgs Check = "process-args" // process.args has at least one non-empty entry without NUL
	CheckProcessCwd  Check = "process-cwd"  // process.cwd is absolute
	CheckProcessEnv  Check = "process-env"  // process.env entries are KEY=VALUE
	CheckHostname    Check = "hostname"     // hostname has no control characters and fits the kernel
	CheckMountDest   Check = "mount-dest"   // mounts[i].destination is set and clean of newlines
	CheckMountSource Check = "mount-source" // mounts[i].source and options have no newline or NUL
	CheckHookPath    Check = "hook-path"    // hooks.*[i].path is absolute
)

// Error is a bundle validation failure. It is always wrapped in an
// *errs.Error of kind KindInvalidBundle; use errors.As to get at it.
type Error struct {
	Bundle string // absolute bundle directory
	File   string // "config.json", or "" when the bundle itself is wrong
	Field  string // JSON path of the offending field, e.g. "root.path"
	Check  Check
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bundle %s", e.Bundle)
	if e.File != "" {
		b.WriteString(": " + e.File)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Reason)
	return b.String()
}

// Summary is what Verify tells of a valid bundle.
type Summary struct {
	// Dir is the bundle's absolute path.
	Dir string
	// OCIVersion is config.json's ociVersion.
	OCIVersion string
	// Annotations are config.json's annotations.
	Annotations map[string]string
	// Warnings are Load's warnings for the bundle.
	Warnings []string
}

// checked is the part of config.json the checks read, with the JSON names
// and Go types of runtime-spec's: decoding only these costs a fraction of
// decoding a whole specs.Spec, whose first decode in a process builds
// encoding/json's field tables for the spec's entire type tree (issue 16).
type checked struct {
	Version     string            `json:"ociVersion"`
	Process     *checkedProcess   `json:"process,omitempty"`
	Root        *checkedRoot      `json:"root,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Mounts      []checkedMount    `json:"mounts,omitempty"`
	Hooks       *checkedHooks     `json:"hooks,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type checkedProcess struct {
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd"`
}

type checkedRoot struct {
	Path string `json:"path"`
}

type checkedMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type,omitempty"`
	Source      string   `json:"source,omitempty"`
	Options     []string `json:"options,omitempty"`
}

type checkedHook struct {
	Path string `json:"path"`
}

type checkedHooks struct {
	Prestart        []checkedHook `json:"prestart,omitempty"`
	CreateRuntime   []checkedHook `json:"createRuntime,omitempty"`
	CreateContainer []checkedHook `json:"createContainer,omitempty"`
	StartContainer  []checkedHook `json:"startContainer,omitempty"`
	Poststart       []checkedHook `json:"poststart,omitempty"`
	Poststop        []checkedHook `json:"poststop,omitempty"`
}

// checkedOf is the part of spec the checks read.
func checkedOf(spec *specs.Spec) *checked {
	c := &checked{Version: spec.Version, Hostname: spec.Hostname, Annotations: spec.Annotations}
	if p := spec.Process; p != nil {
		c.Process = &checkedProcess{Args: p.Args, Env: p.Env, Cwd: p.Cwd}
	}
	if spec.Root != nil {
		c.Root = &checkedRoot{Path: spec.Root.Path}
	}
	for _, m := range spec.Mounts {
		c.Mounts = append(c.Mounts, checkedMount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
	}
	if h := spec.Hooks; h != nil {
		hooks := func(list []specs.Hook) []checkedHook {
			out := make([]checkedHook, len(list))
			for i, hk := range list {
				out[i].Path = hk.Path
			}
			return out
		}
		c.Hooks = &checkedHooks{
			Prestart:      hooks(h.Prestart), //lint:ignore SA1019 deprecated but still part of the spec; validate it too
			CreateRuntime: hooks(h.CreateRuntime), CreateContainer: hooks(h.CreateContainer),
			StartContainer: hooks(h.StartContainer), Poststart: hooks(h.Poststart), Poststop: hooks(h.Poststop),
		}
	}
	return c
}

// loader carries the bundle being validated so errors can name it.
type loader struct {
	dir  string
	spec *checked
	warn []string
}

func (l *loader) fail(c Check, field, hint, format string, args ...any) error {
	file := ConfigFile
	if c == CheckBundleDir {
		file = ""
	}
	e := &Error{Bundle: l.dir, File: file, Field: field, Check: c, Reason: fmt.Sprintf(format, args...)}
	w := errs.Wrap(errs.KindInvalidBundle, e, "")
	if hint != "" {
		w = w.WithHint("%s", hint)
	}
	return w
}

// Load reads and validates the bundle in dir (relative paths are taken
// from the current working directory). Every failure is an error of kind
// KindInvalidBundle wrapping an *Error that names the file, the field and
// the Check that failed.
func Load(dir string) (*Bundle, error) {
	l, data, err := open(dir)
	if err != nil {
		return nil, err
	}
	return l.load(data)
}

// Verify runs Load's checks on the bundle in dir, with the same errors
// and warnings, but decodes from config.json only the fields they read,
// so a type error elsewhere in the file goes unnoticed: for a caller that
// hands the whole file to runc or crun, which decode it themselves
// (nexcage's passthrough, internal/fastpath).
func Verify(dir string) (*Summary, error) {
	l, data, err := open(dir)
	if err != nil {
		return nil, err
	}
	return l.verify(data)
}

func (l *loader) load(data []byte) (*Bundle, error) {
	var spec specs.Spec
	if err := l.decode(data, &spec); err != nil {
		return nil, err
	}
	l.spec = checkedOf(&spec)
	rootfs, err := l.validate()
	if err != nil {
		return nil, err
	}
	for i := range spec.Mounts {
		spec.Mounts[i].Destination, _ = absDestination(spec.Mounts[i].Destination)
	}
	return &Bundle{Dir: l.dir, Spec: &spec, Rootfs: rootfs, Warnings: l.warn}, nil
}

func (l *loader) verify(data []byte) (*Summary, error) {
	var c checked
	if err := l.decode(data, &c); err != nil {
		return nil, err
	}
	l.spec = &c
	if _, err := l.validate(); err != nil {
		return nil, err
	}
	return &Summary{Dir: l.dir, OCIVersion: c.Version, Annotations: c.Annotations, Warnings: l.warn}, nil
}

// open finds the bundle directory and reads its config.json.
func open(dir string) (*loader, []byte, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, errs.Wrap(errs.KindInvalidBundle, err, "bundle %s", dir)
	}
	l := &loader{dir: abs}

	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, l.fail(CheckBundleDir, "", "pass an existing bundle directory with --bundle", "no such directory")
	case err != nil:
		return nil, nil, l.fail(CheckBundleDir, "", "", "%v", unwrapPath(err))
	case !fi.IsDir():
		return nil, nil, l.fail(CheckBundleDir, "", "pass the directory holding config.json, not a file", "not a directory")
	}
	data, err := l.readConfig()
	if err != nil {
		return nil, nil, err
	}
	return l, data, nil
}

// unwrapPath drops the *fs.PathError wrapper whose path we print already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (l *loader) readConfig() ([]byte, error) {
	p := filepath.Join(l.dir, ConfigFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, l.fail(CheckConfigFile, "", "create one with `nexcage spec` or `runc spec`", "no such file")
	}
	if err != nil {
		return nil, l.fail(CheckConfigFile, "", "", "%v", unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, l.fail(CheckConfigFile, "", "", "%v", unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, l.fail(CheckConfigFile, "", "", "not a regular file")
	}
	// Read one byte past the limit so a file that grew after Stat is
	// still caught.
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, l.fail(CheckConfigFile, "", "", "%v", unwrapPath(err))
	}
	if len(data) > MaxConfigSize {
		return nil, l.fail(CheckConfigSize, "", "", "larger than %d bytes", MaxConfigSize)
	}
	return data, nil
}

// decode decodes config.json into v.
func (l *loader) decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return l.fail(CheckJSON, "", "", "%s", jsonerr.Describe(data, err))
	}
	return nil
}

// isSpecVersion reports whether v is semantic versioning with major
// version 1: ^1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$,
// checked by hand: every create runs it, and compiling the regexp would
// cost more than the check (the passthrough's create, issue 16).
func isSpecVersion(v string) bool {
	rest, ok := strings.CutPrefix(v, "1.")
	if !ok {
		return false
	}
	num := func(s string) (string, bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || (i > 1 && s[0] == '0') {
			return s, false
		}
		return s[i:], true
	}
	if rest, ok = num(rest); !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, "."); !ok {
		return false
	}
	if rest, ok = num(rest); !ok {
		return false
	}
	ident := func(s string) bool {
		if s == "" {
			return false
		}
		for _, c := range []byte(s) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-') {
				return false
			}
		}
		return true
	}
	pre, build, hasBuild := strings.Cut(rest, "+")
	if hasBuild && !ident(build) {
		return false
	}
	if pre == "" {
		return true
	}
	p, ok := strings.CutPrefix(pre, "-")
	return ok && ident(p)
}

// validate runs the runtime-spec checks and returns the absolute rootfs.
func (l *loader) validate() (string, error) {
	s := l.spec
	switch {
	case s.Version == "":
		return "", l.fail(CheckOCIVersion, "ociVersion", "set it to the runtime-spec version the file follows, e.g. \"1.0.2\"", "missing")
	case !isSpecVersion(s.Version):
		return "", l.fail(CheckOCIVersion, "ociVersion", "nexcage supports runtime-spec 1.x", "%q is not a 1.x semantic version", s.Version)
	}

	rootfs, err := l.checkRoot()
	if err != nil {
		return "", err
	}
	if err := l.checkProcess(); err != nil {
		return "", err
	}
	if strings.ContainsFunc(s.Hostname, isControl) {
		return "", l.fail(CheckHostname, "hostname", "", "%q contains control characters", s.Hostname)
	}
	if len(s.Hostname) > MaxHostnameLen {
		return "", l.fail(CheckHostname, "hostname", "", "longer than %d bytes", MaxHostnameLen)
	}
	if err := l.checkMounts(); err != nil {
		return "", err
	}
	if err := l.checkHooks(); err != nil {
		return "", err
	}
	return rootfs, nil
}

func (l *loader) checkRoot() (string, error) {
	r := l.spec.Root
	if r == nil {
		return "", l.fail(CheckRoot, "root", "add {\"root\": {\"path\": \"rootfs\"}}", "missing")
	}
	if r.Path == "" {
		return "", l.fail(CheckRoot, "root.path", "set it to the root filesystem directory, absolute or relative to the bundle", "missing")
	}
	if strings.ContainsFunc(r.Path, isLineBreakOrNUL) {
		return "", l.fail(CheckRootPath, "root.path", "", "%q contains a newline or NUL", r.Path)
	}
	p := r.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(l.dir, p)
	}
	p = filepath.Clean(p)
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", l.fail(CheckRootPath, "root.path", "create the root filesystem there or fix root.path", "%q: no such directory", r.Path)
	case err != nil:
		return "", l.fail(CheckRootPath, "root.path", "", "%q: %v", r.Path, unwrapPath(err))
	case !fi.IsDir():
		return "", l.fail(CheckRootPath, "root.path", "", "%q: not a directory", r.Path)
	}
	return p, nil
}

func (l *loader) checkProcess() error {
	p := l.spec.Process
	if p == nil {
		return nil
	}
	if len(p.Args) == 0 {
		return l.fail(CheckProcessArgs, "process.args", "name the program to run, e.g. [\"sh\"]", "empty; at least one entry is required")
	}
	if p.Args[0] == "" {
		return l.fail(CheckProcessArgs, "process.args[0]", "", "empty program name")
	}
	for i, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return l.fail(CheckProcessArgs, fmt.Sprintf("process.args[%d]", i), "", "contains a NUL byte")
		}
	}
	if p.Cwd != "" && !path.IsAbs(p.Cwd) {
		return l.fail(CheckProcessCwd, "process.cwd", "", "%q is not an absolute path", p.Cwd)
	}
	if strings.ContainsFunc(p.Cwd, isLineBreakOrNUL) {
		return l.fail(CheckProcessCwd, "process.cwd", "", "%q contains a newline or NUL", p.Cwd)
	}
	for i, e := range p.Env {
		field := fmt.Sprintf("process.env[%d]", i)
		k, v, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			return l.fail(CheckProcessEnv, field, "write it as KEY=VALUE", "%q has no '='", e)
		case k == "":
			return l.fail(CheckProcessEnv, field, "", "%q has an empty name", e)
		case strings.ContainsFunc(k, isControl) || strings.ContainsRune(k, ' '):
			return l.fail(CheckProcessEnv, field, "", "name %q contains whitespace or control characters", k)
		case strings.ContainsRune(v, 0):
			return l.fail(CheckProcessEnv, field, "", "value of %s contains a NUL byte", k)
		}
	}
	return nil
}

func (l *loader) checkMounts() error {
	for i := range l.spec.Mounts {
		m := &l.spec.Mounts[i]
		field := fmt.Sprintf("mounts[%d]", i)
		if m.Destination == "" {
			return l.fail(CheckMountDest, field+".destination", "", "missing")
		}
		if strings.ContainsFunc(m.Destination, isLineBreakOrNUL) {
			return l.fail(CheckMountDest, field+".destination", "", "%q contains a newline or NUL", m.Destination)
		}
		if strings.ContainsFunc(m.Source, isLineBreakOrNUL) {
			return l.fail(CheckMountSource, field+".source", "", "%q contains a newline or NUL", m.Source)
		}
		if strings.ContainsFunc(m.Type, isLineBreakOrNUL) {
			return l.fail(CheckMountSource, field+".type", "", "%q contains a newline or NUL", m.Type)
		}
		for j, o := range m.Options {
			if strings.ContainsFunc(o, isLineBreakOrNUL) {
				return l.fail(CheckMountSource, fmt.Sprintf("%s.options[%d]", field, j), "", "%q contains a newline or NUL", o)
			}
		}
		if abs, rel := absDestination(m.Destination); rel {
			l.warn = append(l.warn, fmt.Sprintf("bundle %s: %s: %s.destination %q is relative; using %q (relative destinations are deprecated by the runtime-spec)",
				l.dir, ConfigFile, field, m.Destination, abs))
		}
	}
	return nil
}

// absDestination is a mount destination as an absolute path: a relative
// one (deprecated by the runtime-spec but allowed) is taken from "/".
func absDestination(d string) (abs string, relative bool) {
	if path.IsAbs(d) {
		return d, false
	}
	return path.Clean("/" + d), true
}

func (l *loader) checkHooks() error {
	h := l.spec.Hooks
	if h == nil {
		return nil
	}
	lists := []struct {
		name  string
		hooks []checkedHook
	}{
		{"prestart", h.Prestart},
		{"createRuntime", h.CreateRuntime}, {"createContainer", h.CreateContainer},
		{"startContainer", h.StartContainer}, {"poststart", h.Poststart}, {"poststop", h.Poststop},
	}
	for _, list := range lists {
		for i, hk := range list.hooks {
			field := fmt.Sprintf("hooks.%s[%d].path", list.name, i)
			if !filepath.IsAbs(hk.Path) {
				return l.fail(CheckHookPath, field, "hook paths must be absolute", "%q is not an absolute path", hk.Path)
			}
			if strings.ContainsFunc(hk.Path, isLineBreakOrNUL) {
				return l.fail(CheckHookPath, field, "", "%q contains a newline or NUL", hk.Path)
			}
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isLineBreakOrNUL(r rune) bool { return r == '\n' || r == '\r' || r == 0 }
