// Command nexcage-deb builds the nexcage Debian package with nfpm (as a
// library; no network):
//
//	nexcage-deb [-src .] [-out bin] [-version V] [-arch amd64]
//
// It builds a static nexcage binary from -src (CGO_ENABLED=0), generates
// the man pages and completions, gathers the docs, and packs everything as
// packaging/nfpm.yaml says into <out>/nexcage_<version>_<arch>.deb, whose
// path it prints on stdout. The version defaults to one derived from git
// (see debVersion).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager

	"github.com/nexcage/nexcage/internal/cli"
	"github.com/nexcage/nexcage/internal/docgen"
)

func main() {
	src := flag.String("src", ".", "nexcage source tree")
	out := flag.String("out", "bin", "directory for the .deb")
	ver := flag.String("version", "", "Debian package version (default: derived from git)")
	arch := flag.String("arch", goruntime.GOARCH, "Debian architecture (amd64, arm64)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: nexcage-deb [-src dir] [-out dir] [-version v] [-arch a]")
		os.Exit(2)
	}
	path, err := build(*src, *out, *ver, *arch)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nexcage-deb: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// gitInfo is what the package version and time stamps derive from.
type gitInfo struct {
	describe string    // git describe --tags --match 'v[0-9]*' --always --dirty
	commit   string    // short commit id
	date     time.Time // commit time
}

func readGit(src string) (gitInfo, error) {
	run := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var g gitInfo
	var err error
	if g.describe, err = run("describe", "--tags", "--match", "v[0-9]*", "--always", "--dirty", "--abbrev=7"); err != nil {
		return g, err
	}
	if g.commit, err = run("rev-parse", "--short=7", "HEAD"); err != nil {
		return g, err
	}
	ct, err := run("log", "-1", "--format=%ct")
	if err != nil {
		return g, err
	}
	secs, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return g, fmt.Errorf("commit time %q: %w", ct, err)
	}
	g.date = time.Unix(secs, 0).UTC()
	return g, nil
}

// debVersion turns git's description into a Debian version that sorts
// right: tag v1.2.3 -> 1.2.3; 4 commits after it -> 1.2.3+git20260301.abc1234;
// no tag yet -> 0.0.0~git20260301.abc1234 (sorts before 0.0.0); a dirty
// tree appends +dirty (or .dirty after a +).
func debVersion(g gitInfo) string {
	d := g.describe
	dirty := strings.HasSuffix(d, "-dirty")
	d = strings.TrimSuffix(d, "-dirty")
	stamp := "git" + g.date.Format("20060102") + "." + g.commit
	var v string
	switch {
	case !strings.HasPrefix(d, "v"):
		v = "0.0.0~" + stamp
	default:
		parts := strings.Split(strings.TrimPrefix(d, "v"), "-")
		// v1.2.3-4-gabc1234 (and tags with dashes, v1.2.3-rc1-4-gabc1234)
		if n := len(parts); n >= 3 && strings.HasPrefix(parts[n-1], "g") {
			v = debTag(strings.Join(parts[:n-2], "-")) + "+" + stamp
		} else {
			v = debTag(strings.Join(parts, "-"))
		}
	}
	if dirty {
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	return v
}

// debTag maps a tag's pre-release dash to ~ (1.2.3-rc1 -> 1.2.3~rc1, which
// Debian sorts before 1.2.3) and drops characters Debian forbids.
func debTag(t string) string {
	t = strings.ReplaceAll(t, "-", "~")
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune(".+~", r) {
			return r
		}
		return -1
	}, t)
}

func build(src, out, ver, arch string) (string, error) {
	src, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	g, gerr := readGit(src)
	if gerr != nil {
		// A source tree without git (a tarball): versions must be given.
		g = gitInfo{commit: "unknown", date: time.Now().UTC()}
		if ver == "" {
			return "", fmt.Errorf("cannot derive a version (%v); give -version", gerr)
		}
	}
	if ver == "" {
		ver = debVersion(g)
	}
	stage, err := os.MkdirTemp("", "nexcage-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)

	// A static binary: the package then needs nothing from libc.
	ldflags := fmt.Sprintf("-s -w -X github.com/nexcage/nexcage/internal/version.Version=%s -X github.com/nexcage/nexcage/internal/version.Commit=%s", ver, g.commit)
	// nexcage is the front binary; it execs nexcage-core, the full
	// command line, from its own directory (internal/fastpath).
	for _, bin := range []string{"nexcage", "nexcage-core"} {
		gobuild := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(stage, bin), "./cmd/"+bin)
		gobuild.Dir = src
		gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
		gobuild.Stdout, gobuild.Stderr = os.Stderr, os.Stderr
		if err := gobuild.Run(); err != nil {
			return "", fmt.Errorf("go build ./cmd/%s: %w", bin, err)
		}
	}
	if _, err := docgen.Generate(cli.DocsRoot(), stage, docgen.Options{Version: ver, Date: g.date, Gzip: true}); err != nil {
		return "", err
	}
	if err := gatherDocs(src, filepath.Join(stage, "doc")); err != nil {
		return "", err
	}

	vars := map[string]string{"SRC": src, "STAGE": stage, "VERSION": ver, "ARCH": arch}
	cfg, err := nfpm.ParseFileWithEnvMapping(filepath.Join(src, "packaging/nfpm.yaml"), func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	info.MTime = g.date
	info.Scripts.PostRemove = filepath.Join(src, "packaging/postrm")
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	pkgr, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	target := filepath.Join(out, fmt.Sprintf("nexcage_%s_%s.deb", ver, arch))
	tmp, err := os.CreateTemp(out, ".nexcage-*.deb")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := pkgr.Package(info, tmp); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("packing: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return "", err
	}
	return filepath.Abs(target)
}

// gatherDocs copies README.md, docs/*.md and packaging/copyright into dir.
func gatherDocs(src, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(src, "docs", "*.md"))
	if err != nil {
		return err
	}
	files = append(files, filepath.Join(src, "packaging", "copyright"))
	if _, err := os.Stat(filepath.Join(src, "README.md")); err == nil {
		files = append(files, filepath.Join(src, "README.md"))
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(dir, filepath.Base(f))); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
