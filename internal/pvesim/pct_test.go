package pvesim

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
	"github.com/nexcage/nexcage/internal/testutil"
)

// newPctNode returns a node on root with captured output.
func newPctNode(root, name string) (*Node, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &Node{Root: root, Name: name, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, &out, &errb
}

// pct runs one pct command line on a fresh output buffer.
func pct(t *testing.T, n *Node, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	m := *n
	m.Stdout, m.Stderr = &out, &errb
	code = m.Pct(args)
	return out.String(), errb.String(), code
}

// initNode prepares a simulated node whose template cache holds small
// busybox templates (plain .tar, quick to build): debian, alpine, and one
// with an os-release Proxmox cannot place.
func initNode(t *testing.T) (*Node, string) {
	t.Helper()
	root := t.TempDir()
	n, _, _ := newPctNode(root, "pve")
	for _, d := range []string{n.NodeLxcDir(), n.TemplateCacheDir(), filepath.Join(root, "var/lib/vz/images"), n.LockDir(), n.RunPveDir(), n.LxcPath()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("nodes/pve/lxc", filepath.Join(n.EtcPve(), "lxc")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.StorageCfgPath(), []byte(defaultStorageCfg(root)+
		"dir: tmplonly\n\tpath "+filepath.Join(root, "var/lib/tmplonly")+"\n\tcontent vztmpl,iso\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	testutil.BusyboxRootfs(t, rootfs)
	for name, osRelease := range map[string]string{
		"debian-test.tar": "ID=debian\nVERSION_ID=\"12\"\n",
		"alpine-test.tar": "ID=alpine\nVERSION_ID=3.22.0\n",
		"weird-test.tar":  "ID=weirdos\nVERSION_ID=1\n",
	} {
		if err := os.WriteFile(filepath.Join(rootfs, "etc/os-release"), []byte(osRelease), 0o644); err != nil {
			t.Fatal(err)
		}
		writeTemplateTar(t, rootfs, filepath.Join(n.TemplateCacheDir(), name))
	}
	return n, root
}

// writeTar archives dir into a plain tar file at dst.
func writeTemplateTar(t *testing.T, dir, dst string) {
	t.Helper()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

const (
	usageCreate = "pct create <vmid> <ostemplate> [OPTIONS]\n"
	debianTmpl  = "local:vztmpl/debian-test.tar"
	alpineTmpl  = "local:vztmpl/alpine-test.tar"
	weirdTmpl   = "local:vztmpl/weird-test.tar"
)

func TestPctArgumentErrors(t *testing.T) {
	n, _, _ := newPctNode(t.TempDir(), "pve")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown option", []string{"create", "100", "x", "--foo", "1"},
			"Unknown option: foo\n400 unable to parse option\n" + usageCreate},
		{"unknown option case-folded", []string{"create", "100", "x", "--FOO=1"},
			"Unknown option: foo\n400 unable to parse option\n" + usageCreate},
		{"two unknown options", []string{"start", "100", "--a", "--b"},
			"Unknown option: a\nUnknown option: b\n400 unable to parse option\npct start <vmid> [OPTIONS]\n"},
		{"ambiguous", []string{"create", "100", "x", "--c", "1"},
			"Option c is ambiguous (cmode, console, cores, cpulimit, cpuunits)\n400 unable to parse option\n" + usageCreate},
		{"missing value", []string{"create", "100", "x", "--memory"},
			"Option memory requires an argument\n400 unable to parse option\n" + usageCreate},
		{"not enough", []string{"create", "100"}, "400 not enough arguments\n" + usageCreate},
		{"too many", []string{"create", "100", "a", "b"}, "400 too many arguments\n" + usageCreate},
		{"list takes nothing", []string{"list", "x"}, "400 too many arguments\npct list \n"},
		{"bad boolean", []string{"create", "100", "x", "--start", "maybe"},
			"400 unable to parse boolean option\n" + usageCreate},
		{"boolean swallows vmid", []string{"destroy", "--purge", "100"},
			"400 not enough arguments\npct destroy <vmid> [OPTIONS]\n"},
		{"boolean swallows word", []string{"destroy", "100", "--purge", "x"},
			"400 unable to parse boolean option\npct destroy <vmid> [OPTIONS]\n"},
		{"vmid not a number", []string{"start", "abc"},
			"400 Parameter verification failed.\nvmid: type check ('integer') failed - got 'abc'\npct start <vmid> [OPTIONS]\n"},
		{"vmid too small", []string{"status", "99"},
			"400 Parameter verification failed.\nvmid: invalid format - value does not look like a valid VM ID\n\npct status <vmid> [OPTIONS]\n"},
		{"value checks", []string{"create", "abc", "x", "--memory", "8", "--cores", "0", "--net0", "bridge=vmbr0",
			"--mp0", "/a,mp=/b/../c", "--hostname", "a_b", "--features", "nesting=2", "--rootfs", "local:1,size=1X"},
			"400 Parameter verification failed.\n" +
				"cores: value must have a minimum value of 1\n" +
				"features: invalid format - format error\nfeatures.nesting: type check ('boolean') failed - got '2'\n\n" +
				"hostname: invalid format - value does not look like a valid DNS name\n\n" +
				"memory: value must have a minimum value of 16\n" +
				"mp0: invalid format - format error\nmp0.mp: invalid format - /b/../c contains illegal character sequences\n\n\n" +
				"net0: invalid format - format error\nnet0.name: property is missing and it is not optional\n\n" +
				"rootfs: invalid format - format error\nrootfs.size: invalid format - value does not look like a valid disk size: 1X\n\n\n" +
				"vmid: type check ('integer') failed - got 'abc'\n" + usageCreate},
		{"ip without prefix", []string{"create", "100", "x", "--net0", "name=eth0,ip=10.0.0.5"},
			"400 Parameter verification failed.\nnet0: invalid format - format error\nnet0.ip: invalid format - value does not look like a valid ipv4 network configuration\n\n\n" + usageCreate},
		{"unknown key in property string", []string{"create", "100", "x", "--net0", "name=eth0,foo=1"},
			"400 Parameter verification failed.\nnet0: invalid format - format error\nnet0.foo: property is not defined in schema and the schema does not allow additional properties\n\n" + usageCreate},
		{"cores too many", []string{"create", "100", "x", "--cores", "8193", "--cpuunits", "500001", "--cpulimit", "x"},
			"400 Parameter verification failed.\ncores: value must have a maximum value of 8192\ncpulimit: type check ('number') failed - got 'x'\ncpuunits: value must have a maximum value of 500000\n" + usageCreate},
		{"ostype enum", []string{"create", "100", "x", "--ostype", "windows"},
			"400 Parameter verification failed.\nostype: value 'windows' does not have a value in the enumeration 'debian, devuan, ubuntu, centos, fedora, opensuse, archlinux, alpine, gentoo, nixos, unmanaged'\n" + usageCreate},
		{"no command", nil, "ERROR: no command specified\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]\n"},
		{"unknown command", []string{"frobnicate", "100"}, "ERROR: unknown command 'pct frobnicate'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]\n       pct config <vmid> [OPTIONS]\n"},
		{"ambiguous command", []string{"st", "100"}, "ERROR: unknown command 'pct st'\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := pct(t, n, tc.args...)
			if code != 255 {
				t.Errorf("exit %d, want 255", code)
			}
			if !strings.HasPrefix(stderr, tc.want) {
				t.Errorf("stderr:\n%s\nwant prefix:\n%s", stderr, tc.want)
			}
		})
	}
}

func TestPctAbbreviationsAndForms(t *testing.T) {
	v := verbsFor(pvecfg.DefaultVersion)["create"]
	c, err := parseArgs(v, []string{"--MEM=64", "100", "-hostname", "web", "tmpl", "--unpriv", "--SWAP", "-5", "--start"}, func(string) {})
	if err == nil {
		t.Fatalf("swap -5 accepted: %+v", c)
	}
	_, err = parseArgs(v, []string{"--MEM=64", "100", "-hostname", "web", "tmpl", "--unpriv", "--swap", "0", "--start", "--", "x"}, func(string) {})
	if err == nil {
		t.Fatal("extra positional after -- accepted")
	}
	c, err = parseArgs(v, []string{"--MEM=64", "100", "-hostname", "web", "tmpl", "--unpriv", "--swap", "0", "--start"}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"memory": "64", "hostname": "web", "unprivileged": "1", "swap": "0", "start": "1"}
	for k, v := range want {
		if c.opts[k] != v {
			t.Errorf("%s = %q want %q", k, c.opts[k], v)
		}
	}
	if c.vmid != 100 || c.args["ostemplate"] != "tmpl" {
		t.Errorf("positionals %+v", c.args)
	}
	c, err = parseArgs(verbsFor(pvecfg.DefaultVersion)["exec"], []string{"100", "--", "ls", "-l", "/"}, func(string) {})
	if err != nil || strings.Join(c.extra, " ") != "ls -l /" {
		t.Fatalf("exec extra args: %v %v", c, err)
	}
	if name, ok := expandCommand("destr"); !ok || name != "destroy" {
		t.Error("command abbreviation")
	}
	c, err = parseArgs(verbsFor(pvecfg.DefaultVersion)["shutdown"], []string{"100", "--forcestop", "yes", "--timeout", "5"}, func(string) {})
	if err != nil || c.opts["forceStop"] != "1" || c.opts["timeout"] != "5" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestFaultSpec(t *testing.T) {
	spec := "create:boom {vmid}: x;pveam:download:500 no;pvesh:get:nope;start:a"
	cases := []struct{ tool, verb, want string }{
		{"pct", "create", "boom {vmid}: x"},
		{"pveam", "download", "500 no"},
		{"pvesh", "get", "nope"},
		{"pct", "start", "a"},
	}
	for _, c := range cases {
		if got, ok := lookupFault(spec, c.tool, c.verb); !ok || got != c.want {
			t.Errorf("%s %s: %q %v", c.tool, c.verb, got, ok)
		}
	}
	if _, ok := lookupFault(spec, "pct", "download"); ok {
		t.Error("pveam entry matched pct")
	}
	if _, ok := lookupFault("", "pct", "create"); ok {
		t.Error("empty spec matched")
	}
}

func TestPctFaultInjection(t *testing.T) {
	n, root := initNode(t)
	t.Setenv("PVESIM_FAIL", "create:unable to create CT {vmid} - injected")
	_, stderr, code := pct(t, n, "create", "100", debianTmpl)
	if code != 255 || stderr != "unable to create CT 100 - injected\n" {
		t.Fatalf("%d %q", code, stderr)
	}
	assertNoTrace(t, n, root, 100)
	// A usage error still wins over the fault.
	_, stderr, _ = pct(t, n, "create", "100")
	if !strings.HasPrefix(stderr, "400 not enough arguments") {
		t.Errorf("%q", stderr)
	}
}

// assertNoTrace checks that vmid left nothing behind.
func assertNoTrace(t *testing.T, n *Node, root string, vmid int) {
	t.Helper()
	list, err := pvecfg.ReadVMList(n.VMListPath())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := list.Lookup(vmid); ok {
		t.Errorf("vmid %d still in .vmlist", vmid)
	}
	if node := n.confNode(vmid); node != "" {
		t.Errorf("config of %d left on node %s", vmid, node)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/vz/images", strconv.Itoa(vmid))); err == nil {
		t.Errorf("volume directory of %d left behind", vmid)
	}
}

func statUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
