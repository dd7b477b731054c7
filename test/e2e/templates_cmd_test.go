package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// templateEntry is one entry of `nexcage templates list --format json`.
type templateEntry struct {
	VolID    string    `json:"volid"`
	File     string    `json:"file"`
	Source   string    `json:"source"`
	Form     string    `json:"form"`
	Size     int64     `json:"size"`
	LastUsed time.Time `json:"last_used"`
	Users    []string  `json:"users"`
}

func listTemplates(t *testing.T, n *Nexcage) []templateEntry {
	t.Helper()
	r := n.Must("templates", "list", "--format", "json")
	var ents []templateEntry
	if err := json.Unmarshal([]byte(r.Stdout), &ents); err != nil {
		t.Fatalf("templates list: not JSON: %v: %q", err, r.Stdout)
	}
	return ents
}

// entryFrom finds the entry whose source is src.
func entryFrom(ents []templateEntry, src string) (templateEntry, bool) {
	for _, e := range ents {
		if slices.Contains(strings.Split(e.Source, ", "), src) {
			return e, true
		}
	}
	return templateEntry{}, false
}

// TestTemplatesListPrune: `templates list` shows what nexcage placed in
// the cache with the containers using it; a bundle's packed template goes
// with its last container, an archive's stays cached (unused) until
// `templates prune`, which respects --older-than and --dry-run.
func TestTemplatesListPrune(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	if ents := listTemplates(t, n); len(ents) != 0 {
		t.Fatalf("fresh node: %+v", ents)
	}
	bundle, _ := seedBundle(t, []string{"sleep", "1000"})
	archive := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	if err := os.WriteFile(archive, tarTree(t, templateRootfs(t), true), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Must("create", "--bundle", bundle, "tl-bundle")
	n.CleanupContainer("tl-bundle")
	n.Must("create", "--name", "tl-path", "--image", archive)
	n.CleanupContainer("tl-path")

	ents := listTemplates(t, n)
	if len(ents) != 2 {
		t.Fatalf("want the packed bundle and the copied archive, got %+v", ents)
	}
	byBundle, ok := entryFrom(ents, bundle)
	if !ok {
		t.Fatalf("no entry from the bundle %s: %+v", bundle, ents)
	}
	if !slices.Equal(byBundle.Users, []string{"tl-bundle"}) || byBundle.Form != "bundle" || byBundle.Size <= 0 || byBundle.LastUsed.IsZero() ||
		!strings.HasPrefix(byBundle.VolID, "local:vztmpl/nexcage-") {
		t.Errorf("bundle entry: %+v", byBundle)
	}
	byPath, ok := entryFrom(ents, archive)
	if !ok || !slices.Equal(byPath.Users, []string{"tl-path"}) || byPath.Form != "path" || byPath.LastUsed.IsZero() {
		t.Errorf("archive entry: %+v (all: %+v)", byPath, ents)
	}
	table := n.Must("templates", "list").Stdout
	for _, want := range []string{"TEMPLATE", "SOURCE", "SIZE", "LAST USED", "USED BY", byPath.VolID, archive, "tl-path", bundle, "tl-bundle"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	// Nothing is pruned while containers use the templates.
	if r := n.Must("templates", "prune"); r.Stdout != "" {
		t.Errorf("prune removed used templates: %s", r)
	}

	n.Must("delete", "tl-bundle")
	n.Must("delete", "tl-path")
	ents = listTemplates(t, n)
	if len(ents) != 1 || ents[0].File != byPath.File || len(ents[0].Users) != 0 {
		t.Fatalf("after delete: want only the unused archive template, got %+v", ents)
	}
	if _, err := os.Stat(filepath.Join(e.cacheDir(), byBundle.File)); err == nil {
		t.Errorf("the bundle's packed template outlived its last container")
	}

	// Last used just now: not older than an hour.
	if r := n.Must("templates", "prune", "--older-than", "1h"); r.Stdout != "" {
		t.Errorf("prune --older-than 1h removed a template used just now: %s", r)
	}
	// Pretend it was last used two days ago (in its metadata, no sleeping).
	meta := filepath.Join(e.cacheDir(), byPath.File+".nexcage.json")
	var m map[string]any
	data, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	m["last_used"], m["created"] = past, past
	data, _ = json.Marshal(m)
	if err := os.WriteFile(meta, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := n.Must("templates", "prune", "--older-than", "3d"); r.Stdout != "" {
		t.Errorf("prune --older-than 3d removed a template used 2 days ago: %s", r)
	}
	r := n.Must("templates", "prune", "--older-than", "1d", "--dry-run")
	if !strings.HasPrefix(r.Stdout, "would remove "+byPath.VolID) {
		t.Errorf("prune --dry-run: %s", r)
	}
	if _, err := os.Stat(filepath.Join(e.cacheDir(), byPath.File)); err != nil {
		t.Fatal("--dry-run removed the template")
	}
	r = n.Must("templates", "prune", "--older-than", "1d")
	if !strings.HasPrefix(r.Stdout, "removed "+byPath.VolID) {
		t.Errorf("prune: %s", r)
	}
	if ents := listTemplates(t, n); len(ents) != 0 {
		t.Errorf("after prune: %+v", ents)
	}
	e.assertNothingLeft("end")
}
