package template

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/pve"
)

// storages reads storage.cfg (every call: it is small and may change).
func (r *Resolver) storages() ([]pve.Storage, error) {
	p := filepath.Join(r.o.EtcPve, "storage.cfg")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot read the Proxmox storage configuration %s", p).
			WithHint("check proxmox.etc_pve in the nexcage configuration")
	}
	list, err := pve.ParseStorageConfig(data)
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "cannot parse %s", p)
	}
	return list, nil
}

// templateStorage finds storage name and checks that it may hold templates.
func (r *Resolver) templateStorage(name string) (*pve.Storage, error) {
	list, err := r.storages()
	if err != nil {
		return nil, err
	}
	st, ok := pve.FindStorage(list, name)
	if !ok {
		var names, tmpl []string
		for _, s := range list {
			names = append(names, s.Name)
			if s.HasContent("vztmpl") {
				tmpl = append(tmpl, s.Name)
			}
		}
		e := errs.New(errs.KindTemplate, "storage '%s' is not defined in %s (defined: %s)", name,
			filepath.Join(r.o.EtcPve, "storage.cfg"), strings.Join(closest(name, names, 10), ", "))
		if len(tmpl) > 0 {
			return nil, e.WithHint("use a storage with content vztmpl, e.g. %s:vztmpl/<file>, or set proxmox.template_storage", tmpl[0])
		}
		return nil, e.WithHint("define a storage with content vztmpl in storage.cfg")
	}
	if !st.HasContent("vztmpl") {
		return nil, errs.New(errs.KindTemplate, "storage '%s' does not hold container templates (content: %s)",
			name, strings.Join(st.Content, ",")).
			WithHint("use a storage whose content includes vztmpl, or add vztmpl to its content with `pvesm set %s --content %s`",
				name, strings.Join(append(slices.Clone(st.Content), "vztmpl"), ","))
	}
	if st.Props["disable"] == "1" {
		return nil, errs.New(errs.KindTemplate, "storage '%s' is disabled", name).
			WithHint("enable it (`pvesm set %s --disable 0`) or use another template storage", name)
	}
	return st, nil
}

// cacheDir is the template directory of a directory-backed storage, ""
// for storages without a path (then pveam is asked).
func cacheDir(st *pve.Storage) string {
	if st.Path == "" {
		return ""
	}
	return filepath.Join(st.Path, "template", "cache")
}

// localTemplates lists the template file names present on storage st.
func (r *Resolver) localTemplates(ctx context.Context, st *pve.Storage) ([]string, error) {
	if dir := cacheDir(st); dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, errs.Wrap(errs.KindTemplate, err, "cannot list templates of storage '%s'", st.Name)
		}
		var out []string
		for _, e := range ents {
			if e.Type().IsRegular() && pve.ValidateTemplateName(e.Name()) == nil {
				out = append(out, e.Name())
			}
		}
		return out, nil
	}
	out, stderr, err := r.o.Exec.Run(ctx, []string{r.o.PveamPath, "list", st.Name})
	if refused(err) {
		return nil, err
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "`pveam list %s` failed: %s", st.Name, strings.TrimSpace(string(stderr)))
	}
	return parsePveamList(out, st.Name), nil
}

// parsePveamList reads `pveam list <storage>` output: a header line, then
// rows of "<volid> <size>MB".
func parsePveamList(out []byte, storage string) []string {
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "NAME" {
			continue
		}
		st, vol, err := pve.ParseVolumeID(f[0])
		if err != nil || st != storage {
			continue
		}
		if file, err := pve.TemplateVolume(vol); err == nil {
			files = append(files, file)
		}
	}
	return files
}

// availableTemplate is one row of `pveam available`.
type availableTemplate struct{ section, file string }

// available asks `pveam available` (once per Resolve) for downloadable
// templates.
func (r *Resolver) available(ctx context.Context) ([]availableTemplate, error) {
	out, stderr, err := r.o.Exec.Run(ctx, []string{r.o.PveamPath, "available"})
	if refused(err) {
		return nil, err
	}
	if err != nil {
		return nil, errs.Wrap(errs.KindTemplate, err, "`%s available` failed: %s", r.o.PveamPath, strings.TrimSpace(string(stderr))).
			WithHint("run `pveam update` to refresh the template list, or check proxmox.pveam_path")
	}
	var res []availableTemplate
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && pve.ValidateTemplateName(f[1]) == nil {
			res = append(res, availableTemplate{section: f[0], file: f[1]})
		}
	}
	return res, nil
}
