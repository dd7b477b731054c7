package proxmox

import (
	"fmt"
	"os"
	"strconv"

	"github.com/nexcage/nexcage/internal/errs"
)

// procDir is /proc (a variable for tests).
var procDir = "/proc"

// setOOMScoreAdj applies process.oomScoreAdj from the host, as runc does:
// to the init helper (pid, before start: the process it execs inherits
// it) or, for exec (pid 0), to nexcage itself before it starts
// lxc-attach, whose attached process inherits it. nexcage is root on the
// host, so it may lower the value too (CAP_SYS_RESOURCE), which an
// unprivileged container's root could not; writing it with that
// capability also makes it the floor the process may go back to.
func setOOMScoreAdj(id string, pid int, v *int) error {
	if v == nil {
		return nil
	}
	who := "self"
	if pid > 0 {
		who = strconv.Itoa(pid)
	}
	p := procDir + "/" + who + "/oom_score_adj"
	if err := os.WriteFile(p, []byte(strconv.Itoa(*v)), 0); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot set process.oomScoreAdj %d", id, *v).
			WithHint("%s", fmt.Sprintf("check that %s is writable by root", p))
	}
	return nil
}
