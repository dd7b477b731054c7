package proxmox

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

// fuzzBundle makes a bundle directory with a rootfs, a "data" directory
// and a "file" that mounts may name; config.json is rewritten per input.
func fuzzBundle(f *testing.F) string {
	dir := f.TempDir()
	for _, d := range []string{"rootfs/etc", "rootfs/run", "rootfs/var", "data", "with space"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		f.Fatal(err)
	}
	// Symlinks in the image that mount destinations may cross.
	for link, to := range map[string]string{"rootfs/var/run": "/run", "rootfs/up": "../../..", "rootfs/etc/resolv.conf": "../run/resolv.conf"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			f.Fatal(err)
		}
	}
	return dir
}

// loadAndTranslate runs the real pipeline: bundle.Load of config.json,
// then Translate, checking the outcome with checkTranslation.
//
// Every translation gets an init helper directory, as every create does;
// templateInit says whether a spec without process is a template-only
// container (which keeps the template's init) or an error.
func loadAndTranslate(t *testing.T, dir string, data []byte, templateInit bool) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, bundle.ConfigFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		if k := errs.KindOf(err); k != errs.KindInvalidBundle {
			t.Fatalf("bundle.Load error kind %v: %v", k, err)
		}
		return
	}
	for _, node := range []pve.NodeVersion{node84, node91} {
		in := Input{ID: "fuzz-ct", Spec: b.Spec, BundleDir: b.Dir, Storage: "local-lvm", Bridge: "vmbr0",
			Unprivileged: true, InitHelperDir: "/var/lib/lxc/.nexcage/fuzz-ct-0", KeepTemplateInit: templateInit, Node: node, Rootfs: filepath.Join(b.Dir, "rootfs")}
		req, err := Translate(in)
		checkTranslation(t, node, req, err)
	}
}

// checkTranslation holds the translation's safety contract: a refusal is
// a bundle, config or unsupported-feature error naming the container;
// an accepted request carries no control character in any pct option or
// raw line, uses only raw keys the node's version keeps, writes every
// lxc.mount.entry as six fstab fields, makes a valid pct create command
// line, and writes a .conf that reads back as exactly its own entries (no
// value can inject a line).
func checkTranslation(t *testing.T, node pve.NodeVersion, req *Request, err error) {
	t.Helper()
	if err != nil {
		switch errs.KindOf(err) {
		case errs.KindInvalidBundle, errs.KindUnsupported, errs.KindInvalidConfig:
		default:
			t.Fatalf("Translate error kind %v: %v", errs.KindOf(err), err)
		}
		if !strings.Contains(err.Error(), "fuzz-ct") {
			t.Fatalf("Translate error does not name the container: %v", err)
		}
		return
	}
	ctl := func(s string) bool {
		return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 })
	}
	conf := pve.NewConfig()
	for _, o := range req.Options {
		if ctl(o.Name) || ctl(o.Value) {
			t.Fatalf("option --%s %q carries a control character", o.Name, o.Value)
		}
		conf.Set(o.Name, o.Value)
	}
	for _, r := range req.Raw {
		if ctl(r.Key) || ctl(r.Value) {
			t.Fatalf("raw line %s: %q carries a control character", r.Key, r.Value)
		}
		if err := pve.CheckRawKeyOn(node, r.Key); err != nil {
			t.Fatalf("raw key %s not kept by %s: %v", r.Key, node.Summary(), err)
		}
		if r.Key == "lxc.mount.entry" {
			if f := strings.Split(r.Value, " "); len(f) != 6 || f[4] != "0" || f[5] != "0" || strings.Contains(r.Value, "  ") {
				t.Fatalf("lxc.mount.entry %q is not six fstab fields", r.Value)
			}
		}
		if r.Key == pve.EnvKey {
			conf.Env = append(conf.Env, r.Value)
		} else {
			conf.Raw = append(conf.Raw, r)
		}
	}
	if _, err := pve.CreateArgs(100, "local:vztmpl/x.tar.zst", req.Options); err != nil {
		t.Fatalf("translated options make no pct command line: %v", err)
	}
	out, err := conf.Marshal()
	if err != nil {
		t.Fatalf("translated request cannot be written as a .conf: %v", err)
	}
	back, _, err := pve.ParseConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Sections != "" || len(back.Options) != len(conf.Options) || len(back.Env) != len(conf.Env) || len(back.Raw) != len(conf.Raw) {
		t.Fatalf(".conf of the request reads back differently:\n%s", out)
	}
}

