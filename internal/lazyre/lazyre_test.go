package lazyre

import (
	"sync"
	"testing"
)

func TestCompiledOnFirstUseOnly(t *testing.T) {
	before := compiles.Load()
	r := New(`^a(b+)$`)
	if compiles.Load() != before {
		t.Fatal("compiled at New")
	}
	if !r.MatchString("abb") || r.MatchString("ac") {
		t.Fatal("MatchString")
	}
	if m := r.FindStringSubmatch("abbb"); len(m) != 2 || m[1] != "bbb" {
		t.Fatalf("FindStringSubmatch: %q", m)
	}
	if n := compiles.Load() - before; n != 1 {
		t.Fatalf("compiled %d times", n)
	}
	if r.Regexp().String() != `^a(b+)$` {
		t.Fatal("String")
	}
}

func TestConcurrentFirstUse(t *testing.T) {
	r := New(`x+`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !r.MatchString("xx") {
				t.Error("no match")
			}
		}()
	}
	wg.Wait()
}

func TestBadPatternPanicsAtFirstUseAndInCompileAll(t *testing.T) {
	r := New(`(`)
	defer func() {
		mu.Lock()
		all = all[:len(all)-1] // keep the registry clean for other tests
		mu.Unlock()
	}()
	for name, f := range map[string]func(){"use": func() { r.MatchString("x") }, "CompileAll": CompileAll} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: a bad pattern did not panic", name)
				}
			}()
			f()
		}()
	}
}
