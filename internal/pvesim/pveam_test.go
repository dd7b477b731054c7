package pvesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// toolNode returns an initialised node (templates are built once per
// test binary, see buildTemplate).
func toolNode(t *testing.T) *Node {
	t.Helper()
	n := testNode(t)
	if err := Init(n, false); err != nil {
		t.Fatal(err)
	}
	return n
}

func runPveam(n *Node, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	m := *n
	m.Stdout, m.Stderr = &out, &errb
	code := m.Pveam(args)
	return out.String(), errb.String(), code
}

func runPvesh(n *Node, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	m := *n
	m.Stdout, m.Stderr = &out, &errb
	code := m.Pvesh(args)
	return out.String(), errb.String(), code
}

const pveamUsageListing = `USAGE: pveam <COMMAND> [ARGS] [OPTIONS]
       pveam download <storage> <template>

       pveam available  [OPTIONS]
       pveam list <storage>
       pveam remove <template_path>
       pveam update 

       pveam help [<extra-args>] [OPTIONS]
`

func TestPveamGolden(t *testing.T) {
	n := toolNode(t)
	deb := "debian-12-standard_12.7-1_amd64.tar.zst"
	cases := []struct {
		name       string
		args       []string
		out, err   string
		code       int
		prepareFns []func()
	}{
		{name: "available", args: []string{"available"}, out: "" +
			"system          alpine-3.21-default_20241217_amd64.tar.xz\n" +
			"system          alpine-3.22-default_20250617_amd64.tar.xz\n" +
			"system          debian-11-standard_11.7-1_amd64.tar.zst\n" +
			"system          debian-12-standard_12.7-1_amd64.tar.zst\n" +
			"system          ubuntu-20.04-standard_20.04-1_amd64.tar.gz\n" +
			"system          ubuntu-22.04-standard_22.04-1_amd64.tar.zst\n" +
			"turnkeylinux    debian-12-turnkey-core_18.1-1_amd64.tar.gz\n"},
		{name: "available section", args: []string{"available", "--section", "turnkeylinux"},
			out: "turnkeylinux    debian-12-turnkey-core_18.1-1_amd64.tar.gz\n"},
		{name: "bad section", args: []string{"available", "--section", "mail"}, code: 255,
			err: "400 Parameter verification failed.\nsection: value 'mail' does not have a value in the enumeration 'system, turnkeylinux'\npveam available  [OPTIONS]\n"},
		{name: "empty list", args: []string{"list", "local"},
			out: "NAME                                                         SIZE  \n"},
		{name: "unknown template", args: []string{"download", "local", "nope.tar.zst"}, code: 255,
			err: "400 Parameter verification failed.\ntemplate: no such template\npveam download <storage> <template>\n"},
		{name: "missing argument", args: []string{"download", "local"}, code: 255,
			err: "400 not enough arguments\npveam download <storage> <template>\n"},
		{name: "too many", args: []string{"list", "local", "x"}, code: 255,
			err: "400 too many arguments\npveam list <storage>\n"},
		{name: "unknown storage download", args: []string{"download", "nosuch", deb}, code: 255,
			err: "storage 'nosuch' does not exist\n"},
		{name: "list unknown storage", args: []string{"list", "nosuch"}, code: 255,
			err: "Storage does not support templates!\n"},
		{name: "download", args: []string{"download", "local", deb},
			out: "starting template download from: file://" + filepath.Join(n.CatalogueDir(), deb) + "\n" +
				"target file: " + filepath.Join(n.TemplateCacheDir(), deb) + "\n" +
				"download finished\n"},
		{name: "abbreviated list", args: []string{"li", "local"},
			out: "NAME                                                         SIZE  \n" +
				"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst         " + sizeMB(t, filepath.Join(n.CatalogueDir(), deb)) + "MB\n"},
		{name: "update", args: []string{"update"}, out: "update successful\n"},
		{name: "no command", args: nil, code: 255, err: "ERROR: no command specified\n" + pveamUsageListing},
		{name: "unknown command", args: []string{"frob"}, code: 255, err: "ERROR: unknown command 'pveam frob'\n" + pveamUsageListing},
		{name: "unknown option", args: []string{"available", "--bogus"}, code: 255,
			err: "Unknown option: bogus\n400 unable to parse option\npveam available  [OPTIONS]\n"},
	}
	for _, tc := range cases {
		out, errOut, code := runPveam(n, tc.args...)
		if out != tc.out || errOut != tc.err || code != tc.code {
			t.Errorf("%s: pveam %v\n got (%d) stdout %q\n stderr %q\nwant (%d) stdout %q\n stderr %q",
				tc.name, tc.args, code, out, errOut, tc.code, tc.out, tc.err)
		}
	}
}

