package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// noEnv is a Getenv that sees no NEXCAGE_CONFIG.
func noEnv(string) string { return "" }

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	want := map[string]any{
		"root_path":  c.Runtime.RootPath == "/run/nexcage",
		"bridge":     c.Network.Bridge == "vmbr0",
		"tstorage":   c.Proxmox.TemplateStorage == "local",
		"vmid_range": c.Proxmox.VMIDRange == [2]int{100, 999999999},
		"timeout":    c.Proxmox.Timeout == 300,
		"unpriv":     c.Proxmox.Unprivileged != nil && *c.Proxmox.Unprivileged,
		"autodl":     c.Templates.AutoDownload != nil && *c.Templates.AutoDownload,
		"default":    c.ContainerConfig.DefaultContainerType == "lxc",
		"etc_pve":    c.Proxmox.EtcPve == "/etc/pve",
		"lxc_path":   c.Proxmox.LxcPath == "/var/lib/lxc",
		"lock_dir":   c.Proxmox.LockDir == "/run/lock/lxc",
		"kill_grace": c.Proxmox.KillGrace == 10,
		"image_path": c.Storage.ImagePath == "/var/lib/nexcage/images",
		"crun cg":    c.Runtimes.Crun.CgroupWorkaround == "auto",
		"log_level":  c.Runtime.LogLevel == "info",
		"pct":        c.Proxmox.PctPath == "pct",
		"path":       c.Path == "",
	}
	for k, ok := range want {
		if ok != true {
			t.Errorf("default %s wrong: %+v", k, c)
		}
	}
	// Each call returns fresh pointers.
	*Default().Proxmox.Unprivileged = false
	if !*Default().Proxmox.Unprivileged {
		t.Error("Default shares its *bool values")
	}
}

func TestSearchOrder(t *testing.T) {
	dir := t.TempDir()
	etc1 := filepath.Join(dir, "etc", "config.json")
	etc2 := filepath.Join(dir, "etc", "nexcage.json")
	cwd := filepath.Join(dir, "cwd")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(cwd)
	l := Loader{SearchPaths: []string{etc1, etc2}, Getenv: noEnv}

	// Nothing: defaults.
	c, w, err := l.Load("")
	if err != nil || c.Path != "" || len(w) != 0 {
		t.Fatalf("no files: %v %q %v", c.Path, w, err)
	}
	write(t, dir, "etc/nexcage.json", `{"network":{"bridge":"vmbr2"}}`)
	c, _, err = l.Load("")
	if err != nil || c.Path != etc2 || c.Network.Bridge != "vmbr2" {
		t.Fatalf("etc2: %v %v %v", c.Path, c.Network.Bridge, err)
	}
	write(t, dir, "etc/config.json", `{"network":{"bridge":"vmbr1"}}`)
	c, _, err = l.Load("")
	if err != nil || c.Path != etc1 {
		t.Fatalf("etc1: %v %v", c.Path, err)
	}
	// NEXCAGE_CONFIG wins over the search path, and is taken even when it
	// has an odd shape (the user named it explicitly).
	envFile := write(t, dir, "env.json", `{"network":{"bridge":"vmbr4"}}`)
	l.Getenv = func(k string) string {
		if k == EnvConfig {
			return envFile
		}
		return ""
	}
	c, _, err = l.Load("")
	if err != nil || c.Path != envFile || c.Network.Bridge != "vmbr4" {
		t.Fatalf("env: %v %v", c.Path, err)
	}
	// --config wins over everything.
	explicit := write(t, dir, "explicit.json", `{"network":{"bridge":"vmbr5"}}`)
	c, _, err = l.Load(explicit)
	if err != nil || c.Path != explicit || c.Network.Bridge != "vmbr5" {
		t.Fatalf("explicit: %v %v", c.Path, err)
	}
	// Missing explicit or env file is an error, not a fallback.
	_, _, err = l.Load(filepath.Join(dir, "missing.json"))
	if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), "missing.json: no such file") {
		t.Errorf("missing --config: %v", err)
	}
	l.Getenv = func(string) string { return filepath.Join(dir, "missing-env.json") }
	_, _, err = l.Load("")
	if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), "missing-env.json: no such file") ||
		!strings.Contains(err.Error(), EnvConfig) {
		t.Errorf("missing NEXCAGE_CONFIG: %v", err)
	}
}

