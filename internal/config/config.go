package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/jsonerr"
	"github.com/nexcage/nexcage/internal/trust"
)

// EnvConfig names the environment variable holding a config file path.
const EnvConfig = "NEXCAGE_CONFIG"

// MaxFileSize bounds a config file; real ones are a few KiB.
const MaxFileSize = 1 << 20

// VMID bounds accepted by Proxmox.
const (
	MinVMID = 100
	MaxVMID = 999999999
)

// DefaultSearchPaths is where Load looks when neither --config nor
// NEXCAGE_CONFIG names a file; the first that exists wins. There is no
// relative entry: nexcage runs as root from any working directory, and a
// file there may belong to anybody.
var DefaultSearchPaths = []string{"/etc/nexcage/config.json", "/etc/nexcage/nexcage.json"}

// Default returns the configuration used when no file is found; a file
// only overrides the keys it sets.
func Default() *Config {
	yes := func() *bool { b := true; return &b }
	return &Config{
		Proxmox: Proxmox{
			PctPath:         "pct",
			PveamPath:       "pveam",
			PveshPath:       "pvesh",
			PveversionPath:  "pveversion",
			EtcPve:          "/etc/pve",
			LxcPath:         "/var/lib/lxc",
			Node:            hostNode(),
			TemplateStorage: "local",
			VMIDRange:       [2]int{MinVMID, MaxVMID},
			Timeout:         300,
			Unprivileged:    yes(),
			LockDir:         "/run/lock/lxc",
			KillGrace:       10,
		},
		Runtime: Runtime{
			LogLevel: "info",
			RootPath: "/run/nexcage",
		},
		ContainerConfig: ContainerConfig{DefaultContainerType: "lxc"},
		Storage:         Storage{ImagePath: "/var/lib/nexcage/images"},
		Network:         Network{Bridge: "vmbr0", DHCPTimeout: 30},
		Templates:       Templates{AutoDownload: yes(), SkopeoPath: ptr("skopeo")},
		Runtimes: Runtimes{
			Runc: OCIRuntime{Path: "runc", CgroupWorkaround: "never"},
			Crun: OCIRuntime{Path: "crun", CgroupWorkaround: "auto"},
		},
	}
}

// hostNode is the Proxmox node name of this host: its host name up to the
// first dot, as Proxmox names nodes. Read once per process (loading a
// config builds the defaults twice).
var hostNode = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	return h
})

// Loader finds and reads the config file. The zero value uses
// DefaultSearchPaths and the process environment; tests set both.
type Loader struct {
	SearchPaths []string
	Getenv      func(string) string
}

// Load is Loader{}.Load: the config named by explicit (--config), else
// by NEXCAGE_CONFIG, else the first file of DefaultSearchPaths, else the
// defaults. It returns the config and warnings to show the user.
func Load(explicit string) (*Config, []string, error) {
	return Loader{}.Load(explicit)
}

// LoadFrom reads the config file at path (absolute; it must exist and be
// trusted, see trust.File) over the defaults and validates it.
func LoadFrom(path string) (*Config, []string, error) {
	if !filepath.IsAbs(path) {
		return nil, nil, relativeError("config", path)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parse(filepath.Clean(path), data)
}

// relativeError refuses a relative config path: nexcage is run (as root)
// by containerd and by scripts from any working directory, where a
// relative name means a different file each time, possibly one another
// user wrote.
func relativeError(source, path string) *errs.Error {
	e := errs.New(errs.KindInvalidConfig, "%s %s: not an absolute path; the config is only read from an absolute path, never relative to the working directory", source, path)
	if abs, err := filepath.Abs(path); err == nil {
		return e.WithHint("give the absolute path, e.g. %s", abs)
	}
	return e.WithHint("give the absolute path")
}

// Load resolves the config file: explicit (from --config; must exist),
// else $NEXCAGE_CONFIG (must exist), else the first existing file among
// the search paths, else defaults. Every path must be absolute, and the
// file is only read when it is trusted (owned by root or the caller, in a
// directory chain only they can change; see internal/trust): otherwise
// the load fails, even for a search path, rather than falling back to
// another file.
func (l Loader) Load(explicit string) (*Config, []string, error) {
	if explicit != "" {
		if !filepath.IsAbs(explicit) {
			return nil, nil, relativeError("--config", explicit)
		}
		return LoadFrom(explicit)
	}
	getenv := l.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if p := getenv(EnvConfig); p != "" {
		if !filepath.IsAbs(p) {
			return nil, nil, relativeError(EnvConfig, p)
		}
		c, w, err := LoadFrom(p)
		if err != nil {
			return nil, nil, errs.Wrap(errs.KindInvalidConfig, err, "%s", EnvConfig).
				WithHint("fix or unset %s", EnvConfig)
		}
		return c, w, nil
	}
	paths := l.SearchPaths
	if paths == nil {
		paths = DefaultSearchPaths
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, nil, errs.New(errs.KindInternal, "config search path %s is not absolute", p)
		}
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, errs.Wrap(errs.KindInvalidConfig, err, "config %s", p)
		}
		if fi.IsDir() {
			continue
		}
		return LoadFrom(p)
	}
	return Default(), nil, nil
}

