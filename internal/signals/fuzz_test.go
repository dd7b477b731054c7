package signals

import (
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// FuzzParse checks that any command-line word either parses to a signal
// in 1..RTMax whose canonical name parses back to the same number, or is
// refused with a usage error; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"9", "KILL", "SIGKILL", "sigterm", "RTMIN", "RTMIN+3", "SIGRTMAX-2",
		"0", "65", "-1", "", " ", "SIG", "RTMIN+", "RTMIN+31", "RTMAX-31",
		"RTMIN+99999999999999999999", "KILL\n", "\x00", "ＫＩＬＬ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := Parse(s)
		if err != nil {
			if k := errs.KindOf(err); k != errs.KindUsage {
				t.Fatalf("Parse(%q) error kind %v, want usage: %v", s, k, err)
			}
			if sig != 0 {
				t.Fatalf("Parse(%q) = %d with an error", s, sig)
			}
			return
		}
		if sig < 1 || sig > RTMax {
			t.Fatalf("Parse(%q) = %d, outside 1..%d", s, sig, RTMax)
		}
		name := Name(sig)
		back, err := Parse(name)
		if err != nil || back != sig {
			t.Fatalf("Parse(Name(%d)=%q) = %d, %v; want %d", sig, name, back, err, sig)
		}
	})
}