// TestNoConfigFromWorkingDirectory: a config.json in the working
// directory is never read, whatever it holds; the default search path is
// absolute.
func TestNoConfigFromWorkingDirectory(t *testing.T) {
	for _, p := range DefaultSearchPaths {
		if !filepath.IsAbs(p) {
			t.Errorf("DefaultSearchPaths has a relative entry %q", p)
		}
	}
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, dir, "config.json", `{"runtimes":{"runc":{"path":"/bin/false"}}}`)
	etc := filepath.Join(dir, "etc", "config.json")
	for _, l := range []Loader{{Getenv: noEnv}, {SearchPaths: []string{etc}, Getenv: noEnv}} {
		c, _, err := l.Load("")
		if err != nil {
			t.Fatal(err)
		}
		if c.Path == filepath.Join(dir, "config.json") || c.Runtimes.Runc.Path != "runc" {
			t.Fatalf("./config.json was read: %s, runc %s", c.Path, c.Runtimes.Runc.Path)
		}
	}
	// A relative search path is a programming error, not a lookup.
	if _, _, err := (Loader{SearchPaths: []string{"./config.json"}, Getenv: noEnv}).Load(""); err == nil {
		t.Fatal("relative search path accepted")
	}
}

// TestRelativePathRefused: --config and NEXCAGE_CONFIG must be absolute;
// the error says why and gives the absolute form.
func TestRelativePathRefused(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, dir, "config.json", `{}`)
	abs := filepath.Join(dir, "config.json")
	for _, tc := range []struct {
		name, explicit, env, want string
	}{
		{"--config", "config.json", "", "--config config.json: not an absolute path"},
		{"--config dot", "./config.json", "", "--config ./config.json: not an absolute path"},
		{"env", "", "config.json", EnvConfig + " config.json: not an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Loader{Getenv: func(k string) string {
				if k == EnvConfig {
					return tc.env
				}
				return ""
			}}
			_, _, err := l.Load(tc.explicit)
			if errs.KindOf(err) != errs.KindInvalidConfig {
				t.Fatalf("kind %v: %v", errs.KindOf(err), err)
			}
			for _, w := range []string{tc.want, "never relative to the working directory", "give the absolute path, e.g. " + abs} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, _, err := LoadFrom("config.json"); err == nil {
		t.Error("LoadFrom accepted a relative path")
	}
}

// TestUntrustedFileRefused: a config another user owns or can write, or
// that lies in a directory they can change, is refused with the file,
// the reason and the fix; the search path does not fall back to the next
// file.
func TestUntrustedFileRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("runs as root: makes files owned by another user")
	}
	const other = 54321
	dir := t.TempDir()
	chown := func(p string, uid int) {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	chmod := func(p string, m os.FileMode) {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	owned := write(t, dir, "owned/c.json", `{}`)
	chown(owned, other)
	gw := write(t, dir, "gw/c.json", `{}`)
	chmod(gw, 0o664)
	ww := write(t, dir, "ww/c.json", `{}`)
	chmod(ww, 0o646)
	open := write(t, dir, "open/c.json", `{}`)
	chmod(filepath.Dir(open), 0o777)
	home := write(t, dir, "home/c.json", `{}`)
	chown(filepath.Dir(home), other)
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want, fix string }{
		{"owner", owned, "file " + owned + " is owned by uid 54321, not root", "chown root " + owned},
		{"group-writable", gw, "file " + gw + " is writable by its group (mode 0664)", "chmod go-w " + gw},
		{"world-writable", ww, "file " + ww + " is writable by others (mode 0646)", "chmod go-w " + ww},
		{"open parent", open, "directory " + filepath.Dir(open) + " is writable by group and others (mode 0777) and not sticky", "chmod go-w " + filepath.Dir(open)},
		{"user's directory", home, "directory " + filepath.Dir(home) + " is owned by uid 54321", "chown root " + filepath.Dir(home)},
		{"link into user's directory", link, "directory " + filepath.Dir(home) + " is owned by uid 54321", "chown root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, err error) {
				t.Helper()
				if errs.KindOf(err) != errs.KindInvalidConfig {
					t.Fatalf("%s: kind %v: %v", how, errs.KindOf(err), err)
				}
				for _, w := range []string{"config " + tc.path, tc.want, tc.fix} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q lacks %q", how, err, w)
					}
				}
			}
			_, _, err := LoadFrom(tc.path)
			check("LoadFrom", err)
			_, _, err = Loader{Getenv: noEnv}.Load(tc.path)
			check("--config", err)
			_, _, err = Loader{Getenv: func(string) string { return tc.path }}.Load("")
			check(EnvConfig, err)
			if !strings.Contains(err.Error(), EnvConfig) {
				t.Errorf("env error does not name %s: %v", EnvConfig, err)
			}
			// In the search path it fails too, rather than letting a
			// later file (or the defaults) silently apply.
			later := write(t, t.TempDir(), "later.json", `{}`)
			_, _, err = Loader{SearchPaths: []string{tc.path, later}, Getenv: noEnv}.Load("")
			check("search path", err)
		})
	}
	// Under a sticky world-writable directory (/tmp), root's own file is
	// fine: t.TempDir is there.
	ok := write(t, dir, "ok/c.json", `{}`)
	if _, _, err := LoadFrom(ok); err != nil {
		t.Errorf("trusted file under /tmp: %v", err)
	}
}