func sizeMB(t *testing.T, p string) string {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.2f", float64(st.Size())/(1024*1024))
}

func TestPveamDownloadIsIdempotentAndAtomic(t *testing.T) {
	n := toolNode(t)
	deb := "debian-12-standard_12.7-1_amd64.tar.zst"
	if _, e, code := runPveam(n, "download", "local", deb); code != 0 {
		t.Fatalf("download: %d %s", code, e)
	}
	out, _, code := runPveam(n, "download", "local", deb)
	if code != 0 || !strings.Contains(out, "file already exists ") || !strings.Contains(out, " - no need to download\ndownload finished\n") {
		t.Fatalf("second download: %d %q", code, out)
	}
	// A damaged copy is replaced; no temporary files are left behind.
	dst := filepath.Join(n.TemplateCacheDir(), deb)
	os.WriteFile(dst, []byte("garbage"), 0o644)
	if _, e, code := runPveam(n, "download", "local", deb); code != 0 {
		t.Fatalf("re-download: %d %s", code, e)
	}
	a, _ := os.ReadFile(dst)
	b, _ := os.ReadFile(filepath.Join(n.CatalogueDir(), deb))
	if !bytes.Equal(a, b) {
		t.Fatal("damaged template not replaced")
	}
	entries, _ := os.ReadDir(n.TemplateCacheDir())
	if len(entries) != 1 {
		t.Fatalf("template cache holds %d entries, want 1", len(entries))
	}
	// Remove takes it away again.
	if _, e, code := runPveam(n, "remove", "local:vztmpl/"+deb); code != 0 {
		t.Fatalf("remove: %d %s", code, e)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("template still present after remove")
	}
}

func TestPveamStorageWithoutTemplates(t *testing.T) {
	n := toolNode(t)
	cfg := "dir: local\n\tpath " + filepath.Join(n.Root, "var/lib/vz") + "\n\tcontent rootdir,images\n"
	os.WriteFile(n.StorageCfgPath(), []byte(cfg), 0o644)
	_, e, code := runPveam(n, "download", "local", "debian-12-standard_12.7-1_amd64.tar.zst")
	if code != 255 || e != "storage 'local' does not support templates\n" {
		t.Fatalf("%d %q", code, e)
	}
	_, e, code = runPveam(n, "list", "local")
	if code != 255 || e != "Storage does not support templates!\n" {
		t.Fatalf("%d %q", code, e)
	}
}

