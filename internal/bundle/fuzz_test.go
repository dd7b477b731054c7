package bundle

import (
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// FuzzLoad feeds arbitrary bytes as config.json of a bundle that has a
// rootfs directory. Every input is either refused with an invalid-bundle
// error that carries a *Error naming its check (and its field in the
// message), or accepted with the invariants later stages rely on: an
// existing absolute rootfs, absolute mount destinations, a non-empty
// program name, no control characters in the hostname. Nothing panics.
func FuzzLoad(f *testing.F) {
	good, err := json.Marshal(DefaultSpec())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"ociVersion":"2.0.0"}`, `{"ociVersion":"1.0.2"}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0.2","root":{"path":"nope"}}`,
		`{"ociVersion":"1.0.2","root":{"path":"file"}}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":[]}}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"rel"}}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"env":["A"]}}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"hostname":"a\nb"}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"mounts":[{"destination":"data","source":"/x","type":"bind"}]}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"mounts":[{"destination":"/d\n","source":"/x"}]}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"hooks":{"prestart":[{"path":"rel"}]}}`,
		`{"ociVersion":"1.0.2","root":{"path":"/"},"process":{"args":["a\u0000"]}}`,
		`{"ociVersion":1}`, `{"ociVersion":"1.0.2",`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":"x"},"linux":{"namespaces":7}}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"hooks":{"poststop":[{"path":"/x","args":"y"}],"other":1}}`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{"a":1}}`,
		`{"OCIVERSION":"1.0.2","Root":{"PATH":"rootfs"},"process":{"ARGS":["sh"]}}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &loader{dir: dir}
		b, err := l.load(data)
		// Verify must reach the same verdict, except that it does not see
		// a type error outside the fields the checks read: where Load
		// reports one, Verify may accept or stop at another check.
		v, verr := (&loader{dir: dir}).verify(data)
		switch {
		case err == nil && verr != nil:
			t.Fatalf("Load accepts, Verify refuses: %v", verr)
		case err != nil && checkOf(err) != CheckJSON && (verr == nil || err.Error() != verr.Error()):
			t.Fatalf("Load and Verify differ:\n%v\n%v", err, verr)
		case verr != nil && errs.KindOf(verr) != errs.KindInvalidBundle:
			t.Fatalf("Verify's error kind %v, want invalid-bundle: %v", errs.KindOf(verr), verr)
		case err == nil && (v.OCIVersion != b.Spec.Version || strings.Join(v.Warnings, "|") != strings.Join(b.Warnings, "|")):
			t.Fatalf("Verify tells %q %q, Load %q %q", v.OCIVersion, v.Warnings, b.Spec.Version, b.Warnings)
		}
		if err != nil {
			if k := errs.KindOf(err); k != errs.KindInvalidBundle {
				t.Fatalf("error kind %v, want invalid-bundle: %v", k, err)
			}
			var be *Error
			if !errors.As(err, &be) || be.Check == "" {
				t.Fatalf("error carries no *bundle.Error with a check: %v", err)
			}
			if be.Field != "" && !strings.Contains(err.Error(), be.Field) {
				t.Fatalf("error %q does not name field %q", err, be.Field)
			}
			return
		}
		if !filepath.IsAbs(b.Rootfs) {
			t.Fatalf("rootfs %q is not absolute", b.Rootfs)
		}
		if fi, err := os.Stat(b.Rootfs); err != nil || !fi.IsDir() {
			t.Fatalf("rootfs %q is not a directory: %v", b.Rootfs, err)
		}
		s := b.Spec
		if s.Process != nil && (len(s.Process.Args) == 0 || s.Process.Args[0] == "") {
			t.Fatalf("accepted a process without a program: %q", s.Process.Args)
		}
		if strings.ContainsFunc(s.Hostname, isControl) {
			t.Fatalf("accepted hostname %q", s.Hostname)
		}
		for i, m := range s.Mounts {
			if !path.IsAbs(m.Destination) {
				t.Fatalf("mounts[%d].destination %q not absolute after load", i, m.Destination)
			}
		}
	})
}

// checkOf is the Check of a bundle error, "" for another error.
func checkOf(err error) Check {
	var be *Error
	if errors.As(err, &be) {
		return be.Check
	}
	return ""
}
