package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestJSONLinesLikeLogrus(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{Format: "json", Level: "debug", Stderr: &buf})
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("d")
	l.Info("i")
	l.Warn("w")
	l.Error("e", "id", "c1")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"debug", "info", "warning", "error"}
	if len(lines) != len(want) {
		t.Fatalf("lines: %q", lines)
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if m["level"] != want[i] || m["msg"] == nil || m["time"] == nil {
			t.Fatalf("line %d: %q", i, line)
		}
	}
}

func TestLevels(t *testing.T) {
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "warning": slog.LevelWarn, "WARN": slog.LevelWarn, "error": slog.LevelError, "debug": slog.LevelDebug} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("unknown level accepted")
	}
	var buf bytes.Buffer
	l, _ := New(Options{Level: "error", Debug: true, Stderr: &buf})
	l.Debug("shown")
	if !strings.Contains(buf.String(), "level=debug") {
		t.Fatalf("--debug did not win: %q", buf.String())
	}
}

func TestLogFile(t *testing.T) {
	p := t.TempDir() + "/sub/log.json"
	l, err := New(Options{File: p, Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	if !l.ToFile {
		t.Fatal("ToFile not set")
	}
	l.Info("x")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLogFileUntrustedRefused: root never appends to a log path another
// user could redirect: one below a directory others can write, or a
// symbolic link there. Nothing is written through it.
func TestLogFileUntrustedRefused(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(filepath.Join(open, "x"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(open, "planted.json")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(open, "log.json"), filepath.Join(open, "planted.json"), link} {
		if l, err := New(Options{File: p}); err == nil {
			l.Info("x")
			l.Close()
			t.Errorf("log file %s accepted", p)
		} else if errs.KindOf(err) != errs.KindInvalidConfig || !strings.Contains(err.Error(), "writable by group and others") {
			t.Errorf("%s: %v (kind %v)", p, err, errs.KindOf(err))
		}
	}
	if data, _ := os.ReadFile(victim); len(data) != 0 {
		t.Fatalf("the victim got %q", data)
	}
}
