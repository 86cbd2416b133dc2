package caddysnake

import (
	"fmt"
	"path/filepath"
	"testing"
)

type nilStringer struct{ s string }

func (n *nilStringer) String() string { return n.s } // dereferences a nil receiver

// With Python started, faulthandler's handlers are installed: a nil
// dereference in Go code must still be a panic that recover catches (fmt
// prints it as a %!v(PANIC=...)), not a crash of the process. Without
// faultchain.c, faulthandler took the SIGSEGV and Go killed the process.
func TestGoNilDereferenceStaysRecoverableWithFaulthandler(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	serveApp(t, &Handler{ModuleWSGI: "unit_app:hello", WorkingDir: testdata, Threads: 1})
	var n *nilStringer
	got := fmt.Sprint(n)
	if got != "<nil>" {
		t.Logf("fmt.Sprint of a nil Stringer: %q", got)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("no panic from a nil dereference")
			}
		}()
		var p *int
		_ = *p
	}()
}
