package pve

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestAppendRawTextKeepsSections(t *testing.T) {
	raw := []RawLine{{"lxc.init.cmd", "/bin/sh -c x"}, {"lxc.environment.runtime", "A=1"}}
	for _, tc := range []struct{ name, in, want string }{
		{"main only", "arch: amd64\nhostname: a\n", "arch: amd64\nhostname: a\nlxc.init.cmd: /bin/sh -c x\nlxc.environment.runtime: A=1\n"},
		{"no final newline", "arch: amd64", "arch: amd64\nlxc.init.cmd: /bin/sh -c x\nlxc.environment.runtime: A=1\n"},
		{"empty", "", "lxc.init.cmd: /bin/sh -c x\nlxc.environment.runtime: A=1\n"},
		{
			"pending and snapshot",
			"#note%3A x\narch: amd64\nmemory:  512 \nlxc.cap.drop: \n\n[pve:pending]\nmemory: 1024\n\n[snap1]\narch: amd64\nsnaptime: 1\n",
			"#note%3A x\narch: amd64\nmemory:  512 \nlxc.cap.drop: \nlxc.init.cmd: /bin/sh -c x\nlxc.environment.runtime: A=1\n\n[pve:pending]\nmemory: 1024\n\n[snap1]\narch: amd64\nsnaptime: 1\n",
		},
		{
			"section without blank line",
			"arch: amd64\n[snap1]\narch: amd64\n",
			"arch: amd64\nlxc.init.cmd: /bin/sh -c x\nlxc.environment.runtime: A=1\n[snap1]\narch: amd64\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendRawText([]byte(tc.in), raw)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	for _, bad := range []RawLine{{"lxc.rootfs.path", "/x"}, {"lxc.init.cmd", "a\nlxc.hook.pre-start: /evil"}, {"hostname", "x"}} {
		if _, err := AppendRawText([]byte("arch: amd64\n"), []RawLine{bad}); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// confFixture is a lock directory and a .conf for VMID 100.
func confFixture(t *testing.T, content string, mode os.FileMode) (lockDir, conf string) {
	t.Helper()
	dir := t.TempDir()
	lockDir, conf = filepath.Join(dir, "run/lock/lxc"), filepath.Join(dir, "100.conf")
	if err := os.WriteFile(conf, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(conf, mode); err != nil {
		t.Fatal(err)
	}
	return lockDir, conf
}

func TestAppendRawLocked(t *testing.T) {
	orig := "arch: amd64\nhostname: a\n\n[snap]\narch: amd64\n"
	lockDir, conf := confFixture(t, orig, 0o640)
	raw := []RawLine{{"lxc.init.cmd", "/init"}}
	if err := AppendRawLocked(context.Background(), lockDir, conf, 100, raw, time.Second); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(conf)
	if string(data) != "arch: amd64\nhostname: a\nlxc.init.cmd: /init\n\n[snap]\narch: amd64\n" {
		t.Errorf("conf = %q", data)
	}
	if fi, _ := os.Stat(conf); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640 kept", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Dir(conf)); len(ents) != 2 { // the conf and run/
		t.Errorf("temp files left: %v", ents)
	}
	if _, err := os.Stat(ConfigLockPath(lockDir, 100)); err != nil {
		t.Errorf("lock file: %v", err)
	}
}

// TestAppendRawLockedWaitsForLock: while another writer holds Proxmox's
// config lock, the append waits, and gives up with a lock error after its
// bound; the file is unchanged. Released in time, the append goes on.
func TestAppendRawLockedWaitsForLock(t *testing.T) {
	orig := "arch: amd64\n"
	lockDir, conf := confFixture(t, orig, 0o640)
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	holder := flock.New(ConfigLockPath(lockDir, 100))
	if err := holder.Lock(); err != nil {
		t.Fatal(err)
	}
	raw := []RawLine{{"lxc.init.cmd", "/init"}}
	start := time.Now()
	err := AppendRawLocked(context.Background(), lockDir, conf, 100, raw, 200*time.Millisecond)
	if errs.KindOf(err) != errs.KindLocked || !strings.Contains(err.Error(), "pve-config-100.lock") {
		t.Fatalf("err = %v, want a lock timeout naming the lock file", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Errorf("gave up before its wait")
	}
	if data, _ := os.ReadFile(conf); string(data) != orig {
		t.Errorf("conf changed without the lock: %q", data)
	}
	done := make(chan error, 1)
	go func() { done <- AppendRawLocked(context.Background(), lockDir, conf, 100, raw, time.Minute) }()
	select {
	case err := <-done:
		t.Fatalf("append did not wait for the lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := holder.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(conf); string(data) != orig+"lxc.init.cmd: /init\n" {
		t.Errorf("conf = %q", data)
	}
}

func TestAppendRawLockedRefusesLockedConfig(t *testing.T) {
	orig := "arch: amd64\nlock: backup\n"
	lockDir, conf := confFixture(t, orig, 0o640)
	err := AppendRawLocked(context.Background(), lockDir, conf, 100, []RawLine{{"lxc.init.cmd", "/init"}}, time.Second)
	if errs.KindOf(err) != errs.KindLocked || !strings.Contains(err.Error(), "CT 100 is locked (backup)") {
		t.Fatalf("err = %v", err)
	}
	if data, _ := os.ReadFile(conf); string(data) != orig {
		t.Errorf("conf changed: %q", data)
	}
}

func TestOwnerRef(t *testing.T) {
	ref := "0123456789abcdef0123456789abcdef"
	for desc, want := range map[string]string{
		FormatOwnerRef(ref) + "\n":                  ref,
		"web server\n" + FormatOwnerRef(ref) + "\n": ref,
		"x; " + FormatOwnerRef(ref):                 ref,
		FormatOwnerRef(ref[:31]) + "\n":             "",
		FormatOwnerRef(ref) + "0\n":                 "",
		"my-nexcage-ref=" + ref + "\n":              "",
		"":                                          "",
		strings.ToUpper(FormatOwnerRef(ref)) + "\n": "",
	} {
		if got := OwnerRef(desc); got != want {
			t.Errorf("OwnerRef(%q) = %q, want %q", desc, got, want)
		}
	}
}

// FuzzAppendRawText appends raw lines to arbitrary .conf text: every
// byte of the original stays in order (the output is the original with
// the new lines inserted at one point), the sections are unchanged, the
// main section keeps its options and description, and the new lines are
// read back after the raw lines it had.
func FuzzAppendRawText(f *testing.F) {
	for _, s := range []string{
		"arch: amd64\nhostname: a\nlxc.cap.drop: \n",
		"#d%3A\nhostname: a\n\n[pve:pending]\nmemory: 64\n\n[snap1]\nhostname: b\n",
		"hostname: a", "", "\n\n", "[snap]\nx: 1\n", "a: b\r\n\r\n[s]\r\n", "garbage\n[pve:pending]\n",
	} {
		f.Add([]byte(s), "/bin/sh -c x")
	}
	f.Fuzz(func(t *testing.T, data []byte, value string) {
		raw := []RawLine{{"lxc.init.cmd", value}, {"lxc.environment.runtime", "A=1"}}
		out, err := AppendRawText(data, raw)
		if err != nil {
			return // a NUL byte or a value that does not fit on a line
		}
		add := "lxc.init.cmd: " + value + "\nlxc.environment.runtime: A=1\n"
		// out is data with add inserted at one point (and a newline
		// before it when the main section's last line had none).
		kept := false
		for i := strings.Index(string(out), add); i >= 0 && !kept; {
			head, tail := string(out[:i]), string(out[i+len(add):])
			kept = head+tail == string(data) || (strings.HasSuffix(head, "\n") && head[:len(head)-1]+tail == string(data))
			next := strings.Index(string(out[i+1:]), add)
			if next < 0 {
				break
			}
			i += 1 + next
		}
		if !kept {
			t.Fatalf("original bytes changed or lines not added:\nin  %q\nout %q", data, out)
		}
		before, _, _ := ParseConfig(data)
		after, _, err := ParseConfig(out)
		if err != nil {
			t.Fatal(err)
		}
		if after.Sections != before.Sections || after.Description != before.Description || !reflect.DeepEqual(after.Options, before.Options) {
			t.Fatalf("the config changed beyond the new lines:\n%#v\n%#v", before, after)
		}
		if len(after.Raw) != len(before.Raw)+1 || after.Raw[len(after.Raw)-1] != raw[0] ||
			len(after.Env) != len(before.Env)+1 || after.Env[len(after.Env)-1] != "A=1" {
			t.Fatalf("raw lines not read back last:\n%#v\n%#v", before, after)
		}
	})
}

// TestLockConfigRefusesUntrustedDir: a lock directory another user owns
// (they could replace the lock files and break the exclusion) is refused
// and nothing is created there; one below a sticky directory, like
// /run/lock/lxc, is made and used.
func TestLockConfigRefusesUntrustedDir(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 54321, 54321); err != nil {
		t.Fatal(err)
	}
	lockDir := filepath.Join(home, "lxc")
	_, err := LockConfig(context.Background(), lockDir, 100, time.Second)
	if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), "proxmox.lock_dir "+lockDir) ||
		!strings.Contains(err.Error(), "directory "+home+" is owned by uid 54321") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Lstat(lockDir); err == nil {
		t.Fatal("the lock directory was created")
	}
	sticky := filepath.Join(dir, "lock")
	if err := os.Mkdir(sticky, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	l, err := LockConfig(context.Background(), filepath.Join(sticky, "lxc"), 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}
