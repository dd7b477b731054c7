package pvesim

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any leave a goroutine behind
// (exec's stdio copiers of lxc-attach, lock waiters, ...).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
