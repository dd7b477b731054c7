// Package signals parses signal names and numbers the way runc's `kill`
// does: "9", "KILL", "SIGKILL" (any case) and the real-time signals
// "RTMIN+3" / "SIGRTMIN+3" / "RTMAX-1".
package signals

import (
	"strconv"
	"strings"
	"syscall"

	"github.com/nexcage/nexcage/internal/errs"
)

// Real-time signal bounds as seen by programs linked with glibc (the kernel
// reserves 32 and 33 for the C library), which is what runc and kill(1) use.
const (
	RTMin = 34
	RTMax = 64
)

// standard maps the short name (without "SIG") to its Linux number.
var standard = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"ILL": syscall.SIGILL, "TRAP": syscall.SIGTRAP, "ABRT": syscall.SIGABRT,
	"IOT": syscall.SIGIOT, "BUS": syscall.SIGBUS, "FPE": syscall.SIGFPE,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "SEGV": syscall.SIGSEGV,
	"USR2": syscall.SIGUSR2, "PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM,
	"TERM": syscall.SIGTERM, "STKFLT": syscall.SIGSTKFLT, "CHLD": syscall.SIGCHLD,
	"CLD": syscall.SIGCHLD, "CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP,
	"TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU,
	"URG": syscall.SIGURG, "XCPU": syscall.SIGXCPU, "XFSZ": syscall.SIGXFSZ,
	"VTALRM": syscall.SIGVTALRM, "PROF": syscall.SIGPROF, "WINCH": syscall.SIGWINCH,
	"IO": syscall.SIGIO, "POLL": syscall.SIGPOLL, "PWR": syscall.SIGPWR,
	"SYS": syscall.SIGSYS,
}

// canonical is the preferred name of each standard signal number.
var canonical = map[syscall.Signal]string{}

func init() {
	aliases := map[string]bool{"IOT": true, "CLD": true, "POLL": true}
	for n, s := range standard {
		if !aliases[n] {
			canonical[s] = n
		}
	}
}

// Parse turns a signal given on a command line into a signal number.
// It accepts a decimal number (1..64), a name with or without the "SIG"
// prefix in any case, and RTMIN/RTMAX with an optional +n / -n offset.
// An empty string is an error: defaulting to SIGTERM is the caller's job.
func Parse(s string) (syscall.Signal, error) {
	raw := strings.TrimSpace(s)
	if n, err := strconv.Atoi(raw); err == nil {
		if n < 1 || n > RTMax {
			return 0, invalid(s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(raw)
	name = strings.TrimPrefix(name, "SIG")
	if sig, ok := standard[name]; ok {
		return sig, nil
	}
	if sig, ok := parseRT(name); ok {
		return sig, nil
	}
	return 0, invalid(s)
}

// parseRT parses RTMIN, RTMIN+n, RTMAX and RTMAX-n (name already upper
// case without "SIG").
func parseRT(name string) (syscall.Signal, bool) {
	var base, sign int
	var rest string
	switch {
	case strings.HasPrefix(name, "RTMIN"):
		base, sign, rest = RTMin, 1, name[len("RTMIN"):]
	case strings.HasPrefix(name, "RTMAX"):
		base, sign, rest = RTMax, -1, name[len("RTMAX"):]
	default:
		return 0, false
	}
	if rest == "" {
		return syscall.Signal(base), true
	}
	op := "+"
	if sign < 0 {
		op = "-"
	}
	if !strings.HasPrefix(rest, op) {
		return 0, false
	}
	digits := rest[1:]
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	off, err := strconv.Atoi(digits)
	if err != nil || off > RTMax-RTMin {
		return 0, false
	}
	return syscall.Signal(base + sign*off), true
}

func invalid(s string) error {
	return errs.New(errs.KindUsage, "invalid signal %q", s).
		WithHint("give a number (9), a name (KILL or SIGKILL) or SIGRTMIN+n; see `kill -l`")
}