// FuzzTranslate feeds arbitrary config.json bytes through bundle loading
// and translation.
func FuzzTranslate(f *testing.F) {
	base := bundle.DefaultSpec()
	base.Root.Readonly = false
	seed := func(mut func(s *specs.Spec)) {
		var s specs.Spec
		raw, _ := json.Marshal(base)
		_ = json.Unmarshal(raw, &s)
		mut(&s)
		data, err := json.Marshal(&s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, true)
	}
	seed(func(s *specs.Spec) {})
	seed(func(s *specs.Spec) { s.Hostname = "web\nlxc.hook.pre-start: /evil" })
	seed(func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "A=b\nlxc.apparmor.profile: unconfined") })
	seed(func(s *specs.Spec) { s.Process.Args = []string{"sh", "-c", "echo 'a b' \"c\"; x\ty"} })
	seed(func(s *specs.Spec) { s.Process.Cwd = "/srv\rx" })
	seed(func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Source: "data", Type: "bind", Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/f", Source: "file", Options: []string{"bind"}},
			specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "mode=1777"}})
	})
	seed(func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/d,mp=/etc", Source: "data,ro=0", Type: "bind"})
	})
	seed(func(s *specs.Spec) {
		s.Annotations = map[string]string{
			AnnotationStorage: "local\nx", AnnotationFeatures: "nesting=1,keyctl=1", AnnotationTags: "a;b",
			AnnotationTemplate: "local:vztmpl/x.tar.zst\n", AnnotationOSType: "debian",
		}
	})
	seed(func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30))}, Pids: &specs.LinuxPids{Limit: ptr(int64(64))}}
		s.Linux.Sysctl = map[string]string{"kernel.shmmax": "1\nlxc.hook.mount: x", "net.ipv4.ip_forward": "1"}
	})
	seed(func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 10}}
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Process.ApparmorProfile = "x\ny"
	})
	// containerd's shape: file binds, /dev/shm, /dev/mqueue, a secret,
	// destinations crossing the image's symlinks, blanks in a source.
	seed(func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/etc/hosts", Source: "file", Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
			specs.Mount{Destination: "/etc/resolv.conf", Source: "file", Type: "bind", Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/dev/shm", Source: "data", Type: "bind", Options: []string{"rbind"}},
			specs.Mount{Destination: "/run/secrets/x", Source: "file", Type: "bind", Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/var/run/app", Source: "with space", Type: "bind", Options: []string{"rbind"}},
			specs.Mount{Destination: "/up/x y", Source: "data", Type: "bind", Options: []string{"rbind"}})
	})
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"}}`), false)
	dir := fuzzBundle(f)
	f.Fuzz(func(t *testing.T, data []byte, templateInit bool) {
		loadAndTranslate(t, dir, data, templateInit)
	})
}

// FuzzTranslateFields puts arbitrary strings into the spec fields that
// reach the .conf or pct's command line (hostname, args, env, cwd, mount
// source/destination/options, annotation and sysctl values), so the
// fuzzer need not discover JSON to hit them.
func FuzzTranslateFields(f *testing.F) {
	f.Add("web1", "sh", "A=b", "/", "/data", "data", "ro", AnnotationTags, "nexcage", "kernel.shmmax", "1")
	f.Add("a\nb", "sh\n-c", "A=\nB", "/x\n", "/d,mp=/etc", "data,ro=0", "size=1m\n", AnnotationStorage, "local\nlxc.x: y", "kernel.msgmax", "1\n")
	f.Add("h", "a b 'c'", "A=\x1b[0m", "/\x00", "/../../etc", "/etc", "mode=0777;x", AnnotationFeatures, "nesting=1,mount=nfs;cifs", "fs.mqueue.msg_max", "x")
	f.Add("h", "\"", "PATH=a b", "/tmp", "rel/x", "file", "bind", AnnotationTemplate, "local:vztmpl/a\u2028b.tar.zst", "kernel.sem", "1 2 3 4")
	dir := fuzzBundle(f)
	f.Fuzz(func(t *testing.T, hostname, arg, env, cwd, dest, src, opt, annoKey, annoVal, sysKey, sysVal string) {
		s := bundle.DefaultSpec()
		s.Root.Readonly = false
		s.Hostname = hostname
		s.Process.Args = []string{arg, arg}
		s.Process.Env = append(s.Process.Env, env)
		s.Process.Cwd = cwd
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: dest, Source: src, Type: "bind", Options: []string{"rbind", opt}},
			specs.Mount{Destination: dest, Type: "tmpfs", Source: "tmpfs", Options: []string{opt}})
		s.Annotations = map[string]string{annoKey: annoVal}
		s.Linux.Sysctl = map[string]string{sysKey: sysVal}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		loadAndTranslate(t, dir, data, false)
	})
}
