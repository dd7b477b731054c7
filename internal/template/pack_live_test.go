package template

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The runtime-tools suite's bundles have root.path "." and send create's
// stderr to a file inside the bundle, so nexcage's own progress lines land
// in the rootfs while it packs it. That is not a change of the rootfs
// (issue 15: "rootfs ... changed while it was packed" for every test).
func TestPackOwnOutputInsideRootfs(t *testing.T) {
	ctx := context.Background()
	root := mkRootfs(t)
	out := filepath.Join(root, "stderr-1")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, "a warning written before packing")
	saved := outputFDs
	t.Cleanup(func() { outputFDs = saved })
	outputFDs = []int{int(f.Fd())}
	e := newEnv(t, func(o *Options) { o.ProgressLog = slog.New(slog.NewTextHandler(f, nil)) })

	p, err := e.r.PackAndAcquire(ctx, PackOptions{Rootfs: root}, "c1")
	if err != nil {
		t.Fatalf("packing a rootfs holding the packer's own stderr: %v", err)
	}
	if data, _ := os.ReadFile(out); !strings.Contains(string(data), "msg=started") {
		t.Fatalf("the progress lines did not go to the file inside the rootfs (the case under test): %q", data)
	}
	if size, ok := packedSize(t, p.Path, "./stderr-1"); !ok || size != 0 {
		t.Errorf("own output packed with size %d (present %v), want an empty file", size, ok)
	}
	if size, ok := packedSize(t, p.Path, "./etc/os-release"); !ok || size != int64(len("ID=debian\n")) {
		t.Errorf("other files must keep their content: os-release size %d (present %v)", size, ok)
	}

	// The same file, not known as the packer's output, is a real change
	// between the two passes and still refused.
	outputFDs = nil
	if _, err := e.r.PackAndAcquire(ctx, PackOptions{Rootfs: root}, "c2"); err == nil || !strings.Contains(err.Error(), "changed while it was packed") {
		t.Fatalf("a file changing during packing: err = %v, want \"changed while it was packed\"", err)
	}
}

// packedSize is the size of entry name in the packed template p.
func packedSize(t *testing.T, p, name string) (size int64, found bool) {
	t.Helper()
	walkPacked(t, p, func(h *tar.Header, _ io.Reader) {
		if h.Name == name {
			size, found = h.Size, true
		}
	})
	return size, found
}
