package bundle_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/testutil"
)

// makeBundle writes a bundle with an empty rootfs directory and the
// default spec changed by mutate; it returns the bundle directory.
func makeBundle(t *testing.T, mutate func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := bundle.DefaultSpec()
	if mutate != nil {
		mutate(s)
	}
	writeJSON(t, dir, s)
	return dir
}

func writeJSON(t *testing.T, dir string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, dir, string(data))
}

func writeRaw(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, bundle.ConfigFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantCheck asserts err is an invalid-bundle error for check and field
// whose text contains every one of parts.
func wantCheck(t *testing.T, err error, check bundle.Check, field string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded, want %s error", check)
	}
	if errs.KindOf(err) != errs.KindInvalidBundle {
		t.Errorf("kind = %v, want invalid-bundle (%v)", errs.KindOf(err), err)
	}
	var be *bundle.Error
	if !errors.As(err, &be) {
		t.Fatalf("error %v does not wrap *bundle.Error", err)
	}
	if be.Check != check || be.Field != field {
		t.Errorf("check/field = %s/%q, want %s/%q (%v)", be.Check, be.Field, check, field, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestLoadDefault(t *testing.T) {
	dir := makeBundle(t, nil)
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != dir || b.Rootfs != filepath.Join(dir, "rootfs") || len(b.Warnings) != 0 {
		t.Errorf("Load = %+v", b)
	}
	if b.Spec.Process.Args[0] != "sh" || b.Spec.Hostname != "runc" {
		t.Errorf("spec not parsed: %+v", b.Spec.Process)
	}
}

func TestLoadBusybox(t *testing.T) {
	dir := testutil.BusyboxBundle(t, t.TempDir(), []string{"echo", "hi"}, nil)
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.Rootfs, "bin", "busybox")); err != nil {
		t.Errorf("rootfs %s lacks busybox: %v", b.Rootfs, err)
	}
}

func TestRelativeBundleDir(t *testing.T) {
	dir := makeBundle(t, nil)
	t.Chdir(filepath.Dir(dir))
	b, err := bundle.Load(filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != dir {
		t.Errorf("Dir = %q, want %q", b.Dir, dir)
	}
	t.Chdir(dir)
	for _, arg := range []string{"", "."} {
		b, err = bundle.Load(arg)
		if err != nil {
			t.Fatal(err)
		}
		if b.Dir != dir {
			t.Errorf("Load(%q).Dir = %q, want %q", arg, b.Dir, dir)
		}
	}
}

func TestRootPaths(t *testing.T) {
	// root.path need not be "rootfs": relative elsewhere, nested, absolute.
	dir := t.TempDir()
	for _, d := range []string{"fs", "a/b/root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	outside := t.TempDir()
	for _, tc := range []struct{ path, want string }{
		{"fs", filepath.Join(dir, "fs")},
		{"./a/b/root/", filepath.Join(dir, "a/b/root")},
		{"a/../fs", filepath.Join(dir, "fs")},
		{outside, outside},
		{outside + "/", outside},
	} {
		s := bundle.DefaultSpec()
		s.Root.Path = tc.path
		writeJSON(t, dir, s)
		b, err := bundle.Load(dir)
		if err != nil {
			t.Errorf("root.path %q: %v", tc.path, err)
			continue
		}
		if b.Rootfs != tc.want {
			t.Errorf("root.path %q: Rootfs = %q, want %q", tc.path, b.Rootfs, tc.want)
		}
	}
}

func TestRelativeMountDestination(t *testing.T) {
	dir := makeBundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "data", Type: "bind", Source: "/tmp", Options: []string{"bind"}},
			specs.Mount{Destination: "./x/../y/", Type: "tmpfs", Source: "tmpfs"})
	})
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := len(b.Spec.Mounts)
	if got := b.Spec.Mounts[n-2].Destination; got != "/data" {
		t.Errorf("relative destination became %q, want /data", got)
	}
	if got := b.Spec.Mounts[n-1].Destination; got != "/y" {
		t.Errorf("relative destination became %q, want /y", got)
	}
	if len(b.Warnings) != 2 || !strings.Contains(b.Warnings[0], `mounts[7].destination "data" is relative`) {
		t.Errorf("warnings = %q", b.Warnings)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	// The runtime-spec says unknown properties must be ignored.
	dir := makeBundle(t, nil)
	writeRaw(t, dir, `{"ociVersion":"1.3.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"vendorThing":{"x":1}}`)
	if _, err := bundle.Load(dir); err != nil {
		t.Fatal(err)
	}
}

