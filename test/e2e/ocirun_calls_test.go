package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexcage/nexcage/internal/testutil"
)

// TestOCIRunOneRuntimeCallPerVerb runs the lifecycle with runc and crun
// replaced by a wrapper that logs its argv and execs the runtime, and
// checks that every verb is exactly one runtime call (issue 7: the
// passthrough adds no refreshes; state none, issue 16), and that a refused verb still gets
// nexcage's error with runc's words.
func TestOCIRunOneRuntimeCallPerVerb(t *testing.T) {
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			real, err := exec.LookPath(rt)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			log := filepath.Join(dir, "calls")
			wrapper := filepath.Join(dir, rt)
			script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			n := NewNexcage(t, WriteConfig(t, `{"runtime": {"routing": [{"pattern": ".*", "runtime": "`+rt+`"}]},
				"runtimes": {"`+rt+`": {"path": "`+wrapper+`"}}}`))
			id := rt + "-calls"
			n.CleanupContainer(id)
			bundle := testutil.BusyboxBundle(t, "", []string{"sleep", "1000"}, nil)
			calls := func(args ...string) []string {
				t.Helper()
				if err := os.WriteFile(log, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				n.Must(args...)
				data, err := os.ReadFile(log)
				if err != nil {
					t.Fatal(err)
				}
				var verbs []string
				for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
					if l != "" {
						verbs = append(verbs, verbOf(strings.Fields(l)))
					}
				}
				return verbs
			}
			want := func(what string, got []string, verbs ...string) {
				t.Helper()
				if strings.Join(got, " ") != strings.Join(verbs, " ") {
					t.Errorf("%s: runtime calls %q, want %q", what, got, verbs)
				}
			}
			want("create", calls("create", "--bundle", bundle, id), "create")
			// state reads runc's/crun's state directory, no call (issue 16:
			// starting the runtime would cost more than nexcage itself).
			want("state", calls("state", id))
			want("start", calls("start", id), "start")
			want("kill", calls("kill", id, "KILL"), "kill")
			Eventually(t, 10*time.Second, "the container to stop", func() bool { return stateOf(t, n, id).Status == "stopped" })
			want("list", calls("list"), "state") // one container: one state call
			n.Fails(10, "container not running", "kill", id, "KILL")
			want("delete", calls("delete", id), "delete")
		})
	}
}

// verbOf is the verb of a runtime argv: the first word that is neither a
// global flag nor a flag's value.
func verbOf(argv []string) string {
	for i := 0; i < len(argv); i++ {
		switch a := argv[i]; {
		case a == "--root" || a == "--log" || a == "--log-format":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return "?"
}
