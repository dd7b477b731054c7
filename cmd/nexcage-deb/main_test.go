package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/config"
)

func TestDebVersion(t *testing.T) {
	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for describe, want := range map[string]string{
		"f13b59b":                 "0.0.0~git20260301.f13b59b",
		"f13b59b-dirty":           "0.0.0~git20260301.f13b59b+dirty",
		"v1.2.3":                  "1.2.3",
		"v1.2.3-dirty":            "1.2.3+dirty",
		"v1.2.3-4-gf13b59b":       "1.2.3+git20260301.f13b59b",
		"v1.2.3-4-gf13b59b-dirty": "1.2.3+git20260301.f13b59b.dirty",
		"v1.2.3-rc1":              "1.2.3~rc1",
		"v1.2.3-rc1-2-gf13b59b":   "1.2.3~rc1+git20260301.f13b59b",
	} {
		if got := debVersion(gitInfo{describe: describe, commit: "f13b59b", date: date}); got != want {
			t.Errorf("%s: %s, want %s", describe, got, want)
		}
	}
}

// TestPackagedConfig: the conffile is the example config with the
// defaults: it loads without warnings, has every key the example has, and
// each value is the default except where a Debian/Proxmox path is spelt out.
func TestPackagedConfig(t *testing.T) {
	packaged, err := filepath.Abs("../../packaging/config.json")
	if err != nil {
		t.Fatal(err)
	}
	c, warnings, err := config.LoadFrom(packaged)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("packaging/config.json: %v %v", err, warnings)
	}
	keys := func(path string) []string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var tree map[string]any
		if err := json.Unmarshal(data, &tree); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var out []string
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			m, ok := v.(map[string]any)
			if !ok {
				out = append(out, prefix)
				return
			}
			for k, sub := range m {
				walk(prefix+"."+k, sub)
			}
		}
		walk("", tree)
		sort.Strings(out)
		return out
	}
	if a, b := keys("../../packaging/config.json"), keys("../../config.example.json"); !reflect.DeepEqual(a, b) {
		t.Errorf("keys differ:\npackaged %v\nexample  %v", a, b)
	}
	d := config.Default()
	d.Proxmox.PctPath, d.Proxmox.PveamPath, d.Proxmox.PveshPath = "/usr/sbin/pct", "/usr/sbin/pveam", "/usr/bin/pvesh"
	d.Proxmox.PveversionPath = "/usr/bin/pveversion"
	c.Path = ""
	c.Runtime.Routing, d.Runtime.Routing = nil, nil
	c.ContainerConfig.CrunNamePatterns, d.ContainerConfig.CrunNamePatterns = nil, nil
	c.Network.DNSServers, d.Network.DNSServers = nil, nil
	if !reflect.DeepEqual(c, d) {
		t.Errorf("packaged config differs from the defaults:\n%+v\n%+v", c, d)
	}
}