func TestNoProcess(t *testing.T) {
	// process is optional for create (only start needs it).
	dir := makeBundle(t, func(s *specs.Spec) { s.Process = nil })
	if _, err := bundle.Load(dir); err != nil {
		t.Fatal(err)
	}
}

func TestVersions(t *testing.T) {
	for _, v := range []string{"1.0.0", "1.0.2", "1.3.0", "1.0.2-dev", "1.1.0-rc.1", "1.2.0+build.5"} {
		dir := makeBundle(t, func(s *specs.Spec) { s.Version = v })
		if _, err := bundle.Load(dir); err != nil {
			t.Errorf("ociVersion %q: %v", v, err)
		}
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*specs.Spec)
		check  bundle.Check
		field  string
		parts  []string
	}{
		{"no version", func(s *specs.Spec) { s.Version = "" }, bundle.CheckOCIVersion, "ociVersion", []string{"missing"}},
		{"version 2", func(s *specs.Spec) { s.Version = "2.0.0" }, bundle.CheckOCIVersion, "ociVersion", []string{`"2.0.0"`}},
		{"version 0.x", func(s *specs.Spec) { s.Version = "0.5.0" }, bundle.CheckOCIVersion, "ociVersion", nil},
		{"version garbage", func(s *specs.Spec) { s.Version = "one" }, bundle.CheckOCIVersion, "ociVersion", nil},
		{"version short", func(s *specs.Spec) { s.Version = "1.0" }, bundle.CheckOCIVersion, "ociVersion", nil},
		{"no root", func(s *specs.Spec) { s.Root = nil }, bundle.CheckRoot, "root", []string{"missing"}},
		{"empty root.path", func(s *specs.Spec) { s.Root.Path = "" }, bundle.CheckRoot, "root.path", nil},
		{"missing rootfs", func(s *specs.Spec) { s.Root.Path = "nope" }, bundle.CheckRootPath, "root.path", []string{`"nope": no such directory`, "config.json"}},
		{"missing abs rootfs", func(s *specs.Spec) { s.Root.Path = "/nonexistent/nexcage/rootfs" }, bundle.CheckRootPath, "root.path", []string{"no such directory"}},
		{"rootfs is a file", func(s *specs.Spec) { s.Root.Path = "config.json" }, bundle.CheckRootPath, "root.path", []string{"not a directory"}},
		{"rootfs newline", func(s *specs.Spec) { s.Root.Path = "root\nfs" }, bundle.CheckRootPath, "root.path", []string{"newline"}},
		{"empty args", func(s *specs.Spec) { s.Process.Args = nil }, bundle.CheckProcessArgs, "process.args", []string{"at least one"}},
		{"empty program", func(s *specs.Spec) { s.Process.Args = []string{""} }, bundle.CheckProcessArgs, "process.args[0]", nil},
		{"NUL arg", func(s *specs.Spec) { s.Process.Args = []string{"sh", "a\x00b"} }, bundle.CheckProcessArgs, "process.args[1]", []string{"NUL"}},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "tmp" }, bundle.CheckProcessCwd, "process.cwd", nil},
		{"cwd newline", func(s *specs.Spec) { s.Process.Cwd = "/tmp\n" }, bundle.CheckProcessCwd, "process.cwd", nil},
		{"env no =", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "FOO") }, bundle.CheckProcessEnv, "process.env[2]", []string{"no '='"}},
		{"env empty key", func(s *specs.Spec) { s.Process.Env = []string{"=x"} }, bundle.CheckProcessEnv, "process.env[0]", nil},
		{"env newline key", func(s *specs.Spec) { s.Process.Env = []string{"A\nB=x"} }, bundle.CheckProcessEnv, "process.env[0]", nil},
		{"env NUL value", func(s *specs.Spec) { s.Process.Env = []string{"A=x\x00y"} }, bundle.CheckProcessEnv, "process.env[0]", nil},
		{"hostname control", func(s *specs.Spec) { s.Hostname = "a\nb" }, bundle.CheckHostname, "hostname", nil},
		{"hostname long", func(s *specs.Spec) { s.Hostname = strings.Repeat("h", 65) }, bundle.CheckHostname, "hostname", nil},
		{"mount no dest", func(s *specs.Spec) { s.Mounts[0].Destination = "" }, bundle.CheckMountDest, "mounts[0].destination", nil},
		{"mount dest newline", func(s *specs.Spec) { s.Mounts[1].Destination = "/dev\n" }, bundle.CheckMountDest, "mounts[1].destination", nil},
		{"mount source newline", func(s *specs.Spec) { s.Mounts[2].Source = "a\nb" }, bundle.CheckMountSource, "mounts[2].source", nil},
		{"mount option newline", func(s *specs.Spec) { s.Mounts[1].Options = []string{"ro\nx"} }, bundle.CheckMountSource, "mounts[1].options[0]", nil},
		{"mount type NUL", func(s *specs.Spec) { s.Mounts[1].Type = "tmp\x00fs" }, bundle.CheckMountSource, "mounts[1].type", nil},
		{"relative hook", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/true"}, {Path: "true"}}}
		}, bundle.CheckHookPath, "hooks.poststart[1].path", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeBundle(t, tc.mutate)
			_, err := bundle.Load(dir)
			wantCheck(t, err, tc.check, tc.field, append(tc.parts, "bundle "+dir)...)
			_, err = bundle.Verify(dir)
			wantCheck(t, err, tc.check, tc.field, append(tc.parts, "bundle "+dir)...)
		})
	}
}

