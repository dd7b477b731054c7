package bundle

import (
	"regexp"
	"testing"
)

// TestIsSpecVersion: the hand-written check accepts exactly what the
// semver regexp it replaces accepts.
func TestIsSpecVersion(t *testing.T) {
	re := regexp.MustCompile(`^1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	for _, v := range []string{"1.0.0", "1.0.2", "1.3.0", "1.0.2-dev", "1.1.0-rc.1", "1.2.0+build.5", "1.2.0-rc.1+b-1",
		"", "1", "1.0", "1.0.", "1..0", "01.0.0", "1.00.0", "1.0.01", "1.10.20", "2.0.0", "0.5.0", "one", "1.0.0-", "1.0.0+",
		"1.0.0-a+b+c", "1.0.0-a b", "1.0.0+x_y", "1.0.0--", "1.0.0-+x", " 1.0.0", "1.0.0 ", "1.0.0-é"} {
		if got, want := isSpecVersion(v), re.MatchString(v); got != want {
			t.Errorf("isSpecVersion(%q) = %v, the regexp says %v", v, got, want)
		}
	}
}
