package cli

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/template"
)

func TestParseTemplates(t *testing.T) {
	cases := []struct {
		argv      []string
		sub       string
		format    string
		olderThan time.Duration
		dryRun    bool
	}{
		{[]string{"templates", "list"}, "list", "table", 0, false},
		{[]string{"templates", "list", "--format", "json"}, "list", "json", 0, false},
		{[]string{"--root", "/r", "templates", "list", "-f", "table"}, "list", "table", 0, false},
		{[]string{"templates", "prune"}, "prune", "", 0, false},
		{[]string{"templates", "prune", "--dry-run"}, "prune", "", 0, true},
		{[]string{"templates", "prune", "--older-than", "7d"}, "prune", "", 7 * 24 * time.Hour, false},
		{[]string{"templates", "prune", "--older-than", "90m", "--dry-run"}, "prune", "", 90 * time.Minute, true},
		{[]string{"templates", "prune", "--older-than=0"}, "prune", "", 0, false},
	}
	for _, tc := range cases {
		inv, err := Parse(tc.argv, io.Discard, io.Discard)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.argv, err)
		}
		if inv.Verb != "templates" || inv.Sub != tc.sub || inv.Format != tc.format || inv.OlderThan != tc.olderThan || inv.DryRun != tc.dryRun {
			t.Fatalf("Parse(%q) = verb %q sub %q format %q older %v dry %v", tc.argv, inv.Verb, inv.Sub, inv.Format, inv.OlderThan, inv.DryRun)
		}
	}
	for _, argv := range [][]string{
		{"templates"},
		{"templates", "frob"},
		{"templates", "list", "extra"},
		{"templates", "list", "--format", "yaml"},
		{"templates", "prune", "--older-than", "soon"},
		{"templates", "prune", "--older-than", "-1h"},
		{"templates", "prune", "--older-than", "-3d"},
		{"templates", "prune", "x"},
	} {
		_, err := Parse(argv, io.Discard, io.Discard)
		if errs.KindOf(err) != errs.KindUsage {
			t.Errorf("Parse(%q): want a usage error, got %v", argv, err)
		}
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "1d": 24 * time.Hour, "30d": 720 * time.Hour, "12h": 12 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "1.5d", "x", "-1s", "99999999d"} {
		if _, err := ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) succeeded", in)
		}
	}
}

// templatesEnv is a template storage "local" under a temp dir with one
// template nexcage placed (used by container c1 of the state root) and one
// unused.
func templatesEnv(t *testing.T) (cfg, root, cache string) {
	t.Helper()
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	cache = filepath.Join(dir, "vz", "template", "cache")
	for _, d := range []string{etc, filepath.Join(cache, ".nexcage", "nexcage-aaaa.tar.zst.refs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(etc, "storage.cfg"), "dir: local\n\tpath "+filepath.Join(dir, "vz")+"\n\tcontent vztmpl,rootdir\n")
	write(filepath.Join(cache, "nexcage-aaaa.tar.zst"), strings.Repeat("x", 3000))
	write(filepath.Join(cache, "nexcage-bbbb.tar.gz"), "yy")
	write(filepath.Join(cache, "official_1.0_amd64.tar.zst"), "zz") // not ours, unused: not listed
	meta := map[string]any{"file": "nexcage-aaaa.tar.zst", "placed": true, "last_used": "2020-01-02T03:04:05Z",
		"sources": []map[string]string{{"source": "/srv/app/bundle", "form": "bundle"}}}
	b, _ := json.Marshal(meta)
	write(filepath.Join(cache, "nexcage-aaaa.tar.zst.nexcage.json"), string(b))
	write(filepath.Join(cache, ".nexcage", "nexcage-aaaa.tar.zst.refs", "c1-0123456789ab"), "")
	root = filepath.Join(dir, "root")
	store, err := state.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(&state.Container{ID: "c1", Status: state.Created, Backend: "proxmox-lxc",
		Data: map[string]string{"template_ref": "c1-0123456789ab"}}); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "nexcage.json")
	write(cfg, `{"proxmox": {"node": "pve", "etc_pve": "`+etc+`"}, "storage": {"image_path": "`+filepath.Join(dir, "images")+`"}}`)
	return cfg, root, cache
}

func TestTemplatesListAndPrune(t *testing.T) {
	cfg, root, cache := templatesEnv(t)
	code, out, errOut := runApp(t, "--config", cfg, "--root", root, "templates", "list", "--format", "json")
	if code != 0 {
		t.Fatalf("templates list: exit %d: %s", code, errOut)
	}
	var ents []template.Entry
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		t.Fatalf("not JSON: %v: %q", err, out)
	}
	if len(ents) != 2 || ents[0].File != "nexcage-aaaa.tar.zst" || ents[1].File != "nexcage-bbbb.tar.gz" {
		t.Fatalf("entries: %+v", ents)
	}
	if e := ents[0]; e.Source != "/srv/app/bundle" || e.Size != 3000 || len(e.Users) != 1 || e.Users[0] != "c1" ||
		e.VolID != "local:vztmpl/nexcage-aaaa.tar.zst" || e.LastUsed.Year() != 2020 {
		t.Fatalf("first entry: %+v", e)
	}

	code, out, errOut = runApp(t, "--config", cfg, "--root", root, "templates", "list")
	if code != 0 {
		t.Fatalf("templates list: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TEMPLATE") ||
		!strings.Contains(lines[1], "/srv/app/bundle") || !strings.Contains(lines[1], "2.9KiB") || !strings.HasSuffix(lines[1], "c1") ||
		!strings.Contains(lines[2], "never") {
		t.Fatalf("table:\n%s", out)
	}

	code, out, _ = runApp(t, "--config", cfg, "--root", root, "templates", "prune", "--dry-run")
	if code != 0 || strings.TrimSpace(out) != "would remove local:vztmpl/nexcage-bbbb.tar.gz (2B)" {
		t.Fatalf("prune --dry-run: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(cache, "nexcage-bbbb.tar.gz")); err != nil {
		t.Fatal("dry run removed a template")
	}
	code, out, _ = runApp(t, "--config", cfg, "--root", root, "templates", "prune")
	if code != 0 || strings.TrimSpace(out) != "removed local:vztmpl/nexcage-bbbb.tar.gz (2B)" {
		t.Fatalf("prune: exit %d, %q", code, out)
	}
	for f, want := range map[string]bool{"nexcage-aaaa.tar.zst": true, "nexcage-bbbb.tar.gz": false, "official_1.0_amd64.tar.zst": true} {
		if _, err := os.Stat(filepath.Join(cache, f)); (err == nil) != want {
			t.Errorf("%s exists=%v after prune, want %v", f, err == nil, want)
		}
	}
}

func TestTemplatesBadStorage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "nexcage.json")
	if err := os.WriteFile(cfg, []byte(`{"proxmox": {"node": "pve", "etc_pve": "`+t.TempDir()+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runApp(t, "--config", cfg, "--root", t.TempDir(), "templates", "list")
	if code == 0 || out != "" || !strings.Contains(errOut, "storage.cfg") {
		t.Fatalf("templates list without storage.cfg: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
