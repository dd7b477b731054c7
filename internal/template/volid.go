package template

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

// resolveVolID resolves storage:volume (also used for bare file names on
// the configured template storage): the storage must hold templates, the
// file must exist there or be downloadable with pveam.
func (r *Resolver) resolveVolID(ctx context.Context, storage, volume string, form Form) (*Resolved, error) {
	volid := storage + ":" + volume
	if ct := pve.ContentType(volume); ct != "vztmpl" {
		e := errs.New(errs.KindTemplate, "volume %s is not a container template (content type needs to be 'vztmpl')", volid)
		if ct != "" {
			e = errs.New(errs.KindTemplate, "volume %s has content type '%s', but a container template needs 'vztmpl'", volid, ct)
		}
		return nil, e.WithHint("name a template as <storage>:vztmpl/<file>.tar.zst, e.g. %s:vztmpl/%s", storage, filepath.Base(volume))
	}
	file, err := pve.TemplateVolume(volume)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "volume id %s does not name a template file", volid).
			WithHint("template files end in .tar, .tar.gz, .tar.xz, .tar.zst or .tar.bz2")
	}
	st, err := r.templateStorage(storage)
	if err != nil {
		return nil, err
	}
	local, err := r.localTemplates(ctx, st)
	if err != nil {
		return nil, err
	}
	if slices.Contains(local, file) {
		return r.useLocal(ctx, st, file)
	}
	return r.fetchOfficial(ctx, st, file, local)
}

// useLocal returns template file of storage st, inspected when the
// storage is a directory (else pct inspects it).
func (r *Resolver) useLocal(ctx context.Context, st *pve.Storage, file string) (*Resolved, error) {
	dir := cacheDir(st)
	if dir == "" {
		// Not readable here: pct inspects it; the name may still tell
		// the arch.
		arch := ArchFromFileName(file)
		if arch != "" && !slices.Contains(CompatibleArches(r.o.HostArch), arch) {
			return nil, errs.New(errs.KindTemplate, "template %s is built for %s, but this host runs %s", file, arch, r.o.HostArch).
				WithHint("use a template for %s", r.o.HostArch)
		}
		return &Resolved{VolID: pve.TemplateVolumeID(st.Name, file), File: file, Arch: arch}, nil
	}
	tmpl := filepath.Join(dir, file)
	m, err := r.inspect(tmpl)
	if err != nil {
		return nil, err
	}
	return r.finish(ctx, st.Name, tmpl, m)
}

// fetchOfficial handles a template that storage st lacks: download it with
// pveam when it is offered and auto-download is on, else say exactly how.
func (r *Resolver) fetchOfficial(ctx context.Context, st *pve.Storage, file string, local []string) (*Resolved, error) {
	avail, availErr := r.available(ctx)
	offered := slices.ContainsFunc(avail, func(a availableTemplate) bool { return a.file == file })
	dl := "pveam download " + st.Name + " " + file
	if !offered {
		names := slices.Clone(local)
		for _, a := range avail {
			names = append(names, a.file)
		}
		vol := pve.TemplateVolumeID(st.Name, file)
		e := errs.New(errs.KindTemplate, "template %s not found", vol)
		if len(local) > 0 {
			var vols []string
			for _, f := range closest(file, local, 8) {
				vols = append(vols, pve.TemplateVolumeID(st.Name, f))
			}
			e.Msg += "; available: " + strings.Join(vols, ", ")
		} else {
			e.Msg += fmt.Sprintf("; storage '%s' holds no templates", st.Name)
		}
		if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() {
			return nil, e.WithHint("a file name is looked up in the template storage; for the file %s in the current directory write ./%s", file, file)
		}
		switch {
		case availErr != nil:
			return nil, e.WithHint("`pveam available` failed (%v); check the name, or download a template with pveam", availErr)
		case len(names) > 0:
			return nil, e.WithHint("`pveam available` does not offer it either; closest names: %s", strings.Join(closest(file, names, 5), ", "))
		}
		return nil, e.WithHint("run `pveam update` and `pveam available` to see downloadable templates")
	}
	if !r.o.AutoDownload {
		return nil, errs.New(errs.KindTemplate, "template %s is not on storage '%s' (it can be downloaded)", pve.TemplateVolumeID(st.Name, file), st.Name).
			WithHint("run `%s`, or turn templates.auto_download on", dl)
	}
	unlock, err := r.lock(ctx, "template:"+st.Name+":"+file)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another create may have downloaded it while we waited for the lock.
	if now, err := r.localTemplates(ctx, st); err == nil && slices.Contains(now, file) {
		return r.useLocal(ctx, st, file)
	}
	var result string
	if dir := cacheDir(st); dir != "" {
		result = filepath.Join(dir, file)
	}
	var stderr []byte
	err = r.external("downloading "+file+" with pveam", result, func() (err error) {
		_, stderr, err = r.o.Exec.Run(ctx, []string{r.o.PveamPath, "download", st.Name, file})
		return err
	})
	if refused(err) {
		return nil, err
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "`%s` failed: %s", dl, strings.TrimSpace(string(stderr))).
			WithHint("check the network and the storage, then run `%s` by hand to see the details", dl)
	}
	if dir := cacheDir(st); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			return nil, errs.New(errs.KindTemplate, "`%s` succeeded but %s is not in %s", dl, file, dir)
		}
	}
	return r.useLocal(ctx, st, file)
}

