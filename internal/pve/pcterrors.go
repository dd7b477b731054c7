package pve

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/lazyre"
)

// Reason is what a pct failure was about, recognised from pct's stderr by
// the exact texts Proxmox prints.
type Reason int

// Reasons of pct failures.
const (
	ReasonUnknown         Reason = iota
	ReasonParams                 // 400 Parameter verification failed.
	ReasonUnknownOption          // Unknown option: x
	ReasonArgCount               // 400 not enough / too many arguments
	ReasonAlreadyExists          // CT 100 already exists on node 'pve'
	ReasonTemplateMissing        // can't find file 'local:vztmpl/x'
	ReasonNoContainerDirs        // storage 'local' does not support container directories
	ReasonNoConfig               // Configuration file '...' does not exist
	ReasonLocked                 // CT is locked (backup)
	ReasonLockTimeout            // can't lock file '...' - got timeout
	ReasonAlreadyRunning         // CT 100 already running
	ReasonNotRunning             // CT 100 not running / container '100' not running!
	ReasonOSDetect               // unable to detect OS distribution
	ReasonNotRoot                // please run as root
	ReasonNoRootfs               // mount points configured, but 'rootfs' not set
	ReasonBadVolumeID            // unable to parse volume ID 'x'
	ReasonContentType            // content type needs to be 'vztmpl'
	ReasonDestroyRunning         // unable to destroy CT 100 - container is running
	ReasonShutdownTimeout        // container did not stop
	ReasonTimeout                // nexcage's own per-call timeout expired
)

var reasonNames = map[Reason]string{
	ReasonUnknown: "unknown", ReasonParams: "parameter-verification", ReasonUnknownOption: "unknown-option",
	ReasonArgCount: "argument-count", ReasonAlreadyExists: "already-exists", ReasonTemplateMissing: "template-missing",
	ReasonNoContainerDirs: "storage-no-rootdir", ReasonNoConfig: "config-missing", ReasonLocked: "locked",
	ReasonLockTimeout: "lock-timeout", ReasonAlreadyRunning: "already-running", ReasonNotRunning: "not-running",
	ReasonOSDetect: "os-detect", ReasonNotRoot: "not-root", ReasonNoRootfs: "no-rootfs",
	ReasonBadVolumeID: "bad-volume-id", ReasonContentType: "content-type", ReasonDestroyRunning: "destroy-running",
	ReasonShutdownTimeout: "shutdown-timeout", ReasonTimeout: "timeout",
}

func (r Reason) String() string { return reasonNames[r] }

// ParamProblem is one `<param>: <message>` line of a parameter error.
type ParamProblem struct {
	Param   string
	Message string
}

// PctError is a failed pct call with what Proxmox said about it.
type PctError struct {
	Verb     string   // create, start, ...
	VMID     int      // 0 when the verb has none
	Args     []string // argv without the binary
	ExitCode int
	Reason   Reason
	// Text is the line of pct's stderr that explains the failure (the
	// whole stderr, trimmed, when the reason is unknown).
	Text   string
	Stderr string // all of pct's stderr
	Params []ParamProblem

	// Details pulled out of Text when the message carries them.
	Node    string // already exists on node '<node>'
	File    string // can't find file '<file>' / config or lock file path
	Storage string // storage '<storage>' does not support ...
	Lock    string // CT is locked (<lock>)
	Option  string // Unknown option: <option>
	Volume  string // unable to parse volume ID '<volume>'
}

func (e *PctError) Error() string {
	cmd := "pct " + e.Verb
	if e.VMID != 0 {
		cmd += " " + strconv.Itoa(e.VMID)
	}
	switch {
	case e.Reason == ReasonParams && len(e.Params) > 0:
		ps := make([]string, len(e.Params))
		for i, p := range e.Params {
			ps[i] = p.Param + ": " + p.Message
		}
		return fmt.Sprintf("%s failed: parameter verification failed: %s", cmd, strings.Join(ps, "; "))
	case e.Text != "":
		return fmt.Sprintf("%s failed: %s", cmd, e.Text)
	default:
		return fmt.Sprintf("%s failed with exit status %d and no message", cmd, e.ExitCode)
	}
}

