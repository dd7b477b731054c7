// Package errs defines nexcage's error kinds and the one place where they
// map to process exit codes (documented in docs/CLI.md).
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error so that the CLI can choose an exit code and
// callers can branch on it with errors.Is / errs.KindOf.
type Kind int

// Error kinds. The numeric exit codes are part of the user-facing contract.
const (
	KindInternal      Kind = iota // unexpected failure; exit 1
	KindUsage                     // bad command line; exit 2
	KindNotFound                  // container/template/file does not exist; exit 3
	KindAlreadyExists             // id or vmid already taken; exit 4
	KindInvalidBundle             // OCI bundle or config.json invalid; exit 5
	KindInvalidConfig             // nexcage config file invalid; exit 6
	KindTemplate                  // template/image cannot be resolved or is invalid; exit 7
	KindBackend                   // the backend (runc, crun, pct) failed; exit 8
	KindLocked                    // container or vmid locked/busy, lock timeout; exit 9
	KindState                     // operation not allowed in the container's current state; exit 10
	KindUnsupported               // feature or runtime not supported; exit 11
	KindTimeout                   // an external command timed out; exit 12
)

var kindNames = map[Kind]string{
	KindInternal:      "internal",
	KindUsage:         "usage",
	KindNotFound:      "not-found",
	KindAlreadyExists: "already-exists",
	KindInvalidBundle: "invalid-bundle",
	KindInvalidConfig: "invalid-config",
	KindTemplate:      "template",
	KindBackend:       "backend",
	KindLocked:        "locked",
	KindState:         "invalid-state",
	KindUnsupported:   "unsupported",
	KindTimeout:       "timeout",
}

// String returns the kind's stable name as shown in logs and docs.
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ExitCode is the process exit status for an error of this kind.
func (k Kind) ExitCode() int {
	if k == KindInternal {
		return 1
	}
	return int(k) + 1
}

// Error is an error with a kind, an optional hint telling the user what to
// do next, and an optional wrapped cause.
type Error struct {
	Kind Kind
	Msg  string // what failed, for which object, and why
	Hint string // what to do next; may be empty
	Err  error  // wrapped cause; may be nil
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Err != nil {
		if s == "" {
			s = e.Err.Error()
		} else {
			s += ": " + e.Err.Error()
		}
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errs.KindNotFound-sentinel) style checks possible
// through Sentinel values.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Err == nil && t.Hint == "" && t.Kind == e.Kind
}

// New returns an error of kind k with a formatted message.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k wrapping err with a formatted message.
func Wrap(k Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: err}
}

// WithHint returns a copy of e with the hint set.
func (e *Error) WithHint(format string, args ...any) *Error {
	c := *e
	c.Hint = fmt.Sprintf(format, args...)
	return &c
}

// KindOf returns the kind of the outermost *Error in err's chain, or
// KindInternal when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// ExitCode returns the exit status for err (0 for nil).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	return KindOf(err).ExitCode()
}
