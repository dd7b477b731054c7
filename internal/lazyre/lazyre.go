// Package lazyre is a regular expression compiled on first use.
//
// nexcage is a short-lived command: compiling every package-level
// regexp.MustCompile of every linked package at init cost more start-up
// time than anything else a runc-routed verb did besides running runc.
// Declaring them with New instead costs nothing until a pattern is used.
package lazyre

import (
	"regexp"
	"sync"
	"sync/atomic"
)

// Regexp is a regexp.Regexp compiled by its first use. It is safe for
// concurrent use. A pattern that does not compile panics at first use, as
// regexp.MustCompile would at init; CompileAll lets a test catch that.
type Regexp struct {
	expr string
	get  func() *regexp.Regexp
}

var (
	mu  sync.Mutex
	all []*Regexp

	compiles atomic.Int64 // for tests
)

// New returns a Regexp for expr without compiling it.
func New(expr string) *Regexp {
	r := &Regexp{expr: expr}
	// OnceValue, unlike Once, panics again on every use after a panic.
	r.get = sync.OnceValue(func() *regexp.Regexp {
		compiles.Add(1)
		return regexp.MustCompile(expr)
	})
	mu.Lock()
	all = append(all, r)
	mu.Unlock()
	return r
}

// CompileAll compiles every Regexp made by New so far and panics on the
// first pattern that does not compile (for tests).
func CompileAll() {
	mu.Lock()
	rs := append([]*Regexp(nil), all...)
	mu.Unlock()
	for _, r := range rs {
		r.Regexp()
	}
}

// Regexp returns the compiled expression.
func (r *Regexp) Regexp() *regexp.Regexp { return r.get() }

// MatchString is regexp.Regexp.MatchString.
func (r *Regexp) MatchString(s string) bool { return r.Regexp().MatchString(s) }

// FindStringSubmatch is regexp.Regexp.FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.Regexp().FindStringSubmatch(s) }

// FindSubmatch is regexp.Regexp.FindSubmatch.
func (r *Regexp) FindSubmatch(b []byte) [][]byte { return r.Regexp().FindSubmatch(b) }