var (
	reAlreadyExists   = lazyre.New(`(?:CT|VM) (\d+) already exists on node '([^']*)'`)
	reCantFindFile    = lazyre.New(`can't find file '([^']*)'`)
	reNoContainerDirs = lazyre.New(`storage '([^']*)' does not support container directories`)
	reNoConfig        = lazyre.New(`Configuration file '([^']*)' does not exist`)
	reLocked          = lazyre.New(`CT is locked \(([^)]*)\)`)
	reLockTimeout     = lazyre.New(`can't lock file '([^']*)' - got timeout`)
	reAlreadyRunning  = lazyre.New(`CT \d+ already running`)
	reNotRunning      = lazyre.New(`CT \d+ not running|container '\d+' not running!`)
	reOSDetect        = lazyre.New(`unable to detect OS distribution`)
	reNotRoot         = lazyre.New(`please run as root`)
	reNoRootfs        = lazyre.New(`mount points configured, but 'rootfs' not set`)
	reBadVolumeID     = lazyre.New(`unable to parse volume ID '([^']*)'`)
	reContentType     = lazyre.New(`content type needs to be 'vztmpl'`)
	reDestroyRunning  = lazyre.New(`unable to destroy CT \d+ - container is running`)
	reShutdownTimeout = lazyre.New(`container did not stop`)
	reUnknownOption   = lazyre.New(`Unknown option: (\S+)`)
	reArgCount        = lazyre.New(`400 (?:not enough|too many) arguments`)
	reParamLine       = lazyre.New(`^([A-Za-z][A-Za-z0-9_\-\[\]]*): (.+)$`)
)

// ParseStderr recognises pct's failure from its stderr. It never returns
// nil; an unrecognised text gives ReasonUnknown with all of stderr.
func ParseStderr(stderr string) *PctError {
	e := &PctError{Stderr: stderr}
	lines := strings.Split(strings.ReplaceAll(stderr, "\r\n", "\n"), "\n")
	// The parameter block: its problems are listed one per line after the
	// header, up to the usage line or a blank line.
	for i, l := range lines {
		if strings.TrimSpace(l) != "400 Parameter verification failed." {
			continue
		}
		e.Reason = ReasonParams
		e.Text = "400 Parameter verification failed."
		for _, pl := range lines[i+1:] {
			m := reParamLine.FindStringSubmatch(strings.TrimSpace(pl))
			if m == nil {
				break
			}
			e.Params = append(e.Params, ParamProblem{Param: m[1], Message: m[2]})
		}
		for _, p := range e.Params {
			if m := reNoContainerDirs.FindStringSubmatch(p.Message); m != nil {
				e.Reason, e.Storage, e.Text = ReasonNoContainerDirs, m[1], p.Param+": "+p.Message
			}
		}
		return e
	}
	type matcher struct {
		re     *lazyre.Regexp
		reason Reason
		set    func(m []string)
	}
	matchers := []matcher{
		{reAlreadyExists, ReasonAlreadyExists, func(m []string) { e.Node = m[2] }},
		{reNoContainerDirs, ReasonNoContainerDirs, func(m []string) { e.Storage = m[1] }},
		{reCantFindFile, ReasonTemplateMissing, func(m []string) { e.File = m[1] }},
		{reContentType, ReasonContentType, nil},
		{reBadVolumeID, ReasonBadVolumeID, func(m []string) { e.Volume = m[1] }},
		{reNoConfig, ReasonNoConfig, func(m []string) { e.File = m[1] }},
		{reLocked, ReasonLocked, func(m []string) { e.Lock = m[1] }},
		{reLockTimeout, ReasonLockTimeout, func(m []string) { e.File = m[1] }},
		{reAlreadyRunning, ReasonAlreadyRunning, nil},
		{reDestroyRunning, ReasonDestroyRunning, nil},
		{reNotRunning, ReasonNotRunning, nil},
		{reOSDetect, ReasonOSDetect, nil},
		{reNotRoot, ReasonNotRoot, nil},
		{reNoRootfs, ReasonNoRootfs, nil},
		{reShutdownTimeout, ReasonShutdownTimeout, nil},
		{reUnknownOption, ReasonUnknownOption, func(m []string) { e.Option = m[1] }},
		{reArgCount, ReasonArgCount, nil},
	}
	for _, mt := range matchers {
		for _, l := range lines {
			if m := mt.re.FindStringSubmatch(l); m != nil {
				e.Reason, e.Text = mt.reason, strings.TrimSpace(l)
				if mt.set != nil {
					mt.set(m)
				}
				return e
			}
		}
	}
	e.Text = strings.TrimSpace(stderr)
	return e
}