func TestCommandPathsAbsoluteOrName(t *testing.T) {
	for _, key := range []string{`"proxmox": {"pct_path": "./pct"}`, `"runtimes": {"runc": {"path": "bin/runc"}}`, `"templates": {"skopeo_path": "x/skopeo"}`} {
		p := write(t, t.TempDir(), "c.json", "{"+key+"}")
		if _, _, err := LoadFrom(p); err == nil || !strings.Contains(err.Error(), "must be a program name looked up on PATH or an absolute path") {
			t.Errorf("%s: %v", key, err)
		}
	}
	p := write(t, t.TempDir(), "c.json", `{"proxmox": {"pct_path": "/usr/sbin/pct"}, "runtimes": {"runc": {"path": "runc"}}, "templates": {"skopeo_path": ""}}`)
	if _, _, err := LoadFrom(p); err != nil {
		t.Error(err)
	}
}

func TestDefaultsFillUnset(t *testing.T) {
	p := write(t, t.TempDir(), "c.json", `{"proxmox":{"timeout":30,"node":"","unprivileged":false},"runtime":{"log_level":null}}`)
	c, w, err := LoadFrom(p)
	if err != nil || len(w) != 0 {
		t.Fatal(err, w)
	}
	d := Default()
	if c.Proxmox.Timeout != 30 || *c.Proxmox.Unprivileged || c.Proxmox.Node != d.Proxmox.Node ||
		c.Runtime.LogLevel != "info" || c.Network.Bridge != "vmbr0" || c.Proxmox.VMIDRange != d.Proxmox.VMIDRange ||
		!*c.Templates.AutoDownload || c.Runtimes.Crun.Path != "crun" {
		t.Errorf("merged config wrong: %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"syntax", "{\n  \"proxmox\": {\n    \"timeout\": 30,,\n  }\n}", []string{"line 3, column 19"}},
		{"eof", "{\n  \"proxmox\": {", []string{"line 2, column 15", "unexpected end"}},
		{"empty", "", []string{"line 1, column 1"}},
		{"trailing", "{}\n{}", []string{"line 2, column 1", "after top-level value"}},
		{"top array", `[]`, []string{"(top level): expected object, got array"}},
		{"section type", `{"proxmox": []}`, []string{"proxmox: expected object, got array"}},
		{"timeout string", `{"proxmox": {"timeout": "30"}}`, []string{"proxmox.timeout: expected integer, got string"}},
		{"timeout float", `{"proxmox": {"timeout": 1.5}}`, []string{"proxmox.timeout: expected integer, got 1.5"}},
		{"bool string", `{"templates": {"auto_download": "yes"}}`, []string{"templates.auto_download: expected boolean, got string"}},
		{"routing object", `{"runtime": {"routing": {"pattern": "x"}}}`, []string{"runtime.routing: expected array, got object"}},
		{"routing elem", `{"runtime": {"routing": [{"pattern": 5, "runtime": "runc"}]}}`, []string{"runtime.routing[0].pattern: expected string, got number"}},
		{"vmid short", `{"proxmox": {"vmid_range": [100]}}`, []string{"proxmox.vmid_range: expected an array of 2 elements, got 1"}},
		{"vmid null elem", `{"proxmox": {"vmid_range": [100, null]}}`, []string{"proxmox.vmid_range[1]: expected integer, got null"}},
		{"dns type", `{"network": {"dns_servers": "9.9.9.9"}}`, []string{"network.dns_servers: expected array, got string"}},
		{"vmid low", `{"proxmox": {"vmid_range": [50, 200]}}`, []string{"proxmox.vmid_range", "[50, 200]"}},
		{"vmid high", `{"proxmox": {"vmid_range": [100, 1000000000]}}`, []string{"proxmox.vmid_range"}},
		{"vmid order", `{"proxmox": {"vmid_range": [500, 200]}}`, []string{"proxmox.vmid_range"}},
		{"timeout zero", `{"proxmox": {"timeout": 0}}`, []string{"proxmox.timeout: 0 must be > 0"}},
		{"timeout negative", `{"proxmox": {"timeout": -5}}`, []string{"proxmox.timeout"}},
		{"kill_grace zero", `{"proxmox": {"kill_grace": 0}}`, []string{"proxmox.kill_grace: 0 must be between 1 and 3600"}},
		{"lock_dir relative", `{"proxmox": {"lock_dir": "run/lock"}}`, []string{"proxmox.lock_dir"}},
		{"bridge comma", `{"network": {"bridge": "vmbr0,tag=5"}}`, []string{"network.bridge", "vmbr0,tag=5"}},
		{"bridge long", `{"network": {"bridge": "abcdefghijklmnop"}}`, []string{"network.bridge"}},
		{"bridge newline", `{"network": {"bridge": "vmbr0\nx"}}`, []string{"network.bridge"}},
		{"node equals", `{"proxmox": {"node": "a=b"}}`, []string{"proxmox.node"}},
		{"storage bad", `{"proxmox": {"storage": "local lvm"}}`, []string{"proxmox.storage"}},
		{"tstorage bad", `{"proxmox": {"template_storage": "x:y"}}`, []string{"proxmox.template_storage"}},
		{"log level", `{"runtime": {"log_level": "verbose"}}`, []string{"runtime.log_level", "verbose"}},
		{"root relative", `{"runtime": {"root_path": "run/nexcage"}}`, []string{"runtime.root_path", "absolute"}},
		{"log path relative", `{"runtime": {"log_path": "x.log"}}`, []string{"runtime.log_path"}},
		{"etc_pve relative", `{"proxmox": {"etc_pve": "etc/pve"}}`, []string{"proxmox.etc_pve"}},
		{"pct newline", `{"proxmox": {"pct_path": "/usr/sbin/pct\n"}}`, []string{"proxmox.pct_path"}},
		{"dns bad", `{"network": {"dns_servers": ["9.9.9.9", "dns.quad9.net"]}}`, []string{"network.dns_servers[1]"}},
		{"dhcp timeout", `{"network": {"dhcp_timeout": 0}}`, []string{"network.dhcp_timeout: 0 must be 1..3600"}},
		{"bad regex", `{"runtime": {"routing": [{"pattern": ".*", "runtime": "lxc"}, {"pattern": "(", "runtime": "crun"}]}}`, []string{"runtime.routing[1].pattern", "not a valid regular expression"}},
		{"empty pattern", `{"runtime": {"routing": [{"pattern": "", "runtime": "crun"}]}}`, []string{"runtime.routing[0].pattern: empty"}},
		{"bad runtime", `{"runtime": {"routing": [{"pattern": "x", "runtime": "docker"}]}}`, []string{"runtime.routing[0].runtime", `unknown runtime "docker"`, "lxc, proxmox-lxc, runc, crun"}},
		{"bad default", `{"container_config": {"default_container_type": "kvm"}}`, []string{"container_config.default_container_type", `"kvm"`}},
		{"bad wildcard", `{"container_config": {"crun_name_patterns": ["["]}}`, []string{"container_config.crun_name_patterns[0]"}},
		{"bad workaround", `{"runtimes": {"crun": {"cgroup_workaround": "sometimes"}}}`, []string{"runtimes.crun.cgroup_workaround"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, t.TempDir(), "c.json", tc.content)
			c, _, err := LoadFrom(p)
			if err == nil {
				t.Fatalf("loaded: %+v", c)
			}
			if errs.KindOf(err) != errs.KindInvalidConfig {
				t.Errorf("kind %v, want invalid-config: %v", errs.KindOf(err), err)
			}
			for _, s := range append(tc.want, "config "+p) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	p := write(t, t.TempDir(), "c.json", `{
	  "proxmox": {"pct_pth": "/x", "timeout": 10, "Node": "pve2"},
	  "runtime": {"routing": [{"pattern": "^a$", "runtime": "runc", "patern": "x"}]},
	  "extra": {"a": 1}
	}`)
	c, w, err := LoadFrom(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 {
		t.Fatalf("warnings = %q, want one", w)
	}
	for _, k := range []string{`"extra"`, `"proxmox.pct_pth"`, `"proxmox.Node"`, `"runtime.routing[0].patern"`, "unknown keys"} {
		if !strings.Contains(w[0], k) {
			t.Errorf("warning %q lacks %s", w[0], k)
		}
	}
	// Known keys next to unknown ones still apply; a wrongly cased key is
	// not silently used.
	if c.Proxmox.Timeout != 10 || c.Proxmox.PctPath != "pct" || c.Proxmox.Node == "pve2" || c.Runtime.Routing[0].Runtime != "runc" {
		t.Errorf("config = %+v", c.Proxmox)
	}
}

func TestVMRouteWarns(t *testing.T) {
	p := write(t, t.TempDir(), "c.json", `{"runtime": {"routing": [{"pattern": "vm-.*", "runtime": "vm"}]}}`)
	c, w, err := LoadFrom(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "runtime.routing[0]") || !strings.Contains(w[0], "not support") {
		t.Errorf("warnings = %q", w)
	}
	r, err := c.Router()
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Route("vm-1", "")
	if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), "not supported") || !strings.Contains(err.Error(), "vm-1") {
		t.Errorf("Route(vm-1) = %v", err)
	}
}

// repoFile returns the absolute path of a file at the repository root.
func repoFile(name string) string {
	p, err := filepath.Abs(filepath.Join("..", "..", name))
	if err != nil {
		panic(err)
	}
	return p
}

// exampleKeys flattens a JSON document into key paths: objects nest with
// ".", arrays of objects add "[]", scalar arrays are leaves.
func exampleKeys(prefix string, v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			exampleKeys(p, e, out)
		}
	case []any:
		objects := false
		for _, e := range x {
			if _, ok := e.(map[string]any); ok {
				objects = true
				exampleKeys(prefix+"[]", e, out)
			}
		}
		if !objects {
			out[prefix] = true
		}
	default:
		out[prefix] = true
	}
}

