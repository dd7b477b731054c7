// Package security holds nexcage's security checks that span the code
// base: no shell in exec paths, private state permissions, ids that
// cannot leave --root, no config injection through a real create, no
// config or program a local user can plant or redirect (config_test.go),
// an init socket only the container's init can use (initsock_test.go),
// private container content (content_test.go), and undo at every step of
// a create (undo_test.go). See docs/SECURITY.md.
package security

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/testutil"
)

// shellPatterns find a shell started by Go code: exec of sh/bash/dash/zsh
// (by name or path), an argv pair like "sh", "-c", or a "sh -c" string.
var shellPatterns = []*regexp.Regexp{
	regexp.MustCompile(`exec\.Command(Context)?\(\s*([A-Za-z_][A-Za-z0-9_.]*,\s*)?"(/usr)?(/bin/)?(ba|da|z|k)?sh"`),
	regexp.MustCompile(`"(/usr)?(/bin/)?(ba|da|z|k)?sh",\s*"-[a-z]*c[a-z]*"`),
	regexp.MustCompile(`\b(ba|da|z|k)?sh\s+-[a-z]*c\b`),
	regexp.MustCompile(`syscall\.Exec\(\s*"(/usr)?(/bin/)?(ba|da|z|k)?sh"`),
}

// shellAllowList is every non-test Go file allowed to match a pattern,
// with the reason. Keep it short: a shell with user input in its command
// string is an injection hole; pass argv instead.
var shellAllowList = map[string]string{
	// The benchmark's own busybox bundle: process.args run as the
	// container's init inside its rootfs (a fixed string, no input), never
	// on the host - what test files do, in a non-test file.
	"bench/proxmox.go": "process.args of the benchmark's container bundle",
	// The conformance harness (not nexcage) hands plain runc/crun to the
	// suite as RUNTIME through a generated wrapper script of fixed text:
	// quoted paths of its own temp dir, no outside input.
	"conformance/variants.go": "the comparison runtimes' RUNTIME wrapper script",
}

// TestNoShellInExecPaths greps every non-test Go source file of the
// module for a shell invocation and fails on any not in shellAllowList.
// Test files are left out: they run shells inside containers (process
// args of test bundles), never on the host with user input.
func TestNoShellInExecPaths(t *testing.T) {
	root := testutil.ModuleRoot(t)
	scanned := 0
	used := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "bin", "vendor", "dist":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		scanned++
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			for _, re := range shellPatterns {
				if re.MatchString(line) {
					if _, ok := shellAllowList[rel]; ok {
						used[rel] = true
						continue
					}
					t.Errorf("%s:%d runs a shell: %s\n(use exec with argv; if it truly needs a shell, add it to shellAllowList with the reason)", rel, n, strings.TrimSpace(line))
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 20 {
		t.Fatalf("scanned only %d Go files under %s", scanned, root)
	}
	for f := range shellAllowList {
		if !used[f] {
			t.Errorf("shellAllowList entry %s matches nothing any more; remove it", f)
		}
	}
}

// TestShellPatterns keeps the patterns honest: each known shell form is
// caught, and ordinary argv (a container's "sh" argument) is not.
func TestShellPatterns(t *testing.T) {
	bad := []string{
		`cmd := exec.Command("sh", "-c", script)`,
		`exec.CommandContext(ctx, "/bin/bash", "-c", s)`,
		`exec.Command("/bin/sh")`,
		`args := []string{"bash", "-ec", cmd}`,
		`run("sh -c " + userInput)`,
		`syscall.Exec("/bin/sh", argv, env)`,
		`unshare -m sh -c 'umount -l /sys/fs/cgroup/unified; exec crun "$@"'`,
	}
	good := []string{
		`s.Process.Args = []string{"sh"}`,
		`exec.Command(p.path, args...)`,
		`exec.CommandContext(ctx, "lxc-info", "-n", name, "-p")`,
		`"lxc.init.cmd": "sh",`,
		`shellQuote(arg)`,
	}
	match := func(s string) bool {
		for _, re := range shellPatterns {
			if re.MatchString(s) {
				return true
			}
		}
		return false
	}
	for _, s := range bad {
		if !match(s) {
			t.Errorf("not caught: %s", s)
		}
	}
	for _, s := range good {
		if match(s) {
			t.Errorf("false alarm: %s", s)
		}
	}
}
