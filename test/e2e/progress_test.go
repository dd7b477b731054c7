package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProgressLinesWithoutTerminal: packing a bundle and downloading a
// template report one line when they start and one when they end on
// stderr (not a terminal here), or in the --log file; never on stdout.
func TestProgressLinesWithoutTerminal(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle, _ := seedBundle(t, []string{"sleep", "1000"})
	archive := tarTree(t, templateRootfs(t), true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(archive)
	}))
	defer srv.Close()

	lines := func(out, what string) (started, finished int) {
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, `what="`+what) {
				continue
			}
			switch {
			case strings.Contains(l, "msg=started"):
				started++
			case strings.Contains(l, "msg=finished"):
				finished++
			}
		}
		return started, finished
	}

	r := n.Must("create", "--bundle", bundle, "pg-1")
	n.CleanupContainer("pg-1")
	if r.Stdout != "" {
		t.Errorf("create wrote to stdout: %q", r.Stdout)
	}
	if s, f := lines(r.Stderr, "packing the rootfs of pg-1"); s != 1 || f != 1 {
		t.Errorf("packing: %d start and %d end lines on stderr, want 1 and 1:\n%s", s, f, r.Stderr)
	} else {
		t.Logf("stderr of create:\n%s", r.Stderr)
	}
	// The same content again is reused from the cache: nothing to report.
	r = n.Must("create", "--bundle", bundle, "pg-2")
	n.CleanupContainer("pg-2")
	if strings.Contains(r.Stderr, "packing") || r.Stdout != "" {
		t.Errorf("cached pack reported progress: %s", r)
	}

	url := srv.URL + "/rootfs.tar.gz"
	r = n.Must("create", "--name", "pg-3", "--image", url)
	n.CleanupContainer("pg-3")
	if r.Stdout != "" {
		t.Errorf("create wrote to stdout: %q", r.Stdout)
	}
	if s, f := lines(r.Stderr, "downloading "+url); s != 1 || f != 1 {
		t.Errorf("download: %d start and %d end lines on stderr, want 1 and 1:\n%s", s, f, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "bytes=") {
		t.Errorf("progress lines lack the byte count:\n%s", r.Stderr)
	}

	// With --log, the lines go to the log file (JSON here) and stderr
	// stays quiet.
	logFile := filepath.Join(t.TempDir(), "nexcage.log")
	other := changeRootfs(t, bundle)
	r = n.Must("--log", logFile, "--log-format", "json", "create", "--bundle", other, "pg-4")
	n.CleanupContainer("pg-4")
	if r.Stdout != "" || strings.Contains(r.Stderr, "packing") {
		t.Errorf("with --log: %s", r)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"msg":"started","what":"packing the rootfs of pg-4"`) ||
		!strings.Contains(string(data), `"msg":"finished","what":"packing the rootfs of pg-4"`) {
		t.Errorf("log file lacks the progress lines:\n%s", data)
	}
}

// changeRootfs adds a file to the bundle's rootfs (so it packs to a new
// template) and returns the bundle.
func changeRootfs(t *testing.T, bundle string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "etc", "pg-extra"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}
