package engine

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

type nilStringer struct{ s string }

func (n *nilStringer) String() string { return n.s } // dereferences a nil receiver

// With Python started, faulthandler's handlers are installed: a nil
// dereference in Go code must still be a panic that recover catches (fmt
// prints it as a %!v(PANIC=...)), not a crash of the process. Without
// faultchain.c, faulthandler took the SIGSEGV and Go killed the process.
func TestGoNilDereferenceStaysRecoverableWithFaulthandler(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	app, _, err := Load(Config{WSGI: &WSGIOptions{Target: "unit_app:hello", WorkingDir: testdata, Threads: 1, MaxWait: time.Second}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
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
