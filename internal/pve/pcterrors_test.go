package pve

import (
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// TestParseStderr covers every pct text of proxmox-pct.md §5.
func TestParseStderr(t *testing.T) {
	usage := "pct create <vmid> <ostemplate> [OPTIONS]\n"
	tests := []struct {
		name   string
		stderr string
		reason Reason
		kind   errs.Kind
		text   string // substring of Error()
		hint   string // substring of the hint
		check  func(t *testing.T, e *PctError)
	}{
		{"already exists", "CT 100 already exists on node 'pve'\n", ReasonAlreadyExists, errs.KindAlreadyExists,
			"CT 100 already exists on node 'pve'", "vmid_range", func(t *testing.T, e *PctError) {
				if e.Node != "pve" {
					t.Errorf("node = %q", e.Node)
				}
			}},
		{"already exists qemu", "unable to create CT 100 - VM 100 already exists on node 'pve2'\n", ReasonAlreadyExists, errs.KindAlreadyExists, "VM 100", "pve2", nil},
		{"parameter block", "400 Parameter verification failed.\nmemory: value must have a minimum value of 16\nhostname: invalid format - value does not look like a valid DNS name\n" + usage,
			ReasonParams, errs.KindInvalidConfig, "memory: value must have a minimum value of 16; hostname: invalid format", "refused", func(t *testing.T, e *PctError) {
				if len(e.Params) != 2 || e.Params[0].Param != "memory" || e.Params[1].Param != "hostname" {
					t.Errorf("params = %+v", e.Params)
				}
			}},
		{"parameter ostemplate", "400 Parameter verification failed.\nostemplate: value may only be 255 characters long\n" + usage, ReasonParams, errs.KindTemplate, "ostemplate", "", nil},
		{"storage no rootdir", "400 Parameter verification failed.\nstorage: storage 'local' does not support container directories\n" + usage,
			ReasonNoContainerDirs, errs.KindInvalidConfig, "storage 'local' does not support container directories",
			"storage 'local' cannot hold containers; set proxmox.storage", func(t *testing.T, e *PctError) {
				if e.Storage != "local" {
					t.Errorf("storage = %q", e.Storage)
				}
			}},
		{"storage no rootdir bare", "unable to create CT 101 - storage 'local' does not support container directories\n", ReasonNoContainerDirs, errs.KindInvalidConfig, "local", "proxmox.storage", nil},
		{"unknown option", "Unknown option: entrypoint\n400 unable to parse option\n" + usage, ReasonUnknownOption, errs.KindUnsupported, "Unknown option: entrypoint", "newer Proxmox", nil},
		{"not enough arguments", "400 not enough arguments\n" + usage, ReasonArgCount, errs.KindInternal, "400 not enough arguments", "bug", nil},
		{"too many arguments", "400 too many arguments\n" + usage, ReasonArgCount, errs.KindInternal, "too many", "bug", nil},
		{"template missing", "unable to create CT 100 - can't find file 'local:vztmpl/x.tar.zst'\n", ReasonTemplateMissing, errs.KindTemplate,
			"can't find file", "pveam", func(t *testing.T, e *PctError) {
				if e.File != "local:vztmpl/x.tar.zst" {
					t.Errorf("file = %q", e.File)
				}
			}},
		{"content type", "unable to create CT 100 - unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'\n", ReasonContentType, errs.KindTemplate, "content type", "vztmpl", nil},
		{"bad volume id", "unable to parse volume ID 'foo'\n", ReasonBadVolumeID, errs.KindInvalidBundle, "foo", "mount source", nil},
		{"config missing", "Configuration file 'nodes/pve/lxc/100.conf' does not exist\n", ReasonNoConfig, errs.KindNotFound, "does not exist", "delete --force", func(t *testing.T, e *PctError) {
			if e.File != "nodes/pve/lxc/100.conf" {
				t.Errorf("file = %q", e.File)
			}
		}},
		{"locked", "CT is locked (backup)\n", ReasonLocked, errs.KindLocked, "CT is locked (backup)", "pct unlock", func(t *testing.T, e *PctError) {
			if e.Lock != "backup" {
				t.Errorf("lock = %q", e.Lock)
			}
		}},
		{"lock timeout", "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout\n", ReasonLockTimeout, errs.KindLocked, "got timeout", "try again", nil},
		{"already running", "CT 100 already running\n", ReasonAlreadyRunning, errs.KindState, "already running", "", nil},
		{"not running", "CT 100 not running\n", ReasonNotRunning, errs.KindState, "not running", "", nil},
		{"exec not running", "container '100' not running!\n", ReasonNotRunning, errs.KindState, "not running", "", nil},
		{"destroy running", "unable to destroy CT 100 - container is running\n", ReasonDestroyRunning, errs.KindState, "container is running", "--force", nil},
		{"shutdown timeout", "container did not stop\n", ReasonShutdownTimeout, errs.KindTimeout, "did not stop", "", nil},
		{"os detect", "unable to create CT 100 - unable to detect OS distribution\n", ReasonOSDetect, errs.KindTemplate, "unable to detect OS distribution", "org.nexcage.proxmox.ostype", nil},
		{"not root", "please run as root\n", ReasonNotRoot, errs.KindBackend, "please run as root", "as root", nil},
		{"mount points without rootfs", "mount points configured, but 'rootfs' not set - aborting\n", ReasonNoRootfs, errs.KindInternal, "rootfs", "bug", nil},
		{"unknown keeps stderr", "something odd\nhappened here\n", ReasonUnknown, errs.KindBackend, "something odd\nhappened here", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := ParseStderr(tc.stderr)
			e.Verb, e.VMID = "create", 100
			if e.Reason != tc.reason {
				t.Fatalf("reason = %v, want %v", e.Reason, tc.reason)
			}
			err := e.Err()
			if k := errs.KindOf(err); k != tc.kind {
				t.Errorf("kind = %v, want %v", k, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "pct create 100") {
				t.Errorf("error %q lacks %q or the command", err, tc.text)
			}
			if !strings.Contains(e.Hint(), tc.hint) {
				t.Errorf("hint %q lacks %q", e.Hint(), tc.hint)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}
