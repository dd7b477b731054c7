// Package docgen writes nexcage's man pages and shell completions from its
// cobra command tree, for cmd/nexcage-gendocs and the .deb builder.
package docgen

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// ManSection is the man section of nexcage's pages: like runc's, it is a
// system administration command.
const ManSection = "8"

// Options tune the generated files.
type Options struct {
	Version string    // shown in each man page's footer
	Date    time.Time // the pages' date; zero means now (keep it fixed for reproducible packages)
	Gzip    bool      // write man pages as .8.gz (as Debian installs them)
}

// Files lists what Generate wrote, relative to its directory.
type Files struct {
	Man         []string // man8/nexcage.8[.gz], man8/nexcage-create.8[.gz], ...
	Bash        string   // completions/nexcage.bash
	Zsh         string   // completions/_nexcage
	Fish        string   // completions/nexcage.fish
	CommandPath []string // the commands documented, e.g. "nexcage create"
}

// Generate writes a man page for root and every available subcommand into
// dir/man8 and bash, zsh and fish completion scripts into dir/completions.
func Generate(root *cobra.Command, dir string, o Options) (*Files, error) {
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	disableAutoGenTag(root)
	manDir := filepath.Join(dir, "man"+ManSection)
	compDir := filepath.Join(dir, "completions")
	for _, d := range []string{manDir, compDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	files := &Files{}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		header := &doc.GenManHeader{
			Title:   strings.ToUpper(strings.ReplaceAll(c.CommandPath(), " ", "-")),
			Section: ManSection,
			Date:    &date,
			Source:  strings.TrimSpace("nexcage " + o.Version),
			Manual:  "nexcage manual",
		}
		var page bytes.Buffer
		if err := doc.GenMan(c, header, &page); err != nil {
			return fmt.Errorf("man page of %q: %w", c.CommandPath(), err)
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + "." + ManSection
		data := page.Bytes()
		if o.Gzip {
			name += ".gz"
			var err error
			if data, err = gzipBytes(data); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(manDir, name), data, 0o644); err != nil {
			return err
		}
		files.Man = append(files.Man, filepath.Join("man"+ManSection, name))
		files.CommandPath = append(files.CommandPath, c.CommandPath())
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
				continue
			}
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}

	name := root.Name()
	comps := []struct {
		file *string
		rel  string
		gen  func(*bytes.Buffer) error
	}{
		{&files.Bash, name + ".bash", func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) }},
		{&files.Zsh, "_" + name, func(b *bytes.Buffer) error { return root.GenZshCompletion(b) }},
		{&files.Fish, name + ".fish", func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) }},
	}
	for _, c := range comps {
		var b bytes.Buffer
		if err := c.gen(&b); err != nil {
			return nil, fmt.Errorf("completion %s: %w", c.rel, err)
		}
		if err := os.WriteFile(filepath.Join(compDir, c.rel), b.Bytes(), 0o644); err != nil {
			return nil, err
		}
		*c.file = filepath.Join("completions", c.rel)
	}
	return files, nil
}

func disableAutoGenTag(c *cobra.Command) {
	c.DisableAutoGenTag = true
	for _, sub := range c.Commands() {
		disableAutoGenTag(sub)
	}
}

// gzipBytes compresses data reproducibly (no name, no time stamp), like
// `gzip -9n`.
func gzipBytes(data []byte) ([]byte, error) {
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
