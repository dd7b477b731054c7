package docgen

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/cli"
)

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	date := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	files, err := Generate(cli.DocsRoot(), dir, Options{Version: "1.2.3", Date: date, Gzip: true})
	if err != nil {
		t.Fatal(err)
	}
	// Every available verb of the real tree has its page.
	want := map[string]bool{"man8/nexcage.8.gz": true}
	for _, c := range cli.DocsRoot().Commands() {
		if c.IsAvailableCommand() {
			want["man8/nexcage-"+c.Name()+".8.gz"] = true
		}
	}
	for _, v := range []string{"create", "run", "start", "state", "kill", "delete", "list", "stop", "spec", "features", "version"} {
		if !want["man8/nexcage-"+v+".8.gz"] {
			t.Errorf("the command tree lacks %q", v)
		}
	}
	got := map[string]bool{}
	for _, m := range files.Man {
		got[m] = true
	}
	for m := range want {
		if !got[m] {
			t.Errorf("no man page %s (got %v)", m, files.Man)
		}
	}
	page := gunzip(t, filepath.Join(dir, "man8/nexcage-create.8.gz"))
	for _, s := range []string{`.TH "NEXCAGE-CREATE" "8" "Mar 2026" "nexcage 1.2.3" "nexcage manual"`, "bundle", "pid-file"} {
		if !strings.Contains(page, s) {
			t.Errorf("nexcage-create.8 lacks %q:\n%s", s, page[:min(len(page), 600)])
		}
	}
	if strings.Contains(page, "Auto generated") {
		t.Error("man page carries cobra's auto-generated tag (not reproducible)")
	}

	// Reproducible: a second run gives identical bytes.
	dir2 := t.TempDir()
	if _, err := Generate(cli.DocsRoot(), dir2, Options{Version: "1.2.3", Date: date, Gzip: true}); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(files.Man, files.Bash, files.Zsh, files.Fish) {
		a, _ := os.ReadFile(filepath.Join(dir, m))
		b, _ := os.ReadFile(filepath.Join(dir2, m))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs", m)
		}
	}

	for file, want := range map[string]string{
		files.Bash: "__start_nexcage",
		files.Zsh:  "#compdef nexcage",
		files.Fish: "complete -c nexcage",
	} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !strings.Contains(string(data), want) {
			t.Errorf("%s: %v; want it to contain %q", file, err, want)
		}
	}
	// The bash script at least parses.
	if out, err := exec.Command("bash", "-n", filepath.Join(dir, files.Bash)).CombinedOutput(); err != nil {
		t.Errorf("bash -n %s: %v\n%s", files.Bash, err, out)
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
