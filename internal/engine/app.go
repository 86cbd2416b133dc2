package engine

import (
	"cmp"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// App is a loaded WSGI or ASGI app, over one interpreter or several.
type App interface {
	// Serve answers r through w. Its error is an *Error (the engine
	// answers with that status instead of the app), ErrAbort, or another
	// error (the server answers 500).
	Serve(r *Request, w ResponseWriter) error
	// Close stops admitting requests and drains those in flight, then
	// drops the app; it does not wait for them on a reload.
	Close()
	// Abandon gives up on the requests still in flight once stop's
	// deadline passed: they return from Serve at once (503 if nothing was
	// sent, else aborted), after a short grace for the app to unwind.
	Abandon()
}

// Config says what to load and how to serve it: exactly one of WSGI and
// ASGI is set.
type Config struct {
	WSGI *WSGIOptions
	ASGI *ASGIOptions
	// 0: the main interpreter; N: N own-GIL sub-interpreters.
	Interpreters int
	// Refuse an app whose import turned the GIL back on.
	FreeThreaded bool
	// "NAME=value" variables set in os.environ of each interpreter before
	// the app is imported (the env and env_file settings).
	Env []string `json:",omitempty"`
	// Stats, if set, gets the app's counters (stats.go); not sent to
	// worker processes.
	Stats *Stats `json:"-"`
}

// Load starts CPython if need be and loads the app as cfg says. The fields
// describe what was loaded, for the start-up log line.
func Load(cfg Config, logger *zap.Logger) (App, []zap.Field, error) {
	var load func(it *interpreter) (App, error)
	var fields []zap.Field
	target, kind := "", ""
	if o := cfg.ASGI; o != nil {
		target, kind = o.Target, "module_asgi"
		load = func(it *interpreter) (App, error) { return LoadASGI(it, *o, logger) }
		fields = []zap.Field{zap.String("lifespan", o.Lifespan), zap.String("loop", o.Loop)}
	} else {
		o := cfg.WSGI
		target, kind = o.Target, "module_wsgi"
		load = func(it *interpreter) (App, error) {
			app, err := LoadWSGI(it, *o, logger)
			if err == nil {
				app.pool.observe(cfg.Stats, o.Threads)
			}
			return app, err
		}
		fields = []zap.Field{zap.Int("threads_each", o.Threads), zap.Duration("max_wait", o.MaxWait),
			zap.Duration("request_timeout", o.Timeout), zap.Duration("request_body_timeout", o.BodyTimeout)}
	}
	var gil []string
	var origin string
	var gilMu sync.Mutex
	insts, err := loadInstances(cfg.Interpreters, func(it *interpreter) (App, error) {
		if err := it.setEnviron(cfg.Env); err != nil {
			it.end()
			return nil, err
		}
		app, err := load(it)
		if err != nil {
			return nil, err
		}
		status := it.gilStatus()
		if cfg.FreeThreaded && status != "disabled" {
			app.Close()
			return nil, fmt.Errorf("free_threaded is set, but importing the app turned the GIL on (%s): "+
				"use extensions that support free-threading, start caddy with PYTHON_GIL=0 at your own risk, "+
				"or remove free_threaded", status)
		}
		gilMu.Lock()
		switch a := app.(type) { // the same in every interpreter
		case *WSGIApp:
			origin = a.origin
		case *ASGIApp:
			origin = a.origin
		}
		gil = append(gil, status)
		gilMu.Unlock()
		return app, nil
	})
	if err != nil {
		return nil, nil, loadError(target, err)
	}
	mode, count := "main", 1
	if cfg.Interpreters > 0 {
		mode, count = "sub-interpreters (own GIL)", cfg.Interpreters
	}
	fields = append([]zap.Field{
		zap.String(kind, target),
		zap.String("python", PythonVersion()),
		zap.String("interpreter", mode),
		zap.Int("interpreters", count),
		zap.String("scheduling", schedulingPolicy),
		zap.String("app_from", cmp.Or(origin, "(built in)")),
	}, fields...)
	if FreeThreadedBuild() {
		fields = append(fields, zap.String("gil", strings.Join(gil, "; ")))
	}
	for _, g := range gil {
		if strings.HasPrefix(g, "enabled") {
			logger.Warn("this free-threaded CPython turned the GIL back on while importing the app; "+
				"threads will not run Python in parallel", zap.String(kind, target), zap.String("gil", g))
			break
		}
	}
	return newSpreadApp(insts), fields, nil
}

// loadError says which app did not load, once: the loader's own messages
// name it already.
func loadError(target string, err error) error {
	if msg, quoted := err.Error(), fmt.Sprintf("%q", target); strings.HasPrefix(msg, "cannot load "+quoted) ||
		strings.HasPrefix(msg, quoted+" ") {
		return fmt.Errorf("python: %w", err)
	}
	return fmt.Errorf("python: cannot load %q: %w", target, err)
}

// Host connects the engine to the server that embeds it: whether the
// process is on its way out (a drain then need not wait), and the logger
// for what concerns no one app.
func Host(exiting func() bool, log func() *zap.Logger) {
	processExiting, engineLog = exiting, log
}

// DefaultRequestTimeout and DefaultRequestBodyTimeout are the timeouts
// used when none is configured.
const (
	DefaultRequestTimeout     = 60 * time.Second
	DefaultRequestBodyTimeout = 30 * time.Second
)

// spreadApp serves one app from several interpreters, each request going
// to the least busy one (requests in flight, WebSockets included). Ties
// rotate, so light traffic still reaches every interpreter.
type spreadApp struct {
	insts []App
	busy  []atomic.Int64
	next  atomic.Uint32
}

func newSpreadApp(insts []App) App {
	if len(insts) == 1 {
		return insts[0]
	}
	return &spreadApp{insts: insts, busy: make([]atomic.Int64, len(insts))}
}

func (s *spreadApp) Serve(r *Request, w ResponseWriter) error {
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
	return s.insts[best].Serve(r, w)
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
func loadInstances(n int, load func(it *interpreter) (App, error)) ([]App, error) {
	if n == 0 {
		it, err := mainInterpreter()
		if err != nil {
			return nil, err
		}
		app, err := load(it)
		if err != nil {
			return nil, err
		}
		return []App{app}, nil
	}
	loadOne := func() (App, error) {
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
	apps := make([]App, n)
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
