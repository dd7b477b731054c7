package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDebPackage builds the .deb as `make deb` does, inspects it, installs
// it on this machine with dpkg, runs nexcage from /usr/bin, follows
// docs/INSTALL.md (edit /etc/nexcage/config.json, nexcage health), and
// purges it again, checking that nothing is left behind.
//
// It installs into the real /usr and /etc, so it refuses to run where
// nexcage is already installed or its paths exist (it would replace or
// purge someone's installation), and serialises with other runs of itself
// through a lock file.
func TestDebPackage(t *testing.T) {
	lockDebTest(t)
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "nexcage").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("nexcage is already installed on this machine (%s); this test installs and purges the package, "+
			"so it refuses to touch an existing installation: remove it first (dpkg -P nexcage)", out)
	}
	for _, p := range []string{"/usr/bin/nexcage", "/usr/bin/nexcage-core", "/etc/nexcage", "/var/lib/nexcage", "/var/log/nexcage"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists but the nexcage package is not installed; this test would overwrite or purge it: move it away first", p)
		}
	}

	// Build with the same program as `make deb`.
	tmp := t.TempDir()
	builder := filepath.Join(tmp, "nexcage-deb")
	debRun(t, moduleRoot(t), "go", "build", "-o", builder, "./cmd/nexcage-deb")
	deb := strings.TrimSpace(debRun(t, moduleRoot(t), builder, "-src", moduleRoot(t), "-out", filepath.Join(tmp, "out")))
	base := filepath.Base(deb)
	if !strings.HasPrefix(base, "nexcage_") || !strings.HasSuffix(base, "_amd64.deb") {
		t.Fatalf("package file name %q, want nexcage_<version>_amd64.deb", base)
	}
	version := strings.TrimSuffix(strings.TrimPrefix(base, "nexcage_"), "_amd64.deb")

	// Control data.
	info := debRun(t, "", "dpkg-deb", "-I", deb)
	for _, want := range []string{"Package: nexcage", "Version: " + version, "Architecture: amd64",
		"Recommends: runc, crun, lxc-pve | lxc", "Section: admin", "conffiles", "postrm"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	conffiles := debRun(t, "", "dpkg-deb", "--info", deb, "conffiles")
	if !strings.Contains(conffiles, "/etc/nexcage/config.json") || !strings.Contains(conffiles, "/etc/logrotate.d/nexcage") {
		t.Errorf("conffiles: %q", conffiles)
	}

	// Contents.
	var files []string
	for _, line := range strings.Split(debRun(t, "", "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || strings.HasPrefix(f[0], "d") {
			continue
		}
		files = append(files, strings.TrimPrefix(f[5], "."))
	}
	has := map[string]bool{}
	for _, f := range files {
		has[f] = true
		if strings.Contains(f, "pvesim") || strings.HasSuffix(f, "/pct") {
			t.Errorf("the package contains %s (pvesim is test infrastructure)", f)
		}
	}
	for _, want := range []string{"/usr/bin/nexcage", "/usr/bin/nexcage-core", "/etc/nexcage/config.json", "/etc/logrotate.d/nexcage",
		"/usr/share/man/man8/nexcage.8.gz", "/usr/share/man/man8/nexcage-create.8.gz", "/usr/share/man/man8/nexcage-run.8.gz",
		"/usr/share/man/man8/nexcage-health.8.gz",
		"/usr/share/bash-completion/completions/nexcage", "/usr/share/zsh/vendor-completions/_nexcage",
		"/usr/share/fish/vendor_completions.d/nexcage.fish",
		"/usr/share/doc/nexcage/copyright", "/usr/share/doc/nexcage/CONFIG.md", "/usr/share/doc/nexcage/INSTALL.md"} {
		if !has[want] {
			t.Errorf("package lacks %s; it has %v", want, files)
		}
	}

	// Install (docs/INSTALL.md step 1).
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "nexcage").Output(); err == nil && len(out) > 0 && !strings.Contains(string(out), "not-installed") {
			dpkg(t, "-P", "nexcage")
		}
	})
	dpkg(t, "-i", deb)
	if st := debRun(t, "", "dpkg-query", "-W", "-f", "${Status} ${Version}", "nexcage"); st != "install ok installed "+version {
		t.Errorf("dpkg-query: %q", st)
	}
	if fi, err := os.Stat("/usr/bin/nexcage"); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("/usr/bin/nexcage: %v %v", fi, err)
	}
	if out, _ := exec.Command("file", "-L", "/usr/bin/nexcage").Output(); len(out) > 0 && !strings.Contains(string(out), "statically linked") {
		t.Errorf("/usr/bin/nexcage is not static: %s", out)
	}
	// The bash completion script parses; man finds the pages.
	debRun(t, "", "bash", "-n", "/usr/share/bash-completion/completions/nexcage")
	if out, err := exec.Command("man", "-w", "8", "nexcage-create").CombinedOutput(); err != nil || !strings.Contains(string(out), "/usr/share/man/man8/nexcage-create.8.gz") {
		t.Errorf("man -w 8 nexcage-create: %v %s", err, out)
	}

	// Run from /usr/bin, with the installed config and a clean environment.
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + tmp}
	state := filepath.Join(tmp, "state")
	nx := func(args ...string) (int, string, string) {
		cmd := exec.Command("/usr/bin/nexcage", args...)
		cmd.Env, cmd.Dir = env, tmp
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("/usr/bin/nexcage %v: %v", args, err)
		}
		return code, stdout.String(), stderr.String()
	}
	code, out, stderr := nx("version")
	for _, want := range []string{"nexcage version " + version, "spec: 1.3.0", "runc", "crun"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("nexcage version: exit %d, lacks %q:\n%s%s", code, want, out, stderr)
		}
	}

	// docs/INSTALL.md step 3: nexcage health. Not a Proxmox host: exit 1,
	// naming the failing checks.
	code, out, _ = nx("--root", state, "health")
	if code != 1 {
		t.Errorf("nexcage health: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"PASS  config            /etc/nexcage/config.json parsed", "FAIL  pct", "FAIL  etc-pve",
		"FAIL  storage", "FAIL  bridge", "PASS  runc", "PASS  crun"} {
		if !strings.Contains(out, want) {
			t.Errorf("nexcage health output lacks %q:\n%s", want, out)
		}
	}

	// docs/INSTALL.md step 2: edit /etc/nexcage/config.json; health reads
	// the edit.
	editConfig(t, "/etc/nexcage/config.json", func(c map[string]any) {
		c["proxmox"].(map[string]any)["node"] = "pve-e2e"
		c["network"].(map[string]any)["bridge"] = "vmbr42"
	})
	code, out, _ = nx("--root", state, "health", "--format", "json")
	var r healthReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 {
		t.Fatalf("health --format json: exit %d %v\n%s", code, err, out)
	}
	for _, c := range r.Checks {
		if c.Name == "bridge" && !strings.Contains(c.Detail, `"vmbr42"`) {
			t.Errorf("health did not read the edited config: bridge %q", c.Detail)
		}
	}

	// Remove: the edited conffile stays; purge removes it and the rest.
	dpkg(t, "-r", "nexcage")
	if _, err := os.Stat("/usr/bin/nexcage"); err == nil {
		t.Error("/usr/bin/nexcage left after dpkg -r")
	}
	if data, err := os.ReadFile("/etc/nexcage/config.json"); err != nil || !strings.Contains(string(data), "pve-e2e") {
		t.Errorf("dpkg -r must keep the edited conffile: %v", err)
	}
	// A log file written with runtime.log_path goes on purge too.
	if err := os.MkdirAll("/var/log/nexcage", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/var/log/nexcage/nexcage.log", []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg(t, "-P", "nexcage")
	for _, f := range append(files, "/etc/nexcage", "/usr/share/doc/nexcage", "/var/log/nexcage", "/var/lib/nexcage") {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s left after dpkg -P", f)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "nexcage").Output(); err == nil && strings.Contains(string(out), " installed") {
		t.Errorf("still installed after purge: %s", out)
	}
}

// lockDebTest serialises this test across concurrent `go test` runs on
// the machine (it installs a real package).
func lockDebTest(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "nexcage-e2e-deb.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Minute, "the lock of another TestDebPackage run", func() bool {
		return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
	})
	t.Cleanup(func() { _ = f.Close() })
}

// dpkg runs dpkg with args, retrying while another dpkg holds its lock.
func dpkg(t *testing.T, args ...string) {
	t.Helper()
	var out []byte
	var err error
	Eventually(t, 3*time.Minute, "dpkg "+strings.Join(args, " "), func() bool {
		cmd := exec.Command("dpkg", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err = cmd.CombinedOutput()
		return err == nil || !strings.Contains(string(out), "lock")
	})
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// debRun runs a command in dir and returns its stdout, failing the test on
// error.
func debRun(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// editConfig rewrites a JSON config file through edit, as an admin would.
func editConfig(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	edit(c)
	if data, err = json.MarshalIndent(c, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
