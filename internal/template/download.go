package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
	"github.com/nexcage/nexcage/internal/progress"
)

var sha256Re = lazyre.New(`^[0-9a-f]{64}$`)

// parseURL splits an archive URL from its optional #sha256=<hex> fragment.
func parseURL(raw string) (source, sum string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", errs.New(errs.KindTemplate, "%q is not a valid http(s) URL", raw).
			WithHint("write it as https://host/path/rootfs.tar.xz, optionally followed by #sha256=<64 hex digits>")
	}
	if u.Fragment != "" {
		k, v, _ := strings.Cut(u.Fragment, "=")
		v = strings.ToLower(v)
		if k != "sha256" || !sha256Re.MatchString(v) {
			return "", "", errs.New(errs.KindTemplate, "URL %s has the fragment #%s, which is not a checksum", raw, u.Fragment).
				WithHint("the only fragment understood is #sha256=<64 hex digits>")
		}
		sum = v
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), sum, nil
}

// resolveURL downloads an archive once into the cache (verified, never
// visible half-written) and resolves it from the cache afterwards.
func (r *Resolver) resolveURL(ctx context.Context, raw string) (*Resolved, error) {
	source, sum, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	dir, err := r.placeDir()
	if err != nil {
		return nil, err
	}
	match := func(m *Meta) bool { return sum == "" || m.Digest == "sha256:"+sum }
	if tmpl, m := findBySource(dir, source, match); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	unlock, err := r.lock(ctx, "url:"+source)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if tmpl, m := findBySource(dir, source, match); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	tmp, err := r.download(ctx, source, sum, dir)
	if err != nil {
		return nil, err
	}
	tmpl, m, err := r.place(ctx, tmp, dir, Meta{Source: source, Form: FormURL}, path.Base(strings.SplitN(source, "?", 2)[0]))
	if err != nil {
		return nil, err
	}
	return r.finish(ctx, r.o.Storage, tmpl, m)
}

// download fetches source into a temporary file in dir and checks its
// length and checksum. On any failure the temporary file is removed.
func (r *Resolver) download(ctx context.Context, source, sum, dir string) (tmpPath string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return "", errs.Wrap(errs.KindTemplate, err, "bad URL %s", source)
	}
	resp, err := r.o.HTTPClient.Do(req)
	if err != nil {
		return "", errs.Wrap(errs.KindTemplate, err, "downloading %s failed", source).
			WithHint("check the URL and the network; nothing was left in the cache")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", errs.New(errs.KindTemplate, "downloading %s failed: the server answered %s", source, resp.Status).
			WithHint("check the URL")
	}
	f, err := createTemp(dir)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	bar := progress.Start(r.o.Progress, r.o.ProgressLog, "downloading "+source, resp.ContentLength)
	n, err := io.Copy(io.MultiWriter(f, h, bar), resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	bar.Finish(err)
	if err != nil {
		return "", errs.Wrap(errs.KindTemplate, err, "downloading %s was interrupted", source).
			WithHint("retry; the partial download was removed")
	}
	got := hex.EncodeToString(h.Sum(nil))
	if sum != "" && got != sum {
		err = errors.New("checksum mismatch")
		return "", errs.New(errs.KindTemplate, "the file downloaded from %s has sha256 %s, not the expected %s", source, got, sum).
			WithHint("the file changed or the checksum is wrong; nothing was kept in the cache")
	}
	if err = closeTemp(f); err != nil {
		return "", errs.Wrap(errs.KindTemplate, err, "writing the download of %s", source)
	}
	r.log.Info("downloaded template", "url", source, "bytes", n, "sha256", got)
	return f.Name(), nil
}

// resolvePath copies a local archive into the cache under its content
// name (validated first), or reuses the copy of the unchanged file.
func (r *Resolver) resolvePath(ctx context.Context, p string) (*Resolved, error) {
	dir, err := r.placeDir()
	if err != nil {
		return nil, err
	}
	if filepath.Dir(p) == dir {
		// Already in the template cache: it is a file name really.
		return r.resolveVolID(ctx, r.o.Storage, "vztmpl/"+filepath.Base(p), FormFile)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, errs.Wrap(errs.KindNotFound, err, "archive %s", p)
	}
	match := func(m *Meta) bool { return m.SourceSize == fi.Size() && m.SourceModTime.Equal(fi.ModTime()) }
	if tmpl, m := findBySource(dir, p, match); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	unlock, err := r.lock(ctx, "path:"+p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if tmpl, m := findBySource(dir, p, match); m != nil {
		return r.finish(ctx, r.o.Storage, tmpl, m)
	}
	src, err := os.Open(p)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot read archive %s", p)
	}
	defer src.Close()
	f, err := createTemp(dir)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(f, src)
	if err == nil {
		err = closeTemp(f)
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, errs.Wrap(errs.KindTemplate, err, "copying %s into the template cache %s", p, dir)
	}
	tmpl, m, err := r.place(ctx, f.Name(), dir, Meta{Source: p, Form: FormPath, SourceSize: fi.Size(), SourceModTime: fi.ModTime()}, filepath.Base(p))
	if err != nil {
		return nil, err
	}
	return r.finish(ctx, r.o.Storage, tmpl, m)
}

// external reports the progress of work an external command does (pveam
// download, skopeo copy) that nexcage cannot follow byte by byte: the
// start and end lines (or, on a terminal, a bar that completes when the
// command ends), with the size of result, the file it produced, if any.
func (r *Resolver) external(what, result string, run func() error) error {
	bar := progress.Start(r.o.Progress, r.o.ProgressLog, what, -1)
	err := run()
	if err == nil && result != "" {
		if fi, statErr := os.Stat(result); statErr == nil {
			bar.Add(fi.Size())
		}
	}
	bar.Finish(err)
	return err
}
