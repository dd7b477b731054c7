package template

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
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
	// Source is what the user asked for when nexcage placed the file (a
	// path, URL, image reference or bundle); empty for templates nexcage
	// only inspected.
	Source string `json:"source,omitempty"`
	Form   Form   `json:"form,omitempty"`
	// SourceSize/SourceModTime identify the version of a local source file,
	// so an unchanged path resolves from the cache without reading it.
	SourceSize    int64        `json:"source_size,omitempty"`
	SourceModTime time.Time    `json:"source_mtime,omitzero"`
	Placed        bool         `json:"placed"` // nexcage created the template file
	Image         *ImageConfig `json:"image,omitempty"`
	Created       time.Time    `json:"created,omitzero"`
	LastUsed      time.Time    `json:"last_used,omitzero"`
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
	return renameio.WriteFile(metaPath(tmpl), append(b, '\n'), 0o644)
}

// findBySource returns the template in dir that nexcage placed for source
// (and, when match is given, that satisfies it).
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
		if m == nil || m.Source != source || (match != nil && !match(m)) {
			continue
		}
		fi, err := os.Stat(tmpl)
		if err != nil || !m.fresh(fi) {
			continue
		}
		return tmpl, m
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
