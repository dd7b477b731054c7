// Package progress reports long work (packing a rootfs, downloading a
// template or image): a bar with bytes, rate and ETA on stderr when stderr
// is a terminal, otherwise one log line when the work starts and one when
// it ends. Nothing ever goes to stdout.
package progress

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Bar tracks one piece of work. It is an io.Writer (each write counts its
// length), so it can be the second writer of an io.MultiWriter or the
// target of io.TeeReader. Safe for concurrent use.
type Bar struct {
	what   string
	total  int64
	stderr io.Writer
	log    *slog.Logger
	bar    *progressbar.ProgressBar // nil when not on a terminal
	start  time.Time
	now    func() time.Time
	done   atomic.Int64
	once   sync.Once
}

// Start begins reporting work called what (e.g. "packing rootfs of c1")
// of total bytes (-1 when unknown). stderr is the bar's terminal; log
// receives the start and end lines when stderr is not a terminal (and
// the end line in any case at debug level). log may be nil.
func Start(stderr io.Writer, log *slog.Logger, what string, total int64) *Bar {
	return start(stderr, log, what, total, isTerminal(stderr), time.Now)
}

func start(stderr io.Writer, log *slog.Logger, what string, total int64, tty bool, now func() time.Time) *Bar {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if total < 0 {
		total = -1
	}
	b := &Bar{what: what, total: total, stderr: stderr, log: log, start: now(), now: now}
	if tty && stderr != nil {
		stderr = &lockedWriter{w: stderr}
		b.stderr = stderr
		b.bar = progressbar.NewOptions64(total,
			// No ticker goroutine for the spinner of unknown sizes: it
			// moves on each Add, and nothing outlives Finish.
			progressbar.OptionSetSpinnerChangeInterval(0),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionUseANSICodes(true),
			progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(stderr, "\n") }),
		)
		return b
	}
	args := []any{"what", what}
	if total >= 0 {
		args = append(args, "bytes", total)
	}
	log.Info("started", args...)
	return b
}

// isTerminal reports whether w is a terminal (an *os.File or anything
// else with a file descriptor).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Add records n more bytes done.
func (b *Bar) Add(n int64) {
	if n <= 0 {
		return
	}
	b.done.Add(n)
	if b.bar != nil {
		_ = b.bar.Add64(n)
	}
}

// Write counts len(p) bytes done; it never fails.
func (b *Bar) Write(p []byte) (int, error) {
	b.Add(int64(len(p)))
	return len(p), nil
}

// Reader returns r counting what is read from it.
func (b *Bar) Reader(r io.Reader) io.Reader { return io.TeeReader(r, b) }

// Done is the number of bytes recorded so far.
func (b *Bar) Done() int64 { return b.done.Load() }

// Finish ends the report: the bar is completed (or left where it stopped
// on error) and the end line is logged with the bytes done, the time taken
// and the rate. Only the first call counts.
func (b *Bar) Finish(err error) {
	b.once.Do(func() {
		elapsed := b.now().Sub(b.start)
		done := b.done.Load()
		rate := float64(0)
		if s := elapsed.Seconds(); s > 0 {
			rate = float64(done) / s
		}
		args := []any{"what", b.what, "bytes", done, "seconds", round(elapsed.Seconds()), "bytes_per_second", int64(rate)}
		level := slog.LevelInfo
		if b.bar != nil {
			// The terminal showed it all; keep the record for log files.
			level = slog.LevelDebug
			if err == nil {
				_ = b.bar.Finish()
			} else {
				_ = b.bar.Exit()
				_, _ = io.WriteString(b.stderr, "\n")
			}
		}
		if err != nil {
			b.log.Warn("failed", append(args, "error", err.Error())...)
			return
		}
		b.log.Log(context.Background(), level, "finished", args...)
	})
}

func round(f float64) float64 { return float64(int64(f*1000)) / 1000 }

// lockedWriter serialises the bar's writes with Finish's own.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
