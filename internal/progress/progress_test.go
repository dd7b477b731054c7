package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock advances one second per call.
func clock() func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestNotATerminal: no bar, one log line at start and one at end.
func TestNotATerminal(t *testing.T) {
	var stderr, logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := start(&stderr, log, "packing rootfs of c1", 3000, false, clock())
	b.Add(1000)
	if _, err := io.Copy(io.Discard, b.Reader(strings.NewReader(strings.Repeat("x", 1500)))); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Write(make([]byte, 500))
	b.Finish(nil)
	b.Finish(errors.New("ignored: only the first Finish counts"))
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q, want nothing without a terminal", stderr.String())
	}
	lines := logLines(t, &logs)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2: %s", len(lines), logs.String())
	}
	if lines[0]["msg"] != "started" || lines[0]["what"] != "packing rootfs of c1" || lines[0]["bytes"] != 3000.0 {
		t.Errorf("start line %v", lines[0])
	}
	// The fake clock ticks once between Start and Finish: 3000 bytes in 1 s.
	if lines[1]["msg"] != "finished" || lines[1]["bytes"] != 3000.0 || lines[1]["bytes_per_second"] != 3000.0 || lines[1]["level"] != "INFO" {
		t.Errorf("end line %v", lines[1])
	}
	if b.Done() != 3000 {
		t.Errorf("Done %d", b.Done())
	}
}

func TestFailureLogged(t *testing.T) {
	var logs bytes.Buffer
	b := start(&bytes.Buffer{}, slog.New(slog.NewJSONHandler(&logs, nil)), "downloading x", -7, false, clock())
	b.Add(10)
	b.Finish(errors.New("connection reset"))
	lines := logLines(t, &logs)
	if len(lines) != 2 || lines[0]["bytes"] != nil || lines[1]["msg"] != "failed" || lines[1]["error"] != "connection reset" || lines[1]["level"] != "WARN" {
		t.Errorf("lines %v", lines)
	}
}

// TestTerminalBar: on a terminal the bar shows what, bytes and the total;
// the log gets only a debug record.
func TestTerminalBar(t *testing.T) {
	var stderr, logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil)) // info and above
	b := start(&stderr, log, "downloading alpine", 2<<20, true, time.Now)
	for range 8 {
		b.Add(256 << 10)
	}
	b.Finish(nil)
	out := stderr.String()
	for _, want := range []string{"downloading alpine", "100%", "2.1 MB"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output lacks %q: %q", want, out)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("bar does not end its line: %q", out)
	}
	if logs.Len() != 0 {
		t.Errorf("info log got %q; a terminal shows the bar instead", logs.String())
	}

	// Unknown size: a counter without a total, still on stderr only.
	stderr.Reset()
	b = start(&stderr, nil, "packing", -1, true, time.Now)
	b.Add(4096)
	b.Finish(errors.New("boom"))
	if !strings.Contains(stderr.String(), "packing") {
		t.Errorf("spinner output %q", stderr.String())
	}
}

// TestStartDetectsTerminal checks Start's detection with a real pty and
// a pipe.
func TestStartDetectsTerminal(t *testing.T) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	defer ptm.Close()
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	if !isTerminal(pts) {
		t.Error("a pty is not seen as a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) || isTerminal(&bytes.Buffer{}) {
		t.Error("a pipe or buffer is seen as a terminal")
	}

	var logs bytes.Buffer
	b := Start(w, slog.New(slog.NewJSONHandler(&logs, nil)), "x", 1)
	b.Add(1)
	b.Finish(nil)
	if !strings.Contains(logs.String(), `"msg":"started"`) {
		t.Errorf("Start on a pipe did not log: %q", logs.String())
	}
	b = Start(pts, nil, "on a tty", 10)
	b.Add(10)
	b.Finish(nil)
	buf := make([]byte, 4096)
	_ = ptm.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := ""
	for !strings.Contains(got, "on a tty") {
		k, err := ptm.Read(buf)
		if err != nil {
			t.Fatalf("reading the pty: %v (got %q)", err, got)
		}
		got += string(buf[:k])
	}
}
