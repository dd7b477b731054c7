package cli

import (
	"testing"

	"github.com/nexcage/nexcage/internal/lazyre"
)

// TestAllPatternsCompile compiles every lazily compiled regular
// expression of every package nexcage links (they are no longer checked
// at init).
func TestAllPatternsCompile(t *testing.T) {
	lazyre.CompileAll()
}