// Kind is the nexcage error kind of the failure.
func (e *PctError) Kind() errs.Kind {
	switch e.Reason {
	case ReasonParams, ReasonNoContainerDirs:
		for _, p := range e.Params {
			if p.Param == "ostemplate" {
				return errs.KindTemplate
			}
		}
		return errs.KindInvalidConfig
	case ReasonUnknownOption:
		return errs.KindUnsupported
	case ReasonAlreadyExists:
		return errs.KindAlreadyExists
	case ReasonTemplateMissing, ReasonOSDetect, ReasonContentType:
		return errs.KindTemplate
	case ReasonNoConfig:
		return errs.KindNotFound
	case ReasonLocked, ReasonLockTimeout:
		return errs.KindLocked
	case ReasonAlreadyRunning, ReasonNotRunning, ReasonDestroyRunning:
		return errs.KindState
	case ReasonBadVolumeID:
		return errs.KindInvalidBundle
	case ReasonTimeout, ReasonShutdownTimeout:
		return errs.KindTimeout
	case ReasonArgCount, ReasonNoRootfs:
		return errs.KindInternal
	default:
		return errs.KindBackend
	}
}

// Hint says what the user can do about the failure.
func (e *PctError) Hint() string {
	vmid := strconv.Itoa(e.VMID)
	switch e.Reason {
	case ReasonParams:
		return "the values above were refused by Proxmox; fix them in the bundle, its annotations or the nexcage config"
	case ReasonNoContainerDirs:
		return fmt.Sprintf("storage '%s' cannot hold containers; set proxmox.storage (or the annotation org.nexcage.proxmox.storage) to a storage with content rootdir", e.Storage)
	case ReasonUnknownOption:
		return fmt.Sprintf("this pct does not know the option %s; it may need a newer Proxmox VE", e.Option)
	case ReasonAlreadyExists:
		return fmt.Sprintf("VMID %s is taken on node '%s'; choose a free range with proxmox.vmid_range", vmid, e.Node)
	case ReasonTemplateMissing:
		return fmt.Sprintf("template %s not found; list templates with `pveam list <storage>` or fetch one with `pveam download <storage> <template>`", e.File)
	case ReasonContentType:
		return "the image must be a container template volume (storage:vztmpl/<file>)"
	case ReasonBadVolumeID:
		return fmt.Sprintf("%q is not a Proxmox volume id (storage:volume) or an absolute host path; fix the mount source", e.Volume)
	case ReasonNoConfig:
		return fmt.Sprintf("Proxmox container %s does not exist (removed outside nexcage?); `nexcage delete --force` cleans up nexcage's record", vmid)
	case ReasonLocked:
		return fmt.Sprintf("a Proxmox task holds lock '%s' on CT %s; wait for it to finish, or run `pct unlock %s` if the lock is stale", e.Lock, vmid, vmid)
	case ReasonLockTimeout:
		return "another Proxmox task holds the container's config lock; try again later"
	case ReasonAlreadyRunning:
		return "the container is already running"
	case ReasonNotRunning:
		return "the container is not running"
	case ReasonDestroyRunning:
		return "stop the container first, or use delete --force"
	case ReasonOSDetect:
		return "pct cannot tell the template's distribution; set the annotation org.nexcage.proxmox.ostype (e.g. unmanaged)"
	case ReasonNotRoot:
		return "pct needs root; run nexcage as root"
	case ReasonTimeout:
		return "raise proxmox.timeout if the host is slow"
	case ReasonShutdownTimeout:
		return "the container ignored the halt signal; use kill or delete --force"
	case ReasonArgCount, ReasonNoRootfs:
		return "this is a nexcage bug; please report it with the command above"
	default:
		return "see pct's message above"
	}
}

// Err wraps e into a nexcage error with its kind and hint.
func (e *PctError) Err() error {
	return &errs.Error{Kind: e.Kind(), Err: e, Hint: e.Hint()}
}