func TestPveamOffersExtraCatalogueFiles(t *testing.T) {
	n := toolNode(t)
	os.WriteFile(filepath.Join(n.CatalogueDir(), "custom-1.0-default_1_amd64.tar.gz"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(n.CatalogueDir(), "README"), []byte("x"), 0o644)
	out, _, _ := runPveam(n, "available", "--section", "system")
	if !strings.Contains(out, "system          custom-1.0-default_1_amd64.tar.gz\n") || strings.Contains(out, "README") {
		t.Fatalf("available: %q", out)
	}
}

func TestPveshGolden(t *testing.T) {
	n := toolNode(t)
	os.WriteFile(n.VMListPath(), []byte(`{"version":4,"ids":{"100":{"node":"pve","type":"lxc","version":1},"101":{"node":"pve2","type":"lxc","version":2},"103":{"node":"pve","type":"qemu","version":3}}}`), 0o644)
	cases := []struct {
		args     []string
		out, err string
		code     int
	}{
		{args: []string{"get", "/cluster/nextid"}, out: "102\n"},
		{args: []string{"get", "cluster/nextid", "--output-format", "json"}, out: "102\n"},
		{args: []string{"get", "/cluster/nextid", "--vmid", "104"}, out: "104\n"},
		{args: []string{"get", "/cluster/nextid", "--vmid", "103"}, code: 255,
			err: "400 Parameter verification failed.\nvmid: VM 103 already exists\npvesh get <api_path> [OPTIONS]\n"},
		{args: []string{"get", "/nodes/pve/lxc", "--output-format", "json"}, out: "[]\n"},
		{args: []string{"get", "/nodes/pve/lxc", "--output-format", "json-pretty"}, out: "[]\n"},
		{args: []string{"get", "/nodes/nosuch/lxc"}, code: 255,
			err: "hostname lookup 'nosuch' failed - failed to get address info for: nosuch: Name or service not known\n"},
		{args: []string{"get", "/foo/bar"}, code: 1, err: "No 'get' handler defined for '/foo/bar'\n"},
		{args: []string{"delete", "/cluster/nextid"}, code: 1, err: "No 'delete' handler defined for '/cluster/nextid'\n"},
		{args: []string{"create", "/nodes/pve/storage/local/oci-registry-pull"}, code: 255,
			err: "400 Parameter verification failed.\nreference: property is missing and it is not optional\npvesh create <api_path> [OPTIONS]\n"},
		{args: []string{"get", "/cluster/nextid", "--output-format", "xml"}, code: 255,
			err: "400 Parameter verification failed.\noutput-format: value 'xml' does not have a value in the enumeration 'text, json, json-pretty, yaml'\npvesh get <api_path> [OPTIONS]\n"},
	}
	for _, tc := range cases {
		out, errOut, code := runPvesh(n, tc.args...)
		if out != tc.out || errOut != tc.err || code != tc.code {
			t.Errorf("pvesh %v\n got (%d) stdout %q stderr %q\nwant (%d) stdout %q stderr %q",
				tc.args, code, out, errOut, tc.code, tc.out, tc.err)
		}
	}
}

func TestPveshOCIPullRefused(t *testing.T) {
	n := toolNode(t)
	_, errOut, code := runPvesh(n, "create", "/nodes/pve/storage/local/oci-registry-pull", "--reference", "docker.io/library/alpine:3.22")
	if code == 0 || !strings.Contains(errOut, "registry pulls are not available in the simulator") || !strings.Contains(errOut, "docker.io/library/alpine:3.22") {
		t.Fatalf("%d %q", code, errOut)
	}
	_, errOut, code = runPvesh(n, "create", "/nodes/pve/storage/local/oci-registry-pull", "/nodes/pve/storage/local/oci-registry-pull")
	if code == 0 {
		t.Fatalf("pull without --reference accepted: %q", errOut)
	}
}

func TestPveshLxcIndexLists(t *testing.T) {
	n := toolNode(t)
	os.WriteFile(n.VMListPath(), []byte(`{"version":2,"ids":{"100":{"node":"pve","type":"lxc","version":1},"101":{"node":"pve","type":"lxc","version":1}}}`), 0o644)
	os.MkdirAll(n.NodeLxcDir(), 0o755)
	os.WriteFile(n.ConfPath(100), []byte("hostname: web\nmemory: 256\nrootfs: local:100/vm-100-disk-0.raw,size=4G\nlock: backup\n"), 0o644)
	os.WriteFile(n.ConfPath(101), []byte("rootfs: local:101/vm-101-disk-0.raw,size=8G\n"), 0o644)
	out, errOut, code := runPvesh(n, "get", "/nodes/pve/lxc", "--output-format", "json")
	if code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("%v %q", err, out)
	}
	first, second := list[0], list[1]
	if first["vmid"] != float64(100) || first["name"] != "web" || first["status"] != "stopped" ||
		first["maxmem"] != float64(256<<20) || first["lock"] != "backup" || first["type"] != "lxc" {
		t.Errorf("first = %v", first)
	}
	if second["vmid"] != float64(101) || second["name"] != "CT101" || second["maxdisk"] != float64(8<<30) {
		t.Errorf("second = %v", second)
	}
	if _, ok := second["lock"]; ok {
		t.Errorf("unlocked CT has a lock key: %v", second)
	}
	pretty, _, _ := runPvesh(n, "get", "/nodes/pve/lxc", "--output-format", "json-pretty")
	if !strings.HasPrefix(pretty, "[\n   {\n      \"cpu\" : 0,\n") {
		t.Errorf("json-pretty layout: %q", pretty)
	}
	status, _, code := runPvesh(n, "get", "/nodes/pve/lxc/100/status/current", "--output-format", "json")
	if code != 0 || !strings.Contains(status, `"status":"stopped"`) || !strings.Contains(status, `"vmid":100`) {
		t.Errorf("status/current: %d %q", code, status)
	}
}
