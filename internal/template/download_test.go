package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestResolvePath(t *testing.T) {
	e := newEnv(t, nil)
	data := compress(t, CompGzip, tarBytes(t, rootfsEntries(elfAmd64, osRelease("alpine"))))
	src := writeFile(t, filepath.Join(t.TempDir(), "my rootfs.tgz"), data)
	ctx := context.Background()
	res, err := e.r.Resolve(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := "nexcage-" + hex.EncodeToString(sum[:])[:16] + ".tar.gz"
	if res.File != want || res.VolID != "local:vztmpl/"+want || !res.Packed || res.OSType != "alpine" || res.Form != FormPath {
		t.Errorf("got %+v, want file %s", res, want)
	}
	got, _ := os.ReadFile(filepath.Join(e.cache, want))
	if string(got) != string(data) {
		t.Error("cached copy differs from the source")
	}
	// The unchanged source resolves from the cache without a new copy.
	os.Remove(filepath.Join(e.cache, want+MetaSuffix+".x"))
	res2, err := e.r.Resolve(ctx, src)
	if err != nil || res2.File != want {
		t.Fatalf("second: %+v %v", res2, err)
	}
	if n := len(placedFiles(t, e.cache)); n != 1 {
		t.Errorf("%d placed files", n)
	}
	noTemps(t, e.cache)
}

func TestResolvePathInvalid(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty.tar.gz": compress(t, CompGzip, tarBytes(t, nil)),
		"noroot.tar":   tarBytes(t, []entry{{name: "hello.txt", body: "hi"}}),
		"junk.tar.xz":  []byte("definitely not an archive, but long enough to be read as one by a careless tool......"),
	} {
		_, err := e.r.Resolve(context.Background(), writeFile(t, filepath.Join(dir, name), data))
		wantErr(t, err, errs.KindTemplate, name)
	}
	if p := placedFiles(t, e.cache); len(p) != 0 {
		t.Errorf("invalid archives were placed: %v", p)
	}
	noTemps(t, e.cache)
}

// server serves body at /t.tar.zst, counting hits.
func server(t *testing.T, body []byte, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		if r.URL.Path != "/t.tar.zst" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestResolveURL(t *testing.T) {
	e := newEnv(t, nil)
	data := compress(t, CompZstd, tarBytes(t, rootfsEntries(elfAmd64, osRelease("debian"))))
	sum := sha256.Sum256(data)
	hexsum := hex.EncodeToString(sum[:])
	srv, hits := server(t, data, nil)
	ctx := context.Background()
	res, err := e.r.Resolve(ctx, srv.URL+"/t.tar.zst#sha256="+hexsum)
	if err != nil {
		t.Fatal(err)
	}
	if res.Form != FormURL || res.OSType != "debian" || res.Digest != "sha256:"+hexsum || !res.Packed {
		t.Errorf("got %+v", res)
	}
	// Downloaded once: later resolves, with or without the checksum, use the cache.
	for _, u := range []string{srv.URL + "/t.tar.zst", srv.URL + "/t.tar.zst#sha256=" + hexsum} {
		if r2, err := e.r.Resolve(ctx, u); err != nil || r2.File != res.File {
			t.Fatalf("%s: %+v %v", u, r2, err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads, want 1", hits.Load())
	}
	noTemps(t, e.cache)
}

func TestResolveURLErrors(t *testing.T) {
	data := compress(t, CompZstd, tarBytes(t, rootfsEntries(elfAmd64)))
	wrong := "0000000000000000000000000000000000000000000000000000000000000000"
	t.Run("checksum mismatch", func(t *testing.T) {
		e := newEnv(t, nil)
		srv, _ := server(t, data, nil)
		_, err := e.r.Resolve(context.Background(), srv.URL+"/t.tar.zst#sha256="+wrong)
		wantErr(t, err, errs.KindTemplate, "not the expected "+wrong)
		if p := placedFiles(t, e.cache); len(p) != 0 {
			t.Errorf("placed %v", p)
		}
		noTemps(t, e.cache)
	})
	t.Run("interrupted", func(t *testing.T) {
		e := newEnv(t, nil)
		srv, _ := server(t, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		_, err := e.r.Resolve(context.Background(), srv.URL+"/t.tar.zst")
		wantErr(t, err, errs.KindTemplate, "interrupted")
		if p := placedFiles(t, e.cache); len(p) != 0 {
			t.Errorf("placed %v", p)
		}
		noTemps(t, e.cache)
	})
	t.Run("404", func(t *testing.T) {
		e := newEnv(t, nil)
		srv, _ := server(t, data, nil)
		_, err := e.r.Resolve(context.Background(), srv.URL+"/missing.tar.zst")
		wantErr(t, err, errs.KindTemplate, "404")
	})
	t.Run("not a template", func(t *testing.T) {
		e := newEnv(t, nil)
		srv, _ := server(t, nil, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>login page</html>") })
		_, err := e.r.Resolve(context.Background(), srv.URL+"/t.tar.zst")
		wantErr(t, err, errs.KindTemplate, "not a usable container template")
		noTemps(t, e.cache)
	})
	t.Run("bad fragment", func(t *testing.T) {
		e := newEnv(t, nil)
		_, err := e.r.Resolve(context.Background(), "http://127.0.0.1:1/t.tar.zst#md5=abc")
		wantErr(t, err, errs.KindTemplate, "#sha256=")
	})
}

func TestResolveURLConcurrentDownloadsOnce(t *testing.T) {
	e := newEnv(t, nil)
	data := compress(t, CompZstd, tarBytes(t, rootfsEntries(elfAmd64)))
	srv, hits := server(t, data, nil)
	var wg sync.WaitGroup
	files := make([]string, 4)
	errList := make([]error, 4)
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A separate Resolver per goroutine, like separate processes.
			r := NewResolver(e.r.o)
			res, err := r.Resolve(context.Background(), srv.URL+"/t.tar.zst")
			errList[i] = err
			if err == nil {
				files[i] = res.File
			}
		}()
	}
	wg.Wait()
	for i := range files {
		if errList[i] != nil || files[i] != files[0] {
			t.Errorf("resolve %d: %s %v", i, files[i], errList[i])
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads, want 1", hits.Load())
	}
	noLockFiles(t, e.r.o.WorkDir)
}
