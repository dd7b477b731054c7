// Package reliability proves that nexcage keeps nothing it should not:
// a corpus of bad inputs run through the built binary (each with its
// documented exit code, a message naming the field, and nothing left
// behind), an in-process soak with resource bounds, and fault cases
// against pvesim. See docs/RELIABILITY.md.
package reliability

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.RunMain(m)) }

// files lists every non-directory path under root, relative to it,
// sorted; a missing root has none.
func files(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// stateFiles lists the files under a state root (--root) but the
// Proxmox backend's cache of the node's version, a node fact that stays
// once a create succeeded (docs/PROXMOX.md, "Node version").
func stateFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, f := range files(t, root) {
		if f != "@proxmox-lxc/node-version.json" {
			out = append(out, f)
		}
	}
	return out
}

// added returns the entries of after that are not in before.
func added(before, after []string) []string {
	seen := map[string]bool{}
	for _, b := range before {
		seen[b] = true
	}
	var out []string
	for _, a := range after {
		if !seen[a] {
			out = append(out, a)
		}
	}
	return out
}

func writeFile(t testing.TB, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func contains(haystack, needle string) bool {
	return strings.Contains(strings.ToLower(haystack), strings.ToLower(needle))
}
