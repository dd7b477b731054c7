package inithelper

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// oomScoreAdjPath is the file setOOMScoreAdj writes (a variable for
// tests).
var oomScoreAdjPath = "/proc/self/oom_score_adj"

// setOOMScoreAdj applies process.oomScoreAdj to the helper itself before
// it execs the process, which inherits it. Raising the value is always
// allowed; lowering it below the current one needs CAP_SYS_RESOURCE in
// the host's user namespace, which an unprivileged container's root does
// not have: that is an error naming both values, not a silent skip.
func setOOMScoreAdj(v *int) error {
	if v == nil {
		return nil
	}
	err := os.WriteFile(oomScoreAdjPath, []byte(strconv.Itoa(*v)), 0)
	if err == nil {
		return nil
	}
	cur := "?"
	if data, rerr := os.ReadFile(oomScoreAdjPath); rerr == nil {
		cur = strings.TrimSpace(string(data))
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("process.oomScoreAdj %d: lowering it below the current %s needs CAP_SYS_RESOURCE on the host, which this container does not have (raise it, or leave it out): %v", *v, cur, err)
	}
	return fmt.Errorf("process.oomScoreAdj %d: cannot write %s: %v", *v, oomScoreAdjPath, err)
}
