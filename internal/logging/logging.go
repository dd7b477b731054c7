// Package logging sets up nexcage's slog logger. Logs never go to stdout:
// stdout belongs to state, list, spec and features output.
package logging

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/trust"
)

// Options select where and how nexcage logs.
type Options struct {
	// File is the --log path; empty means stderr.
	File string
	// Format is "text" (default) or "json".
	Format string
	// Level is "debug", "info", "warn"/"warning" or "error"; Debug wins.
	Level string
	// Debug forces the debug level (--debug).
	Debug bool
	// Stderr is where logs go without File (default os.Stderr).
	Stderr io.Writer
}

// Logger is a configured logger and the file it writes to, if any.
type Logger struct {
	*slog.Logger
	// ToFile reports whether logs go to a file (so errors must also be
	// printed to stderr separately).
	ToFile bool
	closer io.Closer
}

// Close closes the log file, if one was opened.
func (l *Logger) Close() error {
	if l.closer == nil {
		return nil
	}
	return l.closer.Close()
}

// ParseLevel maps a level name to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug", "trace":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal", "panic":
		return slog.LevelError, nil
	}
	return 0, errs.New(errs.KindUsage, "unknown log level %q", s).WithHint("use debug, info, warning or error")
}

// New builds the logger described by o. A log file is opened for
// appending (created 0600 with its directory when missing), as runc does.
func New(o Options) (*Logger, error) {
	level, err := ParseLevel(o.Level)
	if err != nil {
		return nil, err
	}
	if o.Debug {
		level = slog.LevelDebug
	}
	var w io.Writer = o.Stderr
	if w == nil {
		w = os.Stderr
	}
	l := &Logger{}
	if o.File != "" {
		// nexcage runs as root: a log path below a directory another user
		// can write (or a link they planted) would let them point root's
		// appends at any file.
		if err := trust.Creatable(o.File); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(o.File), 0o755); err != nil {
			return nil, errs.Wrap(errs.KindUsage, err, "cannot create the directory of log file %s", o.File)
		}
		f, err := os.OpenFile(o.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, errs.Wrap(errs.KindUsage, err, "cannot open log file %s", o.File)
		}
		w, l.ToFile, l.closer = f, true, f
	}
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	switch strings.ToLower(o.Format) {
	case "", "text":
		l.Logger = slog.New(slog.NewTextHandler(w, hopts))
	case "json":
		l.Logger = slog.New(slog.NewJSONHandler(w, hopts))
	default:
		if l.closer != nil {
			_ = l.closer.Close()
		}
		return nil, errs.New(errs.KindUsage, "unknown log format %q", o.Format).WithHint("use --log-format text or json")
	}
	return l, nil
}

// replaceAttr writes level and time the way runc (logrus) does, because
// containerd parses runc's log file: "level":"error", "time" in RFC 3339.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		lv, _ := a.Value.Any().(slog.Level)
		return slog.String(slog.LevelKey, LevelName(lv))
	case slog.TimeKey:
		if t, ok := a.Value.Any().(time.Time); ok {
			return slog.String(slog.TimeKey, t.Format(time.RFC3339Nano))
		}
	}
	return a
}

// LevelName is the logrus name of a slog level.
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warning"
	case l >= slog.LevelInfo:
		return "info"
	default:
		return "debug"
	}
}