// TestVerify: Verify tells what Load tells of a valid bundle (version,
// annotations, warnings), refuses a type error in a field the checks read
// as Load does, and does not see one in a field they do not read (the
// runtime it is for decodes the file itself).
func TestVerify(t *testing.T) {
	dir := makeBundle(t, func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
		s.Mounts[0].Destination = "proc"
	})
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.Dir != dir || v.OCIVersion != b.Spec.Version || v.Annotations["io.kubernetes.cri.container-type"] != "sandbox" ||
		len(v.Warnings) != 1 || v.Warnings[0] != b.Warnings[0] {
		t.Errorf("Verify = %+v, Load = %+v", v, b)
	}

	writeRaw(t, dir, `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":"sh"}}`)
	_, err = bundle.Load(dir)
	wantCheck(t, err, bundle.CheckJSON, "")
	_, err = bundle.Verify(dir)
	wantCheck(t, err, bundle.CheckJSON, "")

	writeRaw(t, dir, `{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":"yes"},"linux":{"namespaces":7}}`)
	_, err = bundle.Load(dir)
	wantCheck(t, err, bundle.CheckJSON, "")
	if _, err := bundle.Verify(dir); err != nil {
		t.Errorf("Verify refuses a type error in a field no check reads: %v", err)
	}
}

func TestInvalidFiles(t *testing.T) {
	t.Run("missing bundle", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		_, err := bundle.Load(dir)
		wantCheck(t, err, bundle.CheckBundleDir, "", "bundle "+dir+": no such directory")
	})
	t.Run("bundle is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := bundle.Load(f)
		wantCheck(t, err, bundle.CheckBundleDir, "", "not a directory")
	})
	t.Run("no config.json", func(t *testing.T) {
		dir := t.TempDir()
		_, err := bundle.Load(dir)
		wantCheck(t, err, bundle.CheckConfigFile, "", "config.json: no such file")
	})
	t.Run("config.json is a dir", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "config.json"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := bundle.Load(dir)
		wantCheck(t, err, bundle.CheckConfigFile, "", "not a regular file")
	})
	t.Run("too big", func(t *testing.T) {
		dir := makeBundle(t, nil)
		f, err := os.OpenFile(filepath.Join(dir, "config.json"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A sparse tail makes the file big without writing 16 MiB.
		if err := f.Truncate(bundle.MaxConfigSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		_, err = bundle.Load(dir)
		wantCheck(t, err, bundle.CheckConfigSize, "", "larger than")
	})
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "unexpected end of JSON input"},
		{"syntax", "{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"rootfs\",}\n}", "line 3, column 29"},
		{"trailing garbage", `{"ociVersion":"1.0.2"} x`, "after top-level value"},
		{"array", `[]`, "expected object, got array"},
		{"wrong type", "{\"ociVersion\": \"1.0.2\",\n \"process\": {\"args\": \"sh\"}}", "line 2, column"},
		{"wrong type path", `{"ociVersion": "1.0.2", "process": {"args": "sh"}}`, "process.args: expected array, got string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeBundle(t, nil)
			writeRaw(t, dir, tc.content)
			_, err := bundle.Load(dir)
			wantCheck(t, err, bundle.CheckJSON, "", "config.json", tc.want)
		})
	}
}