// structKeys lists the key paths of every field of t, like exampleKeys.
func structKeys(prefix string, t reflect.Type, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			p := tag
			if prefix != "" {
				p = prefix + "." + tag
			}
			structKeys(p, t.Field(i).Type, out)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		structKeys(prefix+"[]", t.Elem(), out)
	default:
		out[prefix] = true
	}
}

func TestExampleConfig(t *testing.T) {
	c, w, err := LoadFrom(repoFile("config.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 0 {
		t.Errorf("config.example.json gives warnings: %q", w)
	}
	// The example exercises routing as the docs say.
	r, err := c.Router()
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"cilium-agent": BackendCrun, "ci-42": BackendRunc, "calico-node": BackendCrun, "web1": BackendProxmox} {
		d, err := r.Route(id, "")
		if err != nil || d.Backend != want {
			t.Errorf("example routes %s to %v (%v), want %s", id, d, err, want)
		}
	}

	data, err := os.ReadFile(repoFile("config.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	inExample := map[string]bool{}
	exampleKeys("", tree, inExample)
	inStruct := map[string]bool{}
	structKeys("", reflect.TypeOf(Config{}), inStruct)
	if !reflect.DeepEqual(inExample, inStruct) {
		t.Errorf("config.example.json keys differ from the schema:\nexample: %v\nschema:  %v", sorted(inExample), sorted(inStruct))
	}

	doc, err := os.ReadFile(repoFile("docs/CONFIG.md"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range inStruct {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/CONFIG.md does not document `%s`", k)
		}
	}
}

func sorted(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestParseLogLevel(t *testing.T) {
	for _, s := range []string{"debug", "INFO", "warn", "warning", "error", ""} {
		if _, err := ParseLogLevel(s); err != nil {
			t.Errorf("ParseLogLevel(%q): %v", s, err)
		}
	}
	if _, err := ParseLogLevel("trace"); err == nil {
		t.Error("ParseLogLevel(trace) succeeded")
	}
}

// TestNameChecksMatchProxmoxPatterns compares the byte-wise name checks
// with the Proxmox regular expressions they implement, on every string of
// up to 3 bytes over an alphabet covering each class, plus long ones.
func TestNameChecksMatchProxmoxPatterns(t *testing.T) {
	checks := []struct {
		name string
		f    func(string) bool
		re   *regexp.Regexp
	}{
		{"storage id", isStorageID, regexp.MustCompile(`(?i)^[a-z][a-z0-9\-_.]*[a-z0-9]$`)},
		{"node", isNodeName, regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)},
		{"bridge", isBridgeName, regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,15}$`)},
	}
	alphabet := []string{"a", "Z", "0", "9", "-", "_", ".", " ", "/", "é", "\n", "\x00"}
	inputs := []string{"", strings.Repeat("a", 15), strings.Repeat("a", 16), "vmbr0", "local-lvm", "pve-node-1", "Local.Storage_2"}
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		inputs = append(inputs, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+c, n-1)
		}
	}
	gen("", 3)
	for _, c := range checks {
		for _, in := range inputs {
			if got, want := c.f(in), c.re.MatchString(in); got != want {
				t.Errorf("%s %q: got %v, the pattern says %v", c.name, in, got, want)
			}
		}
	}
}
