package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// TestProxmoxContainerdShapedBundle is issue 13's "done when": on pvesim
// as PVE 8.4 and as 9.1, with a real test bridge (vmbr0 + dnsmasq in a
// namespace of the test), a bundle shaped like containerd's runs with its
// user and groups, cwd, env, file binds, /dev/shm, a destination under
// the image's /var/run -> /run, a net.* sysctl, noNewPrivileges, lo and
// eth0 up with a DHCP address, and /etc/resolv.conf from nexcage's config.
func TestProxmoxContainerdShapedBundle(t *testing.T) {
	for _, version := range []string{"8.4", "9.1"} {
		t.Run("pve"+version, func(t *testing.T) {
			e := newPveEnvWith(t, false, "", "PVESIM_PVE_VERSION="+version)
			up := e.sim("bridge-up")
			t.Cleanup(func() { e.sim("bridge-down", "--force") })
			var rec struct{ Netns, Address string }
			if err := json.Unmarshal([]byte(up), &rec); err != nil || rec.Netns == "" {
				t.Fatalf("bridge-up printed %q: %v", up, err)
			}
			// resolv.conf comes from network.dns_servers (an address
			// that only exists inside the test's namespace).
			data, err := os.ReadFile(e.config)
			if err != nil {
				t.Fatal(err)
			}
			cfg := strings.Replace(string(data), "{", `{"network": {"dns_servers": ["10.99.0.53"]},`, 1)
			if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}

			host := testutil.ContainerTempDir(t)
			hosts := filepath.Join(host, "hosts")
			secret := filepath.Join(host, "token")
			for p, s := range map[string]string{hosts: "10.99.0.7 shape-host\n", secret: "s3cr3t-token\n"} {
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			shared := filepath.Join(host, "shared")
			if err := os.Mkdir(shared, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(shared, "f"), []byte("under var run\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			script := `id; pwd; echo "FOO=$FOO"; cat /etc/hosts; cat /run/secrets/token; ` +
				`echo shm-ok > /dev/shm/probe && cat /dev/shm/probe; ` +
				`echo "port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"; grep NoNewPrivs /proc/self/status; ` +
				`ip -o link show lo; ip -o link show eth0; ip -o -4 addr show dev eth0; cat /etc/resolv.conf; cat /run/x/f`
			dir := t.TempDir()
			bundle := testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), []string{"sh", "-c", script}, func(s *specs.Spec) {
				s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 2000}}
				s.Process.Cwd = "/app"
				s.Process.Env = append(s.Process.Env, "FOO=bar baz")
				s.Process.NoNewPrivileges = true
				s.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
				s.Mounts = append(s.Mounts,
					specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"rbind", "rprivate", "ro"}},
					specs.Mount{Destination: "/run/secrets/token", Type: "bind", Source: secret, Options: []string{"rbind", "ro"}},
					specs.Mount{Destination: "/var/run/x", Type: "bind", Source: shared, Options: []string{"rbind", "ro"}},
				)
			})
			rootfs := filepath.Join(bundle, "rootfs")
			if err := os.RemoveAll(filepath.Join(rootfs, "var/run")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/run", filepath.Join(rootfs, "var/run")); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(rootfs, "app"), 0o755); err != nil {
				t.Fatal(err)
			}

			r := e.n.Run("run", "--bundle", bundle, "shape-"+strings.ReplaceAll(version, ".", ""))
			if r.Code != 0 {
				t.Fatalf("run: %s", r)
			}
			out := r.Stdout
			for _, want := range []string{
				"uid=1000 gid=1000 groups=1000,2000", "\n/app\n", "FOO=bar baz\n", "10.99.0.7 shape-host\n",
				"s3cr3t-token\n", "shm-ok\n", "port_start=0\n", "NoNewPrivs:\t1\n", "nameserver 10.99.0.53\n",
				"under var run\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for _, ifc := range []string{"lo", "eth0"} {
				if !regexp.MustCompile(`(?m)^\d+: ` + ifc + `[@:][^\n]*[<,]UP[,>]`).MatchString(out) {
					t.Errorf("%s is not UP:\n%s", ifc, out)
				}
			}
			if !regexp.MustCompile(`inet 10\.99\.0\.1\d\d/24`).MatchString(out) {
				t.Errorf("eth0 has no address from the bridge's DHCP pool (10.99.0.100-199):\n%s", out)
			}
		})
	}
}

// sim runs a pvesim tool of e's node and returns its stdout.
func (e *pveEnv) sim(args ...string) string {
	e.t.Helper()
	r := testutil.RunIn(e.t, "", PvesimBin(e.t), e.env, args...)
	if r.Code != 0 {
		e.t.Fatalf("%s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}
