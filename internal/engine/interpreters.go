package engine

// #include "caddysnake.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// interpreter is one CPython interpreter and its owner OS thread, which
// runs the interpreter's configuration-time calls: importing and dropping
// apps, and for a sub-interpreter its creation and end. Requests never run
// here; they run on the pool's threads (WSGI, wsgi_pool.go) or the event
// loop thread (ASGI), each with a thread state of its own in this
// interpreter.
type interpreter struct {
	ci     *C.cs_interp
	calls  chan func()
	isMain bool
	ended  chan struct{} // closed once a sub-interpreter is finalized
	once   sync.Once
}

// mainInterpreter starts CPython if needed and returns its main
// interpreter, shared by every app that does not ask for its own.
func mainInterpreter() (*interpreter, error) {
	if err := startPython(); err != nil {
		return nil, err
	}
	return pythonMain.interp, nil
}

// liveSubInterpreters counts sub-interpreters made and not yet finalized.
var liveSubInterpreters atomic.Int64

// newSubInterpreter makes an isolated sub-interpreter with its own GIL
// (CPython 3.12+) on a new owner thread. The caller must end it.
func newSubInterpreter() (*interpreter, error) {
	if err := startPython(); err != nil {
		return nil, err
	}
	it := &interpreter{calls: make(chan func()), ended: make(chan struct{})}
	ready := make(chan error)
	go func() {
		// Locked for life: the thread states this goroutine makes and ends
		// belong to its OS thread, which exits with it.
		runtime.LockOSThread()
		defer close(it.ended)
		if cerr := C.caddysnake_interp_new(&it.ci); cerr != nil {
			ready <- errors.New(C.GoString(cerr))
			C.free(unsafe.Pointer(cerr))
			return
		}
		liveSubInterpreters.Add(1)
		ready <- nil
		for f := range it.calls {
			f()
		}
		if C.caddysnake_interp_end(it.ci) != 0 {
			engineLog().Warn("python: a sub-interpreter was left running instead of ended: " +
				"a thread the app started (not a daemon) is still alive 5s after its app was dropped")
			return
		}
		liveSubInterpreters.Add(-1)
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("creating a sub-interpreter failed: %v", err)
	}
	return it, nil
}

// do runs f on the owner thread and waits for it.
func (it *interpreter) do(f func()) {
	done := make(chan struct{})
	it.calls <- func() {
		defer close(done)
		f()
	}
	<-done
}

// end finalizes a sub-interpreter once every thread state made for it is
// gone (WSGI requests delete theirs as they finish; event loops end
// theirs first), and waits for it. Never while another interpreter imports
// an app (importMu): finalizing clears state CPython shares across
// interpreters, such as the extension cache an import is reading.
// The main interpreter is never ended.
func (it *interpreter) end() {
	if it.isMain {
		return
	}
	importMu.Lock()
	it.once.Do(func() { close(it.calls) })
	// Py_EndInterpreter first joins the interpreter's threads, which never
	// ends if the app started one that loops (sub-interpreters may not have
	// daemon threads): holding importMu through that would block every
	// later load, in any interpreter, so the hold is bounded.
	select {
	case <-it.ended:
		importMu.Unlock()
		return
	case <-time.After(endHoldsImports):
	}
	importMu.Unlock()
	engineLog().Warn("python: a sub-interpreter has not ended (a thread the app started still runs?); app loads go on meanwhile",
		zap.Duration("after", endHoldsImports))
	<-it.ended
}

// endHoldsImports bounds how long ending an interpreter holds back the
// imports of others.
const endHoldsImports = 10 * time.Second

// engineLog is the logger for what concerns no one app (the Caddy module
// sets it to Caddy's default logger).
var engineLog = zap.NewNop

// importMu makes apps import one at a time, in whatever interpreter.
// CPython's import machinery has process-wide state that sub-interpreters
// with their own GIL reach at once (the extension cache, lazily made
// argument-parser tuples and interned strings, init functions run in the
// main interpreter): 3.12 and 3.13.0 crashed when two interpreters
// imported the same C extensions in parallel. Serving stays parallel;
// only loading, a configuration-time cost, is serialized.
var importMu sync.Mutex

// appSource says where an app comes from: the folders its module is
// looked up in and was found in, and which interface it is served as.
type appSource struct {
	target, workingDir, defaultDir, venv string
	iface                                string // "wsgi" or "asgi"
}

// loadApp imports src's target in this interpreter (caddysnake/loader.py);
// it also returns the folder the module came from. The reference it
// returns is dropped with release.
func (it *interpreter) loadApp(src appSource) (*C.PyObject, string, error) {
	var obj *C.PyObject
	var origin string
	var loadErr error
	importMu.Lock()
	defer importMu.Unlock()
	it.do(func() {
		ct, cw, cv := C.CString(src.target), C.CString(src.workingDir), C.CString(src.venv)
		ci, cd := C.CString(src.iface), C.CString(src.defaultDir)
		defer freeAll(ct, cw, cv, ci, cd)
		var cerr, corigin *C.char
		obj = C.caddysnake_load_app(it.ci, ct, cw, cv, ci, cd, &corigin, &cerr)
		if obj == nil {
			loadErr = errors.New(C.GoString(cerr))
			C.free(unsafe.Pointer(cerr))
			return
		}
		origin = C.GoString(corigin)
		C.free(unsafe.Pointer(corigin))
	})
	return obj, origin, loadErr
}

// release drops an app reference from loadApp.
func (it *interpreter) release(obj *C.PyObject) {
	it.do(func() { C.caddysnake_release(it.ci, obj) })
}

// gilStatus says whether the GIL is on in this interpreter: "" on a build
// with a GIL, else "disabled", "enabled by module X" or "enabled".
func (it *interpreter) gilStatus() string {
	var s string
	it.do(func() {
		cs := C.caddysnake_gil_status(it.ci)
		s = C.GoString(cs)
		C.free(unsafe.Pointer(cs))
	})
	return s
}

// SubinterpretersSupported tells whether the linked CPython can make
// sub-interpreters with their own GIL (3.12+); known before it starts.
func SubinterpretersSupported() bool { return C.caddysnake_subinterpreters_supported() != 0 }

// LinkedPythonVersion is the CPython version this binary was built
// against; known before it starts.
func LinkedPythonVersion() string { return C.GoString(C.caddysnake_linked_version()) }

// FreeThreadedBuild tells whether the linked CPython was built with
// --disable-gil; known before it starts.
func FreeThreadedBuild() bool { return C.caddysnake_free_threaded_build() != 0 }
