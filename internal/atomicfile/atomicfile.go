// Package atomicfile replaces files atomically with an exact mode.
//
// renameio.WriteFile keeps the mode of the file it replaces (it adds
// WithExistingPermissions, which wins over WithStaticPermissions), so a
// state file someone widened to 0644 would stay readable after every
// later save. Write sets the mode it is given, always.
package atomicfile

import (
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// Write replaces path with data, with exactly mode, whatever the umask. The
// temporary file goes next to path, never to $TMPDIR: renameio would
// otherwise probe $TMPDIR with two more files first, and a write killed
// midway leaves its temp file where the owner of the directory cleans up.
func Write(path string, data []byte, mode os.FileMode) error {
	pf, err := renameio.NewPendingFile(path, renameio.WithStaticPermissions(mode), renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return err
	}
	defer func() { _ = pf.Cleanup() }()
	if _, err := pf.Write(data); err != nil {
		return err
	}
	return pf.CloseAtomicallyReplace()
}
