package proxmox

import (
	"fmt"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
)

// Every value that reaches a pct argument or the .conf file passes one of
// these checks first. They refuse anything that could add a config line
// (newline, control characters) or smuggle extra properties into a
// Proxmox property string (`,` and `=`), and they name the offending field.

var (
	reDNSLabel  = lazyre.New(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	reBridge    = lazyre.New(`^[A-Za-z0-9_.-]{1,15}$`)
	reIfName    = lazyre.New(`^[A-Za-z0-9_.-]{1,15}$`)
	reTag       = lazyre.New(`^[a-z0-9_][a-z0-9_+.-]*$`)
	reStorage   = lazyre.New(`^[a-z][a-z0-9_.-]*[a-z0-9]$`)
	reVolumeID  = lazyre.New(`^([a-z][a-z0-9_.-]*[a-z0-9]):(.+)$`)
	reCgroupKey = lazyre.New(`^[a-z0-9_]+(\.[a-z0-9_]+)+$`)
)

// invalid returns the error for a bad value of a bundle field.
func invalid(field, format string, args ...any) *errs.Error {
	return errs.New(errs.KindInvalidBundle, "%s: %s", field, fmt.Sprintf(format, args...))
}

// unsupported returns the error for a field Proxmox cannot express.
func unsupported(field, format string, args ...any) *errs.Error {
	return errs.New(errs.KindUnsupported, "%s: %s", field, fmt.Sprintf(format, args...))
}

// checkText refuses control characters (a newline would start a new line
// in the .conf file) and surrounding blanks (the .conf reader trims them).
func checkText(field, v string) error {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return invalid(field, "value %q contains a control character; refusing it because it could inject configuration", v)
		}
	}
	if v != strings.TrimSpace(v) {
		return invalid(field, "value %q has leading or trailing blanks, which the Proxmox config format cannot keep", v)
	}
	return nil
}

// checkProp checks a value placed inside a Proxmox property string
// (`a=b,c=d`): besides checkText it refuses `,`, `=` and `;`, which would
// split it into extra properties or list items.
func checkProp(field, v string) error {
	if v == "" {
		return invalid(field, "empty value")
	}
	if err := checkText(field, v); err != nil {
		return err
	}
	if strings.ContainsAny(v, ",=; \t") {
		return invalid(field, "value %q contains one of `,` `=` `;` or a blank, which would smuggle extra settings into a Proxmox property string", v)
	}
	return nil
}

// checkPath checks an absolute path used inside a property string.
func checkPath(field, p string) error {
	if err := checkProp(field, p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return invalid(field, "path %q is not absolute", p)
	}
	return nil
}

// isVolumeID reports whether s looks like a Proxmox volume id
// (`storage:volume`) rather than a host path.
func isVolumeID(s string) bool {
	return !strings.HasPrefix(s, "/") && reVolumeID.MatchString(s)
}
