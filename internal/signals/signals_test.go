package signals

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

func TestParse(t *testing.T) {
	ok := []struct {
		in   string
		want syscall.Signal
	}{
		{"9", syscall.SIGKILL},
		{"15", syscall.SIGTERM},
		{"64", 64},
		{"KILL", syscall.SIGKILL},
		{"kill", syscall.SIGKILL},
		{"SIGKILL", syscall.SIGKILL},
		{"sigkill", syscall.SIGKILL},
		{"SigTerm", syscall.SIGTERM},
		{"HUP", syscall.SIGHUP},
		{"SIGUSR1", syscall.SIGUSR1},
		{"usr2", syscall.SIGUSR2},
		{"SIGCHLD", syscall.SIGCHLD},
		{"CLD", syscall.SIGCHLD},
		{"IOT", syscall.SIGABRT},
		{"WINCH", syscall.SIGWINCH},
		{" STOP ", syscall.SIGSTOP},
		{"RTMIN", 34},
		{"SIGRTMIN", 34},
		{"RTMIN+3", 37},
		{"SIGRTMIN+3", 37},
		{"sigrtmin+30", 64},
		{"RTMAX", 64},
		{"SIGRTMAX-1", 63},
		{"RTMAX-30", 34},
	}
	for _, tc := range ok {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}

	bad := []string{"", "0", "-1", "65", "999", "FOO", "SIG", "SIGFOO", "RTMIN+", "RTMIN+31",
		"RTMIN-1", "RTMAX+1", "RTMAX-31", "RTMIN+x", "RTMIN++1", "KILL9", "9x", "SIG-9"}
	for _, in := range bad {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error", in)
			continue
		}
		if errs.KindOf(err) != errs.KindUsage {
			t.Errorf("Parse(%q) kind = %v, want usage", in, errs.KindOf(err))
		}
		if !strings.Contains(err.Error(), "invalid signal") {
			t.Errorf("Parse(%q) error %q lacks \"invalid signal\"", in, err)
		}
	}
}

func TestName(t *testing.T) {
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGABRT: "SIGABRT",
		syscall.SIGCHLD: "SIGCHLD", syscall.SIGIO: "SIGIO", 34: "SIGRTMIN", 37: "SIGRTMIN+3", 64: "SIGRTMIN+30",
		33: "33",
	} {
		if got := Name(sig); got != want {
			t.Errorf("Name(%d) = %q, want %q", sig, got, want)
		}
	}
	// Every name round-trips through Parse.
	for s := syscall.Signal(1); s <= RTMax; s++ {
		n := Name(s)
		got, err := Parse(n)
		if err != nil || got != s {
			t.Errorf("Parse(Name(%d)=%q) = %d, %v", s, n, got, err)
		}
	}
}

// Name is the conventional name of sig ("SIGKILL", "SIGRTMIN+3"), or
// its number as a string when it has no name.
func Name(sig syscall.Signal) string {
	if n, ok := canonical[sig]; ok {
		return "SIG" + n
	}
	switch {
	case sig == RTMin:
		return "SIGRTMIN"
	case sig > RTMin && sig <= RTMax:
		return "SIGRTMIN+" + strconv.Itoa(int(sig)-RTMin)
	}
	return strconv.Itoa(int(sig))
}
