package template

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/atomicfile"
)

// MetaSuffix is appended to a template's file name for its metadata file.
// Proxmox lists only files with template extensions, so it ignores these.
const MetaSuffix = ".nexcage.json"

// Meta is what nexcage knows about one template file, kept next to it as
// <file>.nexcage.json so that a second create reads no archive.
type Meta struct {
	File string `json:"file"`
	Info
	// ModTime with Size identifies the file version the Info belongs to.
	ModTime time.Time `json:"mtime"`
	// Sources are what users asked for when nexcage placed this file (a
	// path, URL, image or bundle); several sources may have the same
	// content. Empty for templates nexcage only inspected.
	Sources  []SourceRef `json:"sources,omitempty"`
	Placed   bool        `json:"placed"` // nexcage created the template file
	Created  time.Time   `json:"created,omitzero"`
	LastUsed time.Time   `json:"last_used,omitzero"`

	// The source this resolution came from (not stored as such: it is one
	// of Sources).
	Source        string       `json:"-"`
	Form          Form         `json:"-"`
	SourceSize    int64        `json:"-"`
	SourceModTime time.Time    `json:"-"`
	Image         *ImageConfig `json:"-"`
}

// SourceRef is one source of a placed template.
type SourceRef struct {
	Source string `json:"source"`
	Form   Form   `json:"form"`
	// Size/ModTime identify the version of a local source file, so an
	// unchanged path resolves from the cache without reading it.
	Size    int64        `json:"size,omitempty"`
	ModTime time.Time    `json:"mtime,omitzero"`
	Image   *ImageConfig `json:"image,omitempty"`
}

func (m *Meta) current() SourceRef {
	return SourceRef{Source: m.Source, Form: m.Form, Size: m.SourceSize, ModTime: m.SourceModTime, Image: m.Image}
}

func (m *Meta) setCurrent(s SourceRef) {
	m.Source, m.Form, m.SourceSize, m.SourceModTime, m.Image = s.Source, s.Form, s.Size, s.ModTime, s.Image
}

// upsertSource records s among the sources (replacing an older entry of
// the same source).
func (m *Meta) upsertSource(s SourceRef) {
	for i := range m.Sources {
		if m.Sources[i].Source == s.Source {
			m.Sources[i] = s
			return
		}
	}
	m.Sources = append(m.Sources, s)
}

func metaPath(tmpl string) string { return tmpl + MetaSuffix }

// readMeta loads the metadata of template file tmpl; nil when absent or
// unreadable (it is a cache: a broken one is rebuilt).
func readMeta(tmpl string) *Meta {
	b, err := os.ReadFile(metaPath(tmpl))
	if err != nil {
		return nil
	}
	var m Meta
	if json.Unmarshal(b, &m) != nil || m.File != filepath.Base(tmpl) {
		return nil
	}
	return &m
}

// fresh reports whether m describes the file version fi.
func (m *Meta) fresh(fi os.FileInfo) bool {
	return m != nil && m.Digest != "" && m.Size == fi.Size() && m.ModTime.Equal(fi.ModTime())
}

func writeMeta(tmpl string, m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	// An exact mode: an older nexcage wrote these 0644 (they hold the
	// image's environment).
	return atomicfile.Write(metaPath(tmpl), append(b, '\n'), FileMode)
}

// findBySource returns the template in dir that nexcage placed for source
// (and, when match is given, that satisfies it), with the matching source
// made current.
func findBySource(dir, source string, match func(*Meta) bool) (string, *Meta) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), MetaSuffix) {
			continue
		}
		tmpl := filepath.Join(dir, strings.TrimSuffix(e.Name(), MetaSuffix))
		m := readMeta(tmpl)
		if m == nil {
			continue
		}
		for _, s := range m.Sources {
			if s.Source != source {
				continue
			}
			m.setCurrent(s)
			if match != nil && !match(m) {
				continue
			}
			fi, err := os.Stat(tmpl)
			if err != nil || !m.fresh(fi) {
				continue
			}
			return tmpl, m
		}
	}
	return "", nil
}

func removeTemplate(tmpl string) error {
	err := os.Remove(tmpl)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if e := os.Remove(metaPath(tmpl)); e != nil && !errors.Is(e, os.ErrNotExist) && err == nil {
		err = e
	}
	return err
}
