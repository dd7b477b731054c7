// Package procfs reads facts about host processes from /proc.
package procfs

import (
	"os"
	"strconv"
	"strings"
)

// StartTime returns field 22 of /proc/<pid>/stat (start time in clock
// ticks since boot), which tells a pid's process apart from a later reuse
// of the same pid. It returns false for a missing or zombie process.
func StartTime(pid int) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(data)
	// The command name (field 2) may hold spaces and ')': fields after it
	// start after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}

// Pids returns the pids of the host's processes, as /proc lists them now
// (a process may exit or a pid be reused right after: callers check what
// they read about a pid).
func Pids() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}
