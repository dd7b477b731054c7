package pve

import (
	"errors"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// FuzzParseStderr feeds arbitrary stderr text to the pct error parser.
// It must always return an error value with a kind, a hint and a message
// that keeps pct's words (the explaining line is part of stderr), and
// never panic.
func FuzzParseStderr(f *testing.F) {
	for _, s := range []string{
		"CT 100 already exists on node 'pve'\n",
		"400 Parameter verification failed.\nstorage: storage 'local' does not support container directories\npct create <vmid> <ostemplate> [OPTIONS]\n",
		"400 Parameter verification failed.\nostemplate: invalid format\nmemory: type check ('integer') failed - got 'x'\n\n",
		"unable to create CT 100 - can't find file 'local:vztmpl/x.tar.zst'\n",
		"Configuration file 'nodes/pve/lxc/100.conf' does not exist\n",
		"CT is locked (snapshot-delete)\n",
		"can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout\n",
		"CT 100 already running\n", "CT 100 not running\n", "container '100' not running!\n",
		"unable to destroy CT 100 - container is running\n", "container did not stop\n",
		"unable to create CT 100 - unable to detect OS distribution\n", "please run as root\n",
		"Unknown option: foo\n400 unable to parse option\n", "400 too many arguments\n",
		"mount points configured, but 'rootfs' not set - aborting\n", "unable to parse volume ID 'x'\n",
		"unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'\n",
		"", "\r\n", "something else entirely\n", "400 Parameter verification failed.",
	} {
		f.Add(s, 255)
	}
	f.Fuzz(func(t *testing.T, stderr string, code int) {
		e := ParseStderr(stderr)
		if e == nil {
			t.Fatal("ParseStderr returned nil")
		}
		e.Verb, e.VMID, e.ExitCode = "create", 100, code
		if e.Stderr != stderr {
			t.Fatalf("Stderr not kept: %q", e.Stderr)
		}
		if e.Text != "" && !strings.Contains(stderr, e.Text) && !strings.Contains(strings.ReplaceAll(stderr, "\r\n", "\n"), e.Text) &&
			e.Reason != ReasonParams && e.Reason != ReasonNoContainerDirs {
			t.Fatalf("Text %q is not from stderr %q", e.Text, stderr)
		}
		if e.Error() == "" || e.Hint() == "" {
			t.Fatalf("empty message or hint for %q", stderr)
		}
		err := e.Err()
		if errs.KindOf(err) != e.Kind() {
			t.Fatalf("Err() kind %v, Kind() %v", errs.KindOf(err), e.Kind())
		}
		var pe *PctError
		if !errors.As(err, &pe) || pe != e {
			t.Fatalf("Err() does not wrap the PctError")
		}
		for _, p := range e.Params {
			if p.Param == "" || p.Message == "" {
				t.Fatalf("empty parameter problem %+v from %q", p, stderr)
			}
		}
	})
}
