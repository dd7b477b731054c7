package template

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/testutil"
)

func TestResolveBundle(t *testing.T) {
	e := newEnv(t, nil)
	bundle := testutil.BusyboxBundle(t, "", []string{"sh"}, nil)
	ctx := context.Background()
	res, err := e.r.Resolve(ctx, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if res.Form != FormBundle || res.BundleDir != bundle || !res.Packed || res.Arch != HostArch() || res.OSType != "unmanaged" {
		t.Errorf("got %+v", res)
	}
	files := templateFiles(t, filepath.Join(e.cache, res.File))
	if _, ok := files["bin/busybox"]; !ok {
		t.Errorf("bin/busybox not packed; have %d entries", len(files))
	}
	// Same content, same template.
	res2, err := e.r.Resolve(ctx, bundle)
	if err != nil || res2.File != res.File {
		t.Errorf("second: %+v %v", res2, err)
	}
	if n := len(placedFiles(t, e.cache)); n != 1 {
		t.Errorf("%d placed templates", n)
	}
	noTemps(t, e.cache)
}

func TestResolveBundleWithoutRootfs(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), []byte(`{"root":{"path":"missing"}}`))
	_, err := e.r.Resolve(context.Background(), dir)
	wantErr(t, err, errs.KindInvalidBundle, "missing", "root.path")
}

func TestUseReleaseListPrune(t *testing.T) {
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	ctx := context.Background()
	e.addLocal(debian12, tmplData(t, debian12, "debian"))
	src := writeFile(t, filepath.Join(t.TempDir(), "r.tar.gz"), compress(t, CompGzip, tarBytes(t, rootfsEntries(elfAmd64))))
	pathRes, err := e.r.Resolve(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	bundleRes, err := e.r.Resolve(ctx, testutil.BusyboxBundle(t, "", []string{"sh"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	official, err := e.r.Resolve(ctx, "local:vztmpl/"+debian12)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ volid, id string }{
		{pathRes.VolID, "c1"}, {pathRes.VolID, "c2"}, {bundleRes.VolID, "c3"}, {official.VolID, "c4"},
	} {
		if err := e.r.Use(ctx, u.volid, u.id); err != nil {
			t.Fatal(err)
		}
	}
	list, err := e.r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string]Entry{}
	for _, l := range list {
		byFile[l.File] = l
	}
	if len(list) != 3 {
		t.Fatalf("list %+v", list)
	}
	if p := byFile[pathRes.File]; !slices.Equal(p.Users, []string{"c1", "c2"}) || p.Source != src || p.Form != FormPath || !p.Placed || p.Size == 0 {
		t.Errorf("path entry %+v", p)
	}
	if o := byFile[debian12]; o.Placed || !slices.Equal(o.Users, []string{"c4"}) {
		t.Errorf("official entry %+v", o)
	}
	// Pruning keeps templates in use.
	if removed, err := e.r.Prune(ctx, 0, false); err != nil || len(removed) != 0 {
		t.Errorf("prune removed %v, %v", removed, err)
	}
	// Releasing the bundle's only user removes its template.
	if removed, err := e.r.Release(ctx, bundleRes.VolID, "c3"); err != nil || !removed {
		t.Errorf("bundle release: %v %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(e.cache, bundleRes.File)); !os.IsNotExist(err) {
		t.Error("unused bundle template still there")
	}
	// A copied archive stays cached after its last user is gone ...
	e.r.Release(ctx, pathRes.VolID, "c1")
	if removed, err := e.r.Release(ctx, pathRes.VolID, "c2"); err != nil || removed {
		t.Errorf("path release: %v %v", removed, err)
	}
	// ... an official template is never removed by Release ...
	if removed, _ := e.r.Release(ctx, official.VolID, "c4"); removed {
		t.Error("official template removed")
	}
	// ... and prune --older-than spares recently used ones.
	now = now.Add(time.Hour)
	if removed, _ := e.r.Prune(ctx, 2*time.Hour, false); len(removed) != 0 {
		t.Errorf("pruned a template used an hour ago: %v", removed)
	}
	if removed, _ := e.r.Prune(ctx, 30*time.Minute, true); len(removed) != 1 {
		t.Errorf("dry run: %v", removed)
	}
	if _, err := os.Stat(filepath.Join(e.cache, pathRes.File)); err != nil {
		t.Error("dry run removed a file")
	}
	removed, err := e.r.Prune(ctx, 30*time.Minute, false)
	if err != nil || len(removed) != 1 || removed[0].File != pathRes.File {
		t.Errorf("prune: %v %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(e.cache, pathRes.File)); !os.IsNotExist(err) {
		t.Error("pruned template still there")
	}
	if _, err := os.Stat(filepath.Join(e.cache, debian12)); err != nil {
		t.Error("prune removed an official template")
	}
}

func TestPruneRemovesStalePartials(t *testing.T) {
	now := time.Now()
	e := newEnv(t, nil)
	stale := writeFile(t, filepath.Join(e.cache, ".nexcage-tmp-123.partial"), []byte("x"))
	fresh := writeFile(t, filepath.Join(e.cache, ".nexcage-tmp-456.partial"), []byte("x"))
	os.Chtimes(stale, now.Add(-48*time.Hour), now.Add(-48*time.Hour))
	if _, err := e.r.Prune(context.Background(), 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale partial download kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("a partial download in progress was removed")
	}
}
