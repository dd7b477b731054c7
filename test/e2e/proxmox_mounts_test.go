package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/testutil"
)

// containerdBundle is a bundle shaped like the ones containerd's CRI
// plugin writes: file binds of /etc/hosts, /etc/resolv.conf and
// /etc/hostname, /dev/shm and /dev/mqueue, a secret file under
// /run/secrets, and a directory bound at /var/run/x in an image where
// /var/run -> /run. host is the directory holding the sources.
func containerdBundle(t *testing.T, args []string) (bundle, host string) {
	t.Helper()
	dir := testutil.ContainerTempDir(t)
	host = filepath.Join(dir, "host")
	shared := filepath.Join(host, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	// The container is unprivileged: its root is an unmapped user on the
	// host, so the writable directory must be writable by anyone.
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"hosts":        "127.0.0.1 localhost\n10.9.8.7 db.example\n",
		"resolv.conf":  "nameserver 10.9.8.1\nsearch example\n",
		"hostname":     "ctr-host\n",
		"secret":       "s3cret\n",
		"shared/hello": "hello through /var/run\n",
	} {
		if err := os.WriteFile(filepath.Join(host, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bundle = testutil.BusyboxBundle(t, filepath.Join(dir, "bundle"), args, func(s *specs.Spec) {
		// bundle.DefaultSpec (runc spec) already has /dev/shm (tmpfs) and
		// /dev/mqueue, as containerd's default spec does.
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(host, "hosts"), Options: []string{"rbind", "rprivate", "rw"}},
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(host, "resolv.conf"), Options: []string{"rbind", "rprivate", "rw"}},
			specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: filepath.Join(host, "hostname"), Options: []string{"rbind", "rprivate", "ro"}},
			specs.Mount{Destination: "/run/secrets/x", Type: "bind", Source: filepath.Join(host, "secret"), Options: []string{"rbind", "rprivate", "ro"}},
			specs.Mount{Destination: "/var/run/x", Type: "bind", Source: shared, Options: []string{"rbind", "rprivate", "rw"}},
		)
	})
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"run", "var"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.RemoveAll(filepath.Join(rootfs, "var/run"))
	// As in Debian-based images.
	if err := os.Symlink("/run", filepath.Join(rootfs, "var/run")); err != nil {
		t.Fatal(err)
	}
	return bundle, host
}

// TestProxmoxContainerdMounts: a containerd-shaped bundle creates and runs
// on the Proxmox backend with mounts a real node accepts (proxmox-pct.md
// §9.5: no file source and no symlinked target in an mpN; /dev mounts
// after autodev), and every mount is there from inside the container.
func TestProxmoxContainerdMounts(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle, host := containerdBundle(t, []string{"sleep", "1000"})
	id := "ctrd-mounts"
	n.Must("create", "--name", id, "--image", bundle)
	n.CleanupContainer(id)
	vmid := e.vmidOf(id)
	conf, err := os.ReadFile(e.confPath(vmid))
	if err != nil {
		t.Fatal(err)
	}
	// No mpN for any of these: all are files, under /dev, or cross a
	// symlink in the image.
	if m := regexp.MustCompile(`(?m)^mp\d+:.*$`).FindAllString(string(conf), -1); len(m) > 0 {
		t.Errorf("%d.conf has mount points %q; a real node refuses file binds and symlinked targets there", vmid, m)
	}
	for _, want := range []string{
		"lxc.mount.entry: " + filepath.Join(host, "hosts") + " etc/hosts none rbind,create=file 0 0\n",
		"lxc.mount.entry: " + filepath.Join(host, "hostname") + " etc/hostname none rbind,ro,create=file 0 0\n",
		"lxc.mount.entry: " + filepath.Join(host, "secret") + " run/secrets/x none rbind,ro,create=file 0 0\n",
		// /var/run/x resolved inside the image to /run/x.
		"lxc.mount.entry: " + filepath.Join(host, "shared") + " run/x none rbind,create=dir 0 0\n",
		// /dev/shm and /dev/mqueue are mounted by the init helper under
		// its fresh /dev (TestProxmoxSpecMountsInOrder), not by LXC.
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("%d.conf lacks %q:\n%s", vmid, want, conf)
		}
	}
	n.Must("start", id)
	if s := stateOf(t, n, id); s.Status != "running" {
		t.Fatalf("after start: %+v", s)
	}
	inside := func(args ...string) (string, error) {
		return e.pctRun(append([]string{"exec", strconv.Itoa(vmid), "--"}, args...)...)
	}
	for path, want := range map[string]string{
		"/etc/hosts":       "127.0.0.1 localhost\n10.9.8.7 db.example\n",
		"/etc/resolv.conf": "nameserver 10.9.8.1\nsearch example\n",
		"/etc/hostname":    "ctr-host\n",
		"/run/secrets/x":   "s3cret\n",
		"/var/run/x/hello": "hello through /var/run\n",
		"/run/x/hello":     "hello through /var/run\n",
	} {
		if got, err := inside("cat", path); err != nil || got != want {
			t.Errorf("cat %s inside = %q, %v; want %q", path, got, err, want)
		}
	}
	if got, err := inside("sh", "-c", "echo shm-ok > /dev/shm/t && cat /dev/shm/t"); err != nil || got != "shm-ok\n" {
		t.Errorf("/dev/shm not writable: %q, %v", got, err)
	}
	mounts, err := inside("cat", "/proc/mounts")
	if err != nil {
		t.Fatalf("cat /proc/mounts: %v %s", err, mounts)
	}
	for _, re := range []string{`(?m)^\S+ /dev/shm tmpfs \S*nosuid,nodev,noexec`, `(?m)^\S+ /dev/mqueue mqueue `, `(?m)^\S+ /etc/hostname \S+ ro[,\s]`} {
		if !regexp.MustCompile(re).MatchString(mounts) {
			t.Errorf("/proc/mounts inside lacks %s:\n%s", re, mounts)
		}
	}
	if got, err := inside("sh", "-c", "echo x > /run/secrets/x"); err == nil {
		t.Errorf("read-only secret is writable: %q", got)
	}
	// The writable directory bind writes through to the host.
	if got, err := inside("sh", "-c", "echo from-inside > /var/run/x/new"); err != nil {
		t.Errorf("write to /var/run/x: %q, %v", got, err)
	} else if data, err := os.ReadFile(filepath.Join(host, "shared/new")); err != nil || string(data) != "from-inside\n" {
		t.Errorf("host sees %q, %v", data, err)
	}
	n.Must("delete", "--force", id)
}
