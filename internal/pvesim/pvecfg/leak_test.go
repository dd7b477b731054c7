package pvecfg

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any of them leaves a goroutine
// behind (exec's stdio copiers and context watchers, lock waiters,
// compression workers): see docs/RELIABILITY.md.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
