package pvesim

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitCreatesNode(t *testing.T) {
	n := testNode(t)
	if err := Init(n, false); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{n.NodeLxcDir(), n.TemplateCacheDir(), n.LxcPath(), n.LockDir(), n.RunPveDir(), n.CatalogueDir()} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(n.EtcPve(), "lxc")); err != nil || l != "nodes/pve/lxc" {
		t.Errorf("etc/pve/lxc -> %q, %v", l, err)
	}
	cfg, _ := os.ReadFile(n.StorageCfgPath())
	want := "dir: local\n\tpath " + n.Root + "/var/lib/vz\n\tcontent iso,vztmpl,backup,rootdir,images\n\n"
	if string(cfg) != want {
		t.Errorf("storage.cfg = %q, want %q", cfg, want)
	}
	var vmlist map[string]any
	b, _ := os.ReadFile(n.VMListPath())
	if err := json.Unmarshal(b, &vmlist); err != nil || vmlist["version"] == nil || vmlist["ids"] != nil {
		t.Errorf(".vmlist = %s, %v", b, err)
	}
	for _, e := range catalogue {
		if _, err := os.Stat(filepath.Join(n.CatalogueDir(), e.Name)); err != nil {
			t.Errorf("catalogue misses %s", e.Name)
		}
	}
	if entries, _ := os.ReadDir(n.TemplateCacheDir()); len(entries) != 0 {
		t.Errorf("template cache not empty without --with-templates: %v", entries)
	}
}

func TestInitIsIdempotentAndKeepsEdits(t *testing.T) {
	n := testNode(t)
	if err := Init(n, true); err != nil {
		t.Fatal(err)
	}
	custom := "dir: local\n\tpath /elsewhere\n\tcontent vztmpl\n"
	os.WriteFile(n.StorageCfgPath(), []byte(custom), 0o644)
	os.WriteFile(n.VMListPath(), []byte(`{"version":3,"ids":{"100":{"node":"pve","type":"lxc","version":1}}}`), 0o644)
	before, _ := os.ReadFile(filepath.Join(n.CatalogueDir(), catalogue[0].Name))
	if err := Init(n, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(n.StorageCfgPath()); string(b) != custom {
		t.Errorf("storage.cfg overwritten: %q", b)
	}
	if b, _ := os.ReadFile(n.VMListPath()); !strings.Contains(string(b), `"100"`) {
		t.Errorf(".vmlist overwritten: %s", b)
	}
	after, _ := os.ReadFile(filepath.Join(n.CatalogueDir(), catalogue[0].Name))
	if !bytes.Equal(before, after) {
		t.Error("catalogue template changed by a second init")
	}
	// A second node joins the same cluster root.
	n2 := &Node{Root: n.Root, Name: "pve2", Stderr: &bytes.Buffer{}}
	if err := Init(n2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n2.NodeLxcDir()); err != nil {
		t.Error(err)
	}
	if l, _ := os.Readlink(filepath.Join(n.EtcPve(), "lxc")); l != "nodes/pve/lxc" {
		t.Errorf("etc/pve/lxc changed to %q", l)
	}
}

func TestCatalogueIsReproducible(t *testing.T) {
	for _, e := range catalogue[:3] {
		a, err := buildTemplate(e)
		if err != nil {
			t.Fatal(err)
		}
		templateCacheMu.Lock()
		delete(templateCache, e.Name)
		templateCacheMu.Unlock()
		b, err := buildTemplate(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds", e.Name)
		}
	}
}

func TestInitWithTemplatesFillsCache(t *testing.T) {
	n := testNode(t)
	if err := Init(n, true); err != nil {
		t.Fatal(err)
	}
	for _, name := range defaultCachedTemplates {
		a, err1 := os.ReadFile(filepath.Join(n.TemplateCacheDir(), name))
		b, err2 := os.ReadFile(filepath.Join(n.CatalogueDir(), name))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: cache copy differs from catalogue (%v, %v)", name, err1, err2)
		}
	}
}

func TestInitRefusesHostRoot(t *testing.T) {
	for _, root := range []string{"", "/", "/."} {
		if err := Init(&Node{Root: root, Name: "pve"}, false); err == nil {
			t.Errorf("Init accepted root %q", root)
		}
	}
}

// Every catalogue template extracts into a tree that Proxmox's detection
// recognises as the distribution its name says.
func TestCatalogueTemplatesExtractAndDetect(t *testing.T) {
	n := testNode(t)
	if err := Init(n, false); err != nil {
		t.Fatal(err)
	}
	for _, e := range catalogue {
		t.Run(e.Name, func(t *testing.T) {
			rootfs := filepath.Join(n.Root, "x", e.Name)
			if err := n.extractTemplate(filepath.Join(n.CatalogueDir(), e.Name), rootfs, false); err != nil {
				t.Fatal(err)
			}
			got, err := n.detectOSType(rootfs)
			if err != nil || got != e.ID {
				t.Fatalf("detected %q, %v; want %q", got, err, e.ID)
			}
			for _, p := range []string{"bin/sh", "sbin/init", "bin/sleep", "bin/cat"} {
				if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
					t.Errorf("%s missing: %v", p, err)
				}
			}
			if l, _ := os.Readlink(filepath.Join(rootfs, "bin/sh")); l != "busybox" {
				t.Errorf("bin/sh -> %q", l)
			}
		})
	}
}
