package inithelper

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/hooks"
)

// stateFile is where runStartContainerHooks reads the state (a variable
// for tests).
var stateFile = StateFile

// runStartContainerHooks runs the OCI startContainer hooks in the
// container (runtime-spec config.md "StartContainer Hooks": in the
// container's namespaces, their path resolved there, before the process
// runs), in order, each with the container's state (written by `start`)
// on stdin. The first failure is returned. Paths are not put through the
// host's trust check: they are the container's own files and run as the
// container's root, with no more than the container has.
func runStartContainerHooks(list []specs.Hook) error {
	if len(list) == 0 {
		return nil
	}
	data, err := os.ReadFile(stateFile)
	if err != nil {
		return fmt.Errorf("startContainer hooks: cannot read the container's state: %v", err)
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("startContainer hooks: the container's state %s is not valid: %v", stateFile, err)
	}
	r := &hooks.Runner{Check: func(string) error { return nil }}
	return r.Run(context.Background(), hooks.StartContainer, list, st)
}
