package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestProgressLinesWithoutTerminal: packing a bundle and downloading a
// template report one line when they start and one when they end on
// stderr (not a terminal here), or in the --log file; never on stdout.
func TestProgressLinesWithoutTerminal(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle, _ := seedBundle(t, []string{"sleep", "1000"})
	archive := tarTree(t, templateRootfs(t), true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(archive)
	}))
	defer srv.Close()

	lines := func(out, what string) (started, finished int) {
		for _, l := range strings.Split(out, "\n") {
			if !strings.Contains(l, `what="`+what) {
				continue
			}
			switch {
			case strings.Contains(l, "msg=started"):
				started++
			case strings.Contains(l, "msg=finished"):
				finished++
			}
		}
		return started, finished
	}

	r := n.Must("create", "--bundle", bundle, "pg-1")
	n.CleanupContainer("pg-1")
	if r.Stdout != "" {
		t.Errorf("create wrote to stdout: %q", r.Stdout)
	}
	if s, f := lines(r.Stderr, "packing the rootfs of pg-1"); s != 1 || f != 1 {
		t.Errorf("packing: %d start and %d end lines on stderr, want 1 and 1:\n%s", s, f, r.Stderr)
	} else {
		t.Logf("stderr of create:\n%s", r.Stderr)
	}
	// The same content again is reused from the cache: nothing to report.
	r = n.Must("create", "--bundle", bundle, "pg-2")
	n.CleanupContainer("pg-2")
	if strings.Contains(r.Stderr, "packing") || r.Stdout != "" {
		t.Errorf("cached pack reported progress: %s", r)
	}

	url := srv.URL + "/rootfs.tar.gz"
	r = n.Must("create", "--name", "pg-3", "--image", url)
	n.CleanupContainer("pg-3")
	if r.Stdout != "" {
		t.Errorf("create wrote to stdout: %q", r.Stdout)
	}
	if s, f := lines(r.Stderr, "downloading "+url); s != 1 || f != 1 {
		t.Errorf("download: %d start and %d end lines on stderr, want 1 and 1:\n%s", s, f, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "bytes=") {
		t.Errorf("progress lines lack the byte count:\n%s", r.Stderr)
	}

	// With --log, the lines go to the log file (JSON here) and stderr
	// stays quiet.
	logFile := filepath.Join(t.TempDir(), "nexcage.log")
	other := changeRootfs(t, bundle)
	r = n.Must("--log", logFile, "--log-format", "json", "create", "--bundle", other, "pg-4")
	n.CleanupContainer("pg-4")
	if r.Stdout != "" || strings.Contains(r.Stderr, "packing") {
		t.Errorf("with --log: %s", r)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"msg":"started","what":"packing the rootfs of pg-4"`) ||
		!strings.Contains(string(data), `"msg":"finished","what":"packing the rootfs of pg-4"`) {
		t.Errorf("log file lacks the progress lines:\n%s", data)
	}
}

// changeRootfs adds a file to the bundle's rootfs (so it packs to a new
// template) and returns the bundle.
func changeRootfs(t *testing.T, bundle string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "etc", "pg-extra"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// openPty returns a new pseudo-terminal's master and slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	// Non-blocking, so that the runtime poller serves it and Close ends a
	// pending Read (processes the container leaves behind may keep the
	// slave open, so EOF cannot be waited for).
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0)
	}
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, s
}

// lockedBuffer collects what a goroutine reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestProgressBarOnTerminal: with stderr on a terminal, packing shows a
// progress bar (description, bytes, percentage) instead of log lines, and
// stdout stays empty.
func TestProgressBarOnTerminal(t *testing.T) {
	e := newPveEnv(t, false, "")
	n := e.n
	bundle, _ := seedBundle(t, []string{"sleep", "1000"})
	master, slave := openPty(t)
	var got lockedBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&got, master); close(copied) }()
	defer func() { master.Close(); <-copied }()

	stdout := tempFile(t, "stdout")
	defer stdout.Close()
	cmd := exec.Command(n.Bin, append(append([]string{}, n.Globals...), "create", "--bundle", bundle, "pt-1")...)
	cmd.Env = append(os.Environ(), n.Env...)
	cmd.Stdout, cmd.Stderr = stdout, slave
	n.CleanupContainer("pt-1")
	err := cmd.Run()
	slave.Close()
	if err != nil {
		t.Fatalf("create on a terminal: %v\n%s", err, got.String())
	}
	Eventually(t, 10*time.Second, "the progress bar on the terminal", func() bool {
		s := got.String()
		return strings.Contains(s, "packing the rootfs of pt-1") && strings.Contains(s, "100%")
	})
	if strings.Contains(got.String(), "msg=started") {
		t.Errorf("log lines instead of a bar on a terminal:\n%q", got.String())
	}
	if out := readAll(t, stdout); out != "" {
		t.Errorf("create wrote to stdout: %q", out)
	}
}
