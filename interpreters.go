package caddysnake

// #include "caddysnake.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"
	"net/http"
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
// here; they run on the Go threads serving them (WSGI) or the event loop
// thread (ASGI), each with a thread state of its own in this interpreter.
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

// loadApp imports target in this interpreter (caddysnake/loader.py). The
// reference it returns is dropped with release.
func (it *interpreter) loadApp(target, workingDir, venv string) (*C.PyObject, error) {
	var obj *C.PyObject
	var loadErr error
	importMu.Lock()
	defer importMu.Unlock()
	it.do(func() {
		ct, cw, cv := C.CString(target), C.CString(workingDir), C.CString(venv)
		defer freeAll(ct, cw, cv)
		var cerr *C.char
		obj = C.caddysnake_load_app(it.ci, ct, cw, cv, &cerr)
		if obj == nil {
			loadErr = errors.New(C.GoString(cerr))
			C.free(unsafe.Pointer(cerr))
		}
	})
	return obj, loadErr
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

// spreadApp serves one app from several interpreters, each request going
// to the least busy one (requests in flight, WebSockets included). Ties
// rotate, so light traffic still reaches every interpreter.
type spreadApp struct {
	insts []servedApp
	busy  []atomic.Int64
	next  atomic.Uint32
}

func newSpreadApp(insts []servedApp) servedApp {
	if len(insts) == 1 {
		return insts[0]
	}
	return &spreadApp{insts: insts, busy: make([]atomic.Int64, len(insts))}
}

func (s *spreadApp) Serve(w http.ResponseWriter, r *http.Request) error {
	n := len(s.insts)
	start := int(s.next.Add(1)) % n
	best, least := start, s.busy[start].Load()
	for k := 1; k < n; k++ {
		i := (start + k) % n
		if b := s.busy[i].Load(); b < least {
			best, least = i, b
		}
	}
	s.busy[best].Add(1)
	defer s.busy[best].Add(-1)
	return s.insts[best].Serve(w, r)
}

// Close closes every instance at once: ASGI lifespan shutdowns run in
// parallel instead of one after another.
func (s *spreadApp) Close() {
	var wg sync.WaitGroup
	for _, in := range s.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.Close()
		}()
	}
	wg.Wait()
}

// Abandon gives up on every instance's requests at once.
func (s *spreadApp) Abandon() {
	var wg sync.WaitGroup
	for _, in := range s.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.Abandon()
		}()
	}
	wg.Wait()
}

// loadInstances loads an app into the main interpreter (n == 0) or into n
// new sub-interpreters. load owns the interpreter it is given: on failure it
// must have ended it. If any fails, the others are closed and its error is
// returned.
//
// The first sub-interpreter loads alone: an app that cannot load (a C
// extension that refuses sub-interpreters, a syntax error) fails there, and
// no sibling is made just to fail the same way. That is also what keeps
// CPython 3.13.0 up: two interpreters made together that both failed to
// import FastAPI crashed in the second one's Py_EndInterpreter (a freed
// object of the first on its free list). The rest load in parallel, their
// imports one at a time (importMu) and their serving on their own GILs.
func loadInstances(n int, load func(it *interpreter) (servedApp, error)) ([]servedApp, error) {
	if n == 0 {
		it, err := mainInterpreter()
		if err != nil {
			return nil, err
		}
		app, err := load(it)
		if err != nil {
			return nil, err
		}
		return []servedApp{app}, nil
	}
	loadOne := func() (servedApp, error) {
		it, err := newSubInterpreter()
		if err != nil {
			return nil, err
		}
		return load(it)
	}
	first, err := loadOne()
	if err != nil {
		return nil, err
	}
	apps := make([]servedApp, n)
	errs := make([]error, n)
	apps[0] = first
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			apps[i], errs[i] = loadOne()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			continue
		}
		for _, a := range apps {
			if a != nil {
				a.Close()
			}
		}
		return nil, err // the first: the others are usually the same
	}
	return apps, nil
}
