package testutil

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(RunMain(m)) }

func init() {
	RegisterAction("whoami", func(args []string) int {
		os.Stdout.WriteString(strconv.Itoa(os.Getuid()) + " " + strings.Join(args, ","))
		return 3
	})
}

// TestLocalUser: the action runs as the user, with its arguments; the
// user cannot write where root's temp dirs are.
func TestLocalUser(t *testing.T) {
	u := NewLocalUser(t)
	res := u.Run(u.Action("whoami", "a b", "c"))
	if want := strconv.Itoa(u.Uid) + " a b,c"; res.Code != 3 || res.Stdout != want {
		t.Fatalf("action: %v, want exit 3 and %q", res, want)
	}
	res = u.Run(u.Command("/bin/touch", t.TempDir()+"/x"))
	if res.Code == 0 {
		t.Fatalf("the local user wrote into root's temp dir")
	}
}