// readFile reads the config file at path (absolute) once trust.File
// accepts it: nobody but root or the caller can change the file or
// redirect the path between the check and the read.
func readFile(path string) ([]byte, error) {
	err := trust.File(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.New(errs.KindInvalidConfig, "config %s: no such file", path).
			WithHint("check the path given with --config or %s", EnvConfig)
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "config %s", path)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.New(errs.KindInvalidConfig, "config %s: no such file", path).
			WithHint("check the path given with --config or %s", EnvConfig)
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "config %s", path)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, errs.Wrap(errs.KindInvalidConfig, err, "config %s", path)
	}
	if len(data) > MaxFileSize {
		return nil, errs.New(errs.KindInvalidConfig, "config %s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// parse decodes data (the file at path) over the defaults and validates.
func parse(path string, data []byte) (*Config, []string, error) {
	fail := func(format string, args ...any) *errs.Error {
		return errs.New(errs.KindInvalidConfig, "config %s: %s", path, fmt.Sprintf(format, args...)).
			WithHint("see docs/CONFIG.md and config.example.json")
	}
	// json.Unmarshal reports syntax errors (including trailing data and a
	// truncated file) with offsets, once json.Valid (the same scanner,
	// without building values) found one; the Decoder is only for
	// UseNumber.
	if !json.Valid(data) {
		var probe any
		err := json.Unmarshal(data, &probe)
		return nil, nil, fail("%s", jsonerr.Describe(data, err))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, nil, fail("%s", jsonerr.Describe(data, err))
	}

	var unknown []string
	c := Default()
	if err := decode("", tree, reflect.ValueOf(c).Elem(), &unknown); err != nil {
		return nil, nil, fail("%s", err)
	}
	fillEmptyStrings(reflect.ValueOf(c).Elem(), reflect.ValueOf(Default()).Elem())
	c.Path = path

	var warnings []string
	if len(unknown) > 0 {
		quoted := make([]string, len(unknown))
		for i, k := range unknown {
			quoted[i] = fmt.Sprintf("%q", k)
		}
		noun := "key"
		if len(unknown) > 1 {
			noun = "keys"
		}
		warnings = append(warnings, fmt.Sprintf("config %s: unknown %s %s (ignored; see docs/CONFIG.md)", path, noun, strings.Join(quoted, ", ")))
	}
	w, err := c.validate()
	if err != nil {
		var e *errs.Error
		if errors.As(err, &e) && e.Hint != "" {
			return nil, nil, errs.Wrap(errs.KindInvalidConfig, err, "config %s", path)
		}
		return nil, nil, fail("%s", err)
	}
	for _, s := range w {
		warnings = append(warnings, fmt.Sprintf("config %s: %s", path, s))
	}
	return c, warnings, nil
}

// decode checks the decoded JSON value v against dst's type, naming the
// key path p in errors, appends unknown keys to unknown, and stores v in
// dst as json.Unmarshal would, but matching keys exactly (encoding/json
// matches them case-insensitively) and without building encoding/json's
// per-type tables, which would cost more than the rest of a passthrough
// verb's config load (issue 16). null is accepted anywhere and means "use
// the default": dst is left as it is, a pointer is set to nil.
func decode(p string, v any, dst reflect.Value, unknown *[]string) error {
	t := dst.Type()
	if v == nil {
		if t.Kind() == reflect.Pointer {
			dst.SetZero()
		}
		return nil
	}
	if t.Kind() == reflect.Pointer {
		e := reflect.New(t.Elem())
		if err := decode(p, v, e.Elem(), unknown); err != nil {
			return err
		}
		dst.Set(e)
		return nil
	}
	name := p
	if name == "" {
		name = "(top level)"
	}
	mismatch := func() error {
		return fmt.Errorf("%s: expected %s, got %s", name, jsonerr.KindOf(t), jsonerr.KindOfValue(v))
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return mismatch()
		}
		fields := make(map[string]int, t.NumField())
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = i
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kp := k
			if p != "" {
				kp = p + "." + k
			}
			i, ok := fields[k]
			if !ok {
				*unknown = append(*unknown, kp)
				continue
			}
			if err := decode(kp, m[k], dst.Field(i), unknown); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			return mismatch()
		}
		if t.Kind() == reflect.Array && len(a) != t.Len() {
			return fmt.Errorf("%s: expected an array of %d elements, got %d", name, t.Len(), len(a))
		}
		if t.Kind() == reflect.Slice {
			dst.Set(reflect.MakeSlice(t, len(a), len(a)))
		}
		for i, e := range a {
			if e == nil {
				return fmt.Errorf("%s[%d]: expected %s, got null", name, i, jsonerr.KindOf(t.Elem()))
			}
			if err := decode(fmt.Sprintf("%s[%d]", p, i), e, dst.Index(i), unknown); err != nil {
				return err
			}
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return mismatch()
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return mismatch()
		}
		dst.SetBool(b)
	case reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return mismatch()
		}
		i, err := n.Int64()
		if err != nil || dst.OverflowInt(i) {
			return fmt.Errorf("%s: expected integer, got %s", name, n)
		}
		dst.SetInt(i)
	default:
		return fmt.Errorf("%s: unsupported field type %s", name, t)
	}
	return nil
}

// fillEmptyStrings sets every empty string field of v (a struct) to its
// value in def, so "" in a file means "default" like an absent key.
func fillEmptyStrings(v, def reflect.Value) {
	for i := range v.NumField() {
		f, d := v.Field(i), def.Field(i)
		switch f.Kind() {
		case reflect.Struct:
			fillEmptyStrings(f, d)
		case reflect.String:
			if f.String() == "" && f.CanSet() {
				f.SetString(d.String())
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }
