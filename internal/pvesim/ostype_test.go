package pvesim

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetectOSType(t *testing.T) {
	type file struct{ path, content string }
	type link struct{ path, target string }
	cases := []struct {
		name    string
		files   []file
		links   []link
		dirs    []string
		want    string
		wantErr string
		warn    string
	}{
		{name: "debian os-release", files: []file{{"etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"}}, want: "debian"},
		{name: "ubuntu quoted", files: []file{{"etc/os-release", `ID="ubuntu"` + "\n"}}, want: "ubuntu"},
		{name: "alpine single quotes", files: []file{{"etc/os-release", "ID='alpine'\n"}}, want: "alpine"},
		{name: "usr/lib fallback", files: []file{{"usr/lib/os-release", "ID=fedora\n"}}, want: "fedora"},
		{name: "relative symlink", files: []file{{"usr/lib/os-release", "ID=devuan\n"}}, links: []link{{"etc/os-release", "../usr/lib/os-release"}}, want: "devuan"},
		// An absolute link is resolved inside the container, as in
		// Proxmox's chroot, never on the host.
		{name: "absolute symlink", files: []file{{"usr/lib/os-release", "ID=centos\n"}}, links: []link{{"etc/os-release", "/usr/lib/os-release"}}, want: "centos"},
		{name: "escaping symlink stays inside", files: []file{{"usr/lib/os-release", "ID=gentoo\n"}}, links: []link{{"etc/os-release", "../../../../../../usr/lib/os-release"}}, want: "gentoo"},
		{name: "alias opensuse-leap", files: []file{{"etc/os-release", "ID=opensuse-leap\n"}}, want: "opensuse"},
		{name: "alias arch", files: []file{{"etc/os-release", "ID=arch\n"}}, want: "archlinux"},
		{name: "alias sles", files: []file{{"etc/os-release", "ID=sles\n"}}, want: "opensuse"},
		{name: "nixos", files: []file{{"etc/os-release", "ID=nixos\n"}}, want: "nixos"},
		{name: "openEuler alias", files: []file{{"etc/os-release", "ID=openEuler\n"}}, want: "openeuler"},
		{name: "unknown id falls back to debian_version", files: []file{{"etc/os-release", "ID=raspbian\n"}, {"etc/debian_version", "12.1\n"}}, want: "debian", warn: "unknown ID 'raspbian' in /etc/os-release file, trying fallback detection\n"},
		{name: "lsb-release ubuntu", files: []file{{"etc/lsb-release", "DISTRIB_ID=Ubuntu\n"}, {"etc/debian_version", "x"}}, want: "ubuntu"},
		{name: "alpine-release", files: []file{{"etc/alpine-release", "3.22.0\n"}}, want: "alpine"},
		{name: "redhat-release", files: []file{{"etc/redhat-release", "x"}}, want: "centos"},
		{name: "SuSE-brand", files: []file{{"etc/SuSE-brand", "x"}}, want: "opensuse"},
		{name: "nix store", dirs: []string{"nix/store"}, want: "nixos"},
		{name: "unknown distro", files: []file{{"etc/os-release", "ID=plan9\n"}}, wantErr: "unable to detect OS distribution", warn: "unknown ID 'plan9' in /etc/os-release file, trying fallback detection\n"},
		{name: "no id at all", files: []file{{"etc/os-release", "NAME=foo\n"}}, wantErr: "unable to detect OS distribution"},
		{name: "empty rootfs", want: "unmanaged", warn: "/etc/os-release file not found and autodetection failed, falling back to 'unmanaged'\n"},
		{name: "comment and spaces", files: []file{{"etc/os-release", "# ID=debian\n  ID=alpine\n"}}, want: "alpine"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			n := &Node{Root: t.TempDir(), Name: "pve", Stderr: &stderr}
			rootfs := filepath.Join(n.Root, "rootfs")
			os.MkdirAll(rootfs, 0o755)
			for _, f := range tc.files {
				p := filepath.Join(rootfs, f.path)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, l := range tc.links {
				p := filepath.Join(rootfs, l.path)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.Symlink(l.target, p); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range tc.dirs {
				os.MkdirAll(filepath.Join(rootfs, d), 0o755)
			}
			got, err := n.detectOSType(rootfs)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if stderr.String() != tc.warn {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.warn)
			}
		})
	}
}

func TestDetectOSTypeDoesNotReadHostFiles(t *testing.T) {
	// A link to the host's /etc/os-release must be read as the
	// container's own (missing) file.
	n := &Node{Root: t.TempDir(), Name: "pve", Stderr: &bytes.Buffer{}}
	rootfs := filepath.Join(n.Root, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	if _, err := os.Stat("/usr/lib/os-release"); err != nil {
		t.Fatalf("host has no /usr/lib/os-release to hide: %v", err)
	}
	os.Symlink("/usr/lib/os-release", filepath.Join(rootfs, "etc/os-release"))
	// A loop counts as absent, as Perl's -f sees it.
	os.Symlink("/etc/redhat-release", filepath.Join(rootfs, "etc/redhat-release"))
	got, err := n.detectOSType(rootfs)
	if err != nil || got != "unmanaged" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestParseOSRelease(t *testing.T) {
	vars := parseOSRelease("A=plain\nB=\"with \\\"quote\\\" and \\$\"\nC='single $x'\nD=un quoted\n#E=no\n bad line\n")
	want := map[string]string{"A": "plain", "B": `with "quote" and $`, "C": "single $x", "D": "un"}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %q, want %q", k, vars[k], v)
		}
	}
	if _, ok := vars["E"]; ok || strings.Contains(strings.Join(keys(vars), ","), "bad") {
		t.Errorf("unexpected vars %v", vars)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
