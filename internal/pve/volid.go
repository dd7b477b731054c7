package pve

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/nexcage/nexcage/internal/lazyre"
)

var (
	reVolumeID  = lazyre.New(`^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$`)
	reStorageID = lazyre.New(`(?i)^[a-z][a-z0-9\-_.]*[a-z0-9]$`)
	reVztmplVol = lazyre.New(`^vztmpl/([^/]+)$`)
)

// TemplateExtensions are the archive suffixes Proxmox accepts for
// container templates (ostemplate).
var TemplateExtensions = []string{".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"}

// MaxTemplateNameLen is the longest template file name accepted.
const MaxTemplateNameLen = 255

// ParseVolumeID splits `storage:volname` (PVE::Storage::parse_volume_id).
func ParseVolumeID(volid string) (storage, volname string, err error) {
	m := reVolumeID.FindStringSubmatch(volid)
	if m == nil {
		return "", "", fmt.Errorf("unable to parse volume ID '%s'", volid)
	}
	return m[1], m[2], nil
}

// ValidStorageID reports whether s is a valid storage id (pve-storage-id).
func ValidStorageID(s string) bool { return reStorageID.MatchString(s) }

// VerifyStorageID returns Proxmox's error for an invalid storage id.
func VerifyStorageID(s string) error {
	if !ValidStorageID(s) {
		return fmt.Errorf("storage ID '%s' contains illegal characters", s)
	}
	return nil
}

// TemplateVolume parses the volname part of a template volume id
// (`vztmpl/<file>`) and returns the file name.
func TemplateVolume(volname string) (string, error) {
	m := reVztmplVol.FindStringSubmatch(volname)
	if m == nil {
		return "", fmt.Errorf("unable to parse directory volume name '%s'", volname)
	}
	if err := ValidateTemplateName(m[1]); err != nil {
		return "", err
	}
	return m[1], nil
}

// ContentType returns the content type a dir-storage volname belongs to
// (`vztmpl`, `iso`, `backup`, `images`, `rootdir`, `snippets`), or "".
func ContentType(volname string) string {
	switch {
	case strings.HasPrefix(volname, "vztmpl/"):
		return "vztmpl"
	case strings.HasPrefix(volname, "iso/"):
		return "iso"
	case strings.HasPrefix(volname, "backup/"), strings.HasPrefix(volname, "dump/"):
		return "backup"
	case strings.HasPrefix(volname, "snippets/"):
		return "snippets"
	case strings.HasPrefix(volname, "import/"):
		return "import"
	}
	if regexp.MustCompile(`^\d+/(subvol|basevol)-`).MatchString(volname) {
		return "rootdir"
	}
	if regexp.MustCompile(`^\d+/`).MatchString(volname) {
		return "images"
	}
	return ""
}

// TemplateVolumeID builds `storage:vztmpl/<file>`.
func TemplateVolumeID(storage, file string) string { return storage + ":vztmpl/" + file }

// ValidateTemplateName checks a template file name: one path element,
// a known archive extension, at most 255 characters, no control chars.
func ValidateTemplateName(name string) error {
	if name == "" || name != path.Base(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid template name '%s'", name)
	}
	if len(name) > MaxTemplateNameLen {
		return fmt.Errorf("template name '%s' is longer than %d characters", name, MaxTemplateNameLen)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("template name contains a control character")
		}
	}
	if !HasTemplateExtension(name) {
		return fmt.Errorf("template name '%s' does not end in one of %s", name, strings.Join(TemplateExtensions, ", "))
	}
	return nil
}

// HasTemplateExtension reports whether name ends in an accepted archive suffix.
func HasTemplateExtension(name string) bool {
	for _, ext := range TemplateExtensions {
		if strings.HasSuffix(name, ext) && len(name) > len(ext) {
			return true
		}
	}
	return false
}
