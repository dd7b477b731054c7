package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Sample is one measured command run.
type Sample struct {
	Wall time.Duration
	// MaxRSSKB is ru_maxrss of the finished command (runner.rss only): on
	// Linux the larger of the process's own peak and that of every
	// descendant it waited for, so the peak RSS of the command tree.
	MaxRSSKB int64
	// WriteBytes is ru_oublock * 512 (the tree's write_bytes: data the
	// processes sent towards storage, counted when pages are dirtied).
	WriteBytes int64
	Code       int
	Stdout     string
	Stderr     string
}

// runner runs commands with stdout and stderr in files: a container
// created by runc inherits them, and would hold a pipe open.
type runner struct {
	dir string
	n   int
	// rss wraps each command in `busybox time` to learn its peak RSS (see
	// runAttr); timing figures come from runs without it.
	rss bool
}

// pageKB corrects busybox time's %M, which takes ru_maxrss (KiB) for a
// page count and multiplies it by the page size in KiB.
var pageKB = int64(os.Getpagesize() / 1024)

// run executes argv with extra environment and measures it. A non-zero
// exit is not an error here; the caller decides (see must).
func (r *runner) run(env []string, argv ...string) (Sample, error) {
	return r.runAttr(env, nil, argv...)
}

// runAttr is run with process attributes (e.g. a new mount namespace).
func (r *runner) runAttr(env []string, attr *syscall.SysProcAttr, argv ...string) (Sample, error) {
	r.n++
	outPath := filepath.Join(r.dir, "out-"+strconv.Itoa(r.n%4))
	errPath := outPath + ".err"
	stdout, err := os.Create(outPath)
	if err != nil {
		return Sample{}, err
	}
	defer stdout.Close()
	stderr, err := os.Create(errPath)
	if err != nil {
		return Sample{}, err
	}
	defer stderr.Close()
	rssPath := outPath + ".rss"
	if r.rss {
		// Why a wrapper: Go starts children with vfork, and exec records
		// the hiwater RSS of the mm it leaves - this process's - into the
		// child's ru_maxrss. busybox-static is tiny, and its time applet
		// reports the ru_maxrss of a child it forked itself.
		wrap := []string{busyboxPath, "time", "-f", "%M", "-o", rssPath}
		if attr != nil && attr.Unshareflags&syscall.CLONE_NEWNS != 0 {
			// The mount namespace must be the command's own, not the
			// wrapper's: unshare(1) makes it between the two.
			wrap = append(wrap, "unshare", "-m", "--propagation", "private")
			attr = nil
		}
		argv = append(wrap, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = attr
	t0 := time.Now()
	err = cmd.Start()
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	werr := cmd.Wait()
	s := Sample{Wall: time.Since(t0)}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return s, fmt.Errorf("%s: %w", strings.Join(argv, " "), werr)
	}
	s.Code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.WriteBytes = ru.Oublock * 512
	}
	if r.rss {
		data, err := os.ReadFile(rssPath)
		lines := strings.Fields(string(data))
		if err != nil || len(lines) == 0 {
			return s, fmt.Errorf("busybox time gave no peak RSS for %s: %v", strings.Join(argv, " "), err)
		}
		k, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
		if err != nil {
			return s, fmt.Errorf("busybox time: %q: %w", data, err)
		}
		s.MaxRSSKB = k / pageKB
	}
	o, _ := os.ReadFile(outPath)
	e, _ := os.ReadFile(errPath)
	s.Stdout, s.Stderr = string(o), string(e)
	return s, nil
}

// must runs argv and fails unless it exits 0.
func (r *runner) must(env []string, argv ...string) (Sample, error) {
	return r.mustAttr(env, nil, argv...)
}

func (r *runner) mustAttr(env []string, attr *syscall.SysProcAttr, argv ...string) (Sample, error) {
	s, err := r.runAttr(env, attr, argv...)
	if err == nil && s.Code != 0 {
		err = fmt.Errorf("%s: exit %d: %s", strings.Join(argv, " "), s.Code, strings.TrimSpace(s.Stderr))
	}
	return s, err
}

// waitExit waits for the container init pid to exit. The bench is a
// child subreaper (see setSubreaper), so the orphaned init is its child
// and wait4 returns the moment it exits; otherwise /proc is polled.
func waitExit(pid int, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			done <- err
			return
		}
	}()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if err != unix.ECHILD {
			return fmt.Errorf("wait for pid %d: %w", pid, err)
		}
	case <-time.After(timeout):
		_ = unix.Kill(pid, unix.SIGKILL)
		<-done
		return fmt.Errorf("pid %d did not exit within %v (killed)", pid, timeout)
	}
	// Not our child: poll until it is gone or a zombie.
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return nil
		}
		if i := strings.LastIndexByte(string(data), ')'); i > 0 && len(data) > i+2 && data[i+2] == 'Z' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not exit within %v", pid, timeout)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// readPid reads a runtime's --pid-file.
func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q", path, data)
	}
	return pid, nil
}

// setSubreaper makes orphaned descendants (container inits whose runtime
// exited) children of this process, so that waitExit can wait4 them.
func setSubreaper(on bool) error {
	v := uintptr(0)
	if on {
		v = 1
	}
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, v, 0, 0, 0)
}

// reapZombies collects every exited child without blocking. It is only
// called when no exec.Cmd of ours is running, so it cannot steal one.
func reapZombies() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// stats summarises durations.
type stats struct {
	N                int
	Median, Min, Max time.Duration
}

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

func medianInt(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func kb(k int64) string {
	if k >= 1024 {
		return fmt.Sprintf("%.1f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
}

func bytesStr(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// treeSize is the sum of the sizes of the regular files under the roots,
// each hard-linked file counted once (missing roots count 0).
func treeSize(roots ...string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				key := [2]uint64{uint64(st.Dev), st.Ino}
				if seen[key] {
					return nil
				}
				seen[key] = true
			}
			total += fi.Size()
			return nil
		})
	}
	return total
}