// resolveShort picks the newest template matching a short name: locally
// first, else among the downloadable ones.
func (r *Resolver) resolveShort(ctx context.Context, name string) (*Resolved, error) {
	q := parseShort(name)
	st, err := r.templateStorage(r.o.Storage)
	if err != nil {
		return nil, err
	}
	local, err := r.localTemplates(ctx, st)
	if err != nil {
		return nil, err
	}
	arches := CompatibleArches(r.o.HostArch)
	best, amb := pickNewest(q, parseNames(local), arches)
	if amb != nil {
		return nil, ambiguousErr(name, amb, "local")
	}
	if best != nil {
		r.log.Debug("short name resolved locally", "name", name, "template", best.File)
		return r.useLocal(ctx, st, best.File)
	}
	avail, availErr := r.available(ctx)
	var availNames []string
	for _, a := range avail {
		availNames = append(availNames, a.file)
	}
	best, amb = pickNewest(q, parseNames(availNames), arches)
	if amb != nil {
		return nil, ambiguousErr(name, amb, "downloadable")
	}
	if best != nil {
		r.log.Debug("short name resolved from pveam available", "name", name, "template", best.File)
		return r.fetchOfficial(ctx, st, best.File, local)
	}
	e := errs.New(errs.KindTemplate, "no template matches the short name '%s' on storage '%s' or in `pveam available`", name, st.Name)
	all := append(slices.Clone(local), availNames...)
	if availErr != nil {
		return nil, e.WithHint("`pveam available` failed (%v); templates on '%s': %s", availErr, st.Name, strings.Join(closest(name, local, 8), ", "))
	}
	if len(all) == 0 {
		return nil, e.WithHint("no templates are known at all: run `pveam update`")
	}
	return nil, e.WithHint("short names look like <os>[-<version>[-<flavour>]] for %s templates; closest: %s",
		strings.Join(arches, "/"), strings.Join(closestShort(name, all, 8), ", "))
}

func parseNames(files []string) []Name {
	var out []Name
	for _, f := range files {
		if n, ok := ParseName(f); ok {
			out = append(out, n)
		}
	}
	return out
}

func ambiguousErr(name string, cands []Name, where string) error {
	var files []string
	for _, c := range cands {
		files = append(files, c.File)
	}
	return errs.New(errs.KindTemplate, "short name '%s' matches several %s templates of different flavours: %s", name, where, strings.Join(files, ", ")).
		WithHint("add the flavour (e.g. %s-%s-%s) or give the file name", cands[0].OS, cands[0].Version, cands[0].Flavour)
}

// closestShort orders template file names by the edit distance of their
// <os>-<version>-<flavour> part to a short name.
func closestShort(name string, files []string, max int) []string {
	prefix := map[string]string{}
	var keys []string
	for _, f := range files {
		k, _, _ := strings.Cut(f, "_")
		if _, dup := prefix[k]; !dup {
			keys = append(keys, k)
		}
		prefix[k] = f
	}
	var out []string
	for _, k := range closest(name, keys, max) {
		out = append(out, prefix[k])
	}
	return out
}
