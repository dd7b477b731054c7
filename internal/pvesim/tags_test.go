package pvesim

import (
	"os"
	"testing"
)

// Tags are normalised on create and set (get_unique_tags); a tag outside
// the pve-tag format is refused.
func TestPctTagsNormalised(t *testing.T) {
	n, _ := initNode(t)
	if _, stderr, code := pct(t, n, "create", "160", debianTmpl, "--rootfs", "local:1", "--tags", "Web,db web;prod"); code != 0 {
		t.Fatal(stderr)
	}
	conf, err := n.loadConf(160)
	if err != nil || conf.Options["tags"] != "db;prod;web" {
		t.Fatalf("create tags %q %v", conf.Options["tags"], err)
	}
	if _, stderr, code := pct(t, n, "set", "160", "--tags", "B a;A"); code != 0 {
		t.Fatal(stderr)
	}
	if conf, _ := n.loadConf(160); conf.Options["tags"] != "a;b" {
		t.Errorf("set tags %q", conf.Options["tags"])
	}
	_, stderr, code := pct(t, n, "set", "160", "--tags", "ok;-bad")
	if want := "400 Parameter verification failed.\ntags: invalid format - invalid characters in tag\n\npct set <vmid> [OPTIONS]\n"; code != 255 || stderr != want {
		t.Errorf("bad tag: %d %q", code, stderr)
	}
}

// destroy frees only the volumes the config names unless
// --destroy-unreferenced-disks 1 is given.
func TestPctDestroyUnreferencedDisks(t *testing.T) {
	n, root := initNode(t)
	images := root + "/var/lib/vz/images/170"
	for _, d := range []string{"vm-170-disk-0.raw", "vm-170-disk-1.raw"} {
		if err := os.MkdirAll(images+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := "memory: 64\nrootfs: local:170/vm-170-disk-0.raw,size=1G\n"
	for _, tc := range []struct {
		args []string
		left bool
	}{
		{[]string{"destroy", "170"}, true},
		{[]string{"destroy", "170", "--destroy-unreferenced-disks", "0"}, true},
		{[]string{"destroy", "170", "--destroy-unreferenced-disks", "1"}, false},
	} {
		if err := os.MkdirAll(images+"/vm-170-disk-0.raw", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.ConfPath(170), []byte(conf), 0o640); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := pct(t, n, tc.args...); code != 0 {
			t.Fatalf("%v: %s", tc.args, stderr)
		}
		if _, err := os.Stat(images + "/vm-170-disk-0.raw"); err == nil {
			t.Errorf("%v: referenced volume left", tc.args)
		}
		_, err := os.Stat(images + "/vm-170-disk-1.raw")
		if left := err == nil; left != tc.left {
			t.Errorf("%v: unreferenced volume left = %v", tc.args, left)
		}
		if _, err := os.Stat(n.ConfPath(170)); err == nil {
			t.Errorf("%v: config left", tc.args)
		}
	}
	if _, err := os.Stat(images); err == nil {
		t.Error("images/170 left")
	}
}
