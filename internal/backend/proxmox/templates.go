package proxmox

import (
	"io"
	"log/slog"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/template"
)

// TemplateResolver builds the template resolver the backend uses for cfg
// (template storage, auto download, pveam, work directory). The CLI's
// `templates list|prune` uses the same one, so both see the same cache.
// progress is where a progress bar of long work (packing, downloads,
// pulls) goes when it is a terminal; progressLog receives the start and
// end lines otherwise (nil: log).
func TemplateResolver(cfg *config.Config, log *slog.Logger, progress io.Writer, progressLog *slog.Logger) *template.Resolver {
	if cfg == nil {
		cfg = config.Default()
	}
	p := cfg.Proxmox
	// templates.skopeo_path: unset means skopeo on PATH, "" means never
	// skopeo here (pulls go through Proxmox's oci-registry-pull).
	skopeo, noSkopeo := "", false
	if sp := cfg.Templates.SkopeoPath; sp != nil {
		skopeo, noSkopeo = *sp, *sp == ""
	}
	return template.NewResolver(template.Options{
		EtcPve:       orDefault(p.EtcPve, "/etc/pve"),
		Storage:      orDefault(p.TemplateStorage, "local"),
		AutoDownload: cfg.Templates.AutoDownload == nil || *cfg.Templates.AutoDownload,
		PveamPath:    p.PveamPath,
		SkopeoPath:   skopeo,
		NoSkopeo:     noSkopeo,
		PveshPath:    p.PveshPath,
		Node:         p.Node,
		WorkDir:      cfg.Storage.ImagePath,
		Logger:       log,
		Progress:     progress,
		ProgressLog:  progressLog,
	})
}

// Templates returns the backend's template resolver.
func (b *Backend) Templates() *template.Resolver { return b.tmpl }

// SetTemplates replaces the backend's template resolver (for example with
// one reporting progress elsewhere). Call it before the backend is used.
func (b *Backend) SetTemplates(r *template.Resolver) { b.tmpl = r }
