// Package caddysnake is a Caddy HTTP handler that serves Python web apps
// (WSGI, PEP 3333; ASGI 3.0) from CPython embedded in the Caddy process.
//
// The request path: ServeHTTP (this file) hands the request, with what
// Caddy knows of it (the path before handle_path, the client IP behind
// trusted_proxies), to internal/nethttp, which checks it and lays it out as
// the engine's own Request and ResponseWriter; internal/engine (CPython,
// interpreters, the WSGI and ASGI bridges) serves it and knows nothing of
// Caddy or net/http's server. This package is the Caddy module around
// them: the handler and its settings (this file), the Caddyfile
// (caddyfile.go) and stop bounds (stop.go).
package caddysnake

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddysnake/caddysnake/internal/engine"
	"github.com/caddysnake/caddysnake/internal/nethttp"
	"github.com/caddysnake/caddysnake/internal/watch"
	"github.com/caddysnake/caddysnake/internal/worker"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("python", parseCaddyfile)
	// A terminal handler like reverse_proxy and php_fastcgi: after the
	// directives that rewrite or answer requests (rewrite, respond, ...), and
	// before file_server, so no global `order` option is needed.
	httpcaddyfile.RegisterDirectiveOrder("python", httpcaddyfile.Before, "file_server")
}

// Handler serves a Python WSGI or ASGI app from CPython embedded in Caddy.
//
// Caddyfile:
//
//	python "myapp.wsgi:application"
//
//	python {
//		module_wsgi "myapp.wsgi:application"   # or: module_asgi "main:app"
//		working_dir /srv/app
//		venv        /srv/app/.venv
//		threads     16                       # WSGI
//		max_wait    30s                      # WSGI
//		request_timeout      60s             # or off
//		request_body_timeout 30s             # or off
//		lifespan    auto                     # ASGI: on | off | auto
//		loop        asyncio                  # ASGI: asyncio | uvloop | auto
//		interpreters 2                       # own-GIL sub-interpreters (3.12+)
//		processes    2                       # worker processes (first cut)
//		max_requests 1000                    # processes: recycle after 1000 requests
//		max_requests_jitter 100              # processes: + 0..100 per worker
//		max_memory   512MiB                  # processes: recycle over this RSS
//		memory_limit 1GiB                    # processes: hard cap (address space)
//		user         www-data                # processes: workers run as (Caddy as root)
//		group        www-data
//		free_threaded                        # refuse to start with the GIL on
//		env         DJANGO_SETTINGS_MODULE mysite.settings   # repeatable
//		env_file    .env
//		watch        *.py templates/**       # reload on change (development)
//	}
//
// CPython starts once per process and lives across config reloads. By
// default apps are imported into its main interpreter, so apps in one Caddy
// share sys.modules and sys.path (module names must not collide); with
// interpreters, each app gets isolated sub-interpreters of its own.
type Handler struct {
	// The WSGI callable to serve, as "module:attribute" (the attribute may
	// be dotted; "module:factory()" calls a factory with no arguments).
	// Required.
	ModuleWSGI string `json:"module_wsgi,omitempty"`

	// The ASGI 3.0 app to serve, as "module:attribute" (ASGI 2
	// double-callables are accepted too). Exactly one of module_wsgi and
	// module_asgi is required.
	ModuleASGI string `json:"module_asgi,omitempty"`

	// A directory put first on sys.path, so the module resolves from it.
	// Relative paths are taken from Caddy's working directory. Default:
	// Caddy's working directory, put first on sys.path in its stead (as
	// uvicorn and gunicorn do), without claiming the module's name.
	WorkingDir string `json:"working_dir,omitempty"`

	// A virtual environment whose site-packages become importable (before
	// the interpreter's own). It must be built for the Python version this
	// Caddy is linked against. Default: none.
	Venv string `json:"venv,omitempty"`

	// Environment variables set for the app before it is imported
	// (Caddyfile: env NAME value, repeatable), over those of env_file. In
	// process mode (processes >= 1) they are in each worker process's
	// environment from its start, so variables CPython reads as it starts
	// (PYTHONHASHSEED, ...) work too. In Caddy's own process they are set
	// in os.environ of the app's interpreter(s), which also sets them in
	// the process environment: every app served there shares it (two such
	// apps setting one variable to different values are refused at
	// validate), a variable stays set after a config reload drops it, and
	// CPython's start-up variables have no effect.
	Env map[string]string `json:"env,omitempty"`

	// A file of NAME=value lines (a .env file: # comments, blank lines,
	// optional export and quotes, no ${VAR} expansion) set as env is;
	// env wins over it. Relative paths are taken from Caddy's working
	// directory; it is read at each config load, and a bad line fails
	// validate naming its number.
	EnvFile string `json:"env_file,omitempty"`

	// How many Python worker threads run the app's requests (per
	// interpreter), hence at most how many run at once. Requests queue for
	// them in arrival order. Under the GIL one worker runs while jobs keep
	// starting; another joins only when every running one is blocked (I/O,
	// sleeps) for a millisecond, so threads overlap waiting, not computing.
	// Each thread keeps its own Python thread state, so threading.local
	// works. Default: 16.
	Threads int `json:"threads,omitempty"`

	// How long a request may wait in that queue before a worker takes it;
	// after that it is answered 503 Service Unavailable. Default: 30s.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`

	// How long the app may take over one request, from the moment it
	// starts on a worker thread (WSGI) or its task starts (ASGI) to the end
	// of its response. Over it, WSGI raises caddysnake.RequestTimeout (a
	// BaseException) in the request's thread; a thread that does not come
	// back within a second (blocked inside C) is written off and replaced,
	// so the app keeps its capacity. ASGI cancels the task. The client gets
	// 504 Gateway Timeout if nothing was sent yet, else the response is
	// aborted; the log names the request and the Python stack it was stuck
	// in (ASGI: its await chain). WSGI streams that may run longer
	// (server-sent events) and long uploads or downloads need a larger
	// value: waiting for the client counts too. An ASGI response is exempt
	// once it streams (a body with more_body), and WebSockets always are: a
	// coroutine costs no thread. Default: 60s, the upstream timeout of
	// common proxies (nginx's proxy_read_timeout): a request that takes
	// longer is almost always stuck, and work that long belongs in a task
	// queue. A negative value (Caddyfile: off or 0) disables it.
	RequestTimeout caddy.Duration `json:"request_timeout,omitempty"`

	// How long reading the request body may wait for its next bytes (an
	// idle timeout: a slow but steady upload is not cut). Over it the
	// request gets 408 Request Timeout and the connection is closed.
	// Default: 30s, in line with FrankenPHP's request body timeout. A
	// negative value (Caddyfile: off or 0) disables it.
	RequestBodyTimeout caddy.Duration `json:"request_body_timeout,omitempty"`

	// ASGI lifespan protocol: "on" (the app must support it; a startup
	// failure stops Caddy from starting), "off" (never sent), or "auto"
	// (used if the app supports it). Default: auto.
	Lifespan string `json:"lifespan,omitempty"`

	// ASGI event loop: "asyncio", "uvloop" (must be installed in the venv)
	// or "auto" (uvloop when importable). Default: asyncio.
	Loop string `json:"loop,omitempty"`

	// How long the ASGI lifespan startup may take. Default: 60s.
	StartupTimeout caddy.Duration `json:"startup_timeout,omitempty"`

	// How long the ASGI lifespan shutdown may take. Default: 30s.
	ShutdownTimeout caddy.Duration `json:"shutdown_timeout,omitempty"`

	// The largest WebSocket message (bytes) an ASGI app accepts; a larger
	// one closes the connection with 1009 (message too big). Default: 16 MiB.
	WSMaxMessage int64 `json:"ws_max_message,omitempty"`

	// Whether ASGI WebSockets negotiate permessage-deflate (RFC 7692) with
	// clients that offer it: "on" (the default: each message compressed on
	// its own, so an open connection holds no compressor), "off", or
	// "context_takeover" (the context kept across messages as the client
	// allows: better compression of repetitive messages, about 1.2 MB per
	// connection). Once negotiated, every message the app sends is
	// compressed.
	WSCompression string `json:"ws_compression,omitempty"`

	// How many sub-interpreters serve the app. 0 (the default) imports it
	// into the main interpreter, shared with the other apps of this Caddy.
	// N >= 1 makes N isolated sub-interpreters with their own GIL (PEP 684,
	// CPython 3.12+), each importing the app on its own with its own
	// threads (WSGI: threads is per interpreter) or event loop (ASGI), so
	// they run Python in parallel; requests go to the least busy one. Each
	// has its own sys.modules, sys.path and globals. C extensions that do
	// not support sub-interpreters fail to import there (start-up names
	// them): such apps need the main interpreter.
	Interpreters int `json:"interpreters,omitempty"`

	// Require free-threaded execution: start only if the linked CPython is
	// a free-threaded build (3.13t and later) and the GIL is still disabled
	// after the app is imported (an extension that does not declare
	// free-threading support turns it back on). Without this setting such a
	// build still runs threads in parallel, and start-up logs a warning if
	// the GIL came back on. Default: false.
	FreeThreaded bool `json:"free_threaded,omitempty"`

	// How many worker processes serve the app. 0 (the default) serves it
	// in Caddy's own process. N >= 1 starts N processes from Caddy's own
	// executable (caddy python-worker), each embedding CPython and loading
	// the app with the settings above (threads, event loop, interpreters
	// and lifespan are per process); Caddy keeps parsing HTTP and hands
	// each request, already laid out, to the least busy worker. A worker
	// that dies fails only its requests in flight (502, or an aborted
	// response) and is restarted with back-off; one that fails to start 5
	// times in a row is given up.
	//
	// In process mode request_timeout escalates as gunicorn's timeout
	// does: a request still running 5s past it (stuck in C, where the
	// exception raised in its thread cannot reach it), or a WSGI thread
	// the engine had to write off, gets its worker replaced: the
	// replacement starts first, the old worker's other requests drain
	// within request_timeout, then it is killed (the stuck request fails).
	Processes int `json:"processes,omitempty"`

	// Recycle a worker process (processes >= 1) after it served this many
	// requests, plus a random 0..max_requests_jitter of its own so that
	// workers started together are not replaced together (gunicorn's
	// settings). The replacement is started and ready first; the old
	// worker gets no new request, finishes those in flight, then exits.
	// Default: 0, never.
	MaxRequests       int `json:"max_requests,omitempty"`
	MaxRequestsJitter int `json:"max_requests_jitter,omitempty"`

	// Recycle a worker process (processes >= 1) once its resident memory
	// (RSS, checked every second) is over this many bytes, as max_requests
	// does. Caddyfile: a size such as 512MiB or 1GB. Default: 0, never.
	MaxMemory int64 `json:"max_memory,omitempty"`

	// Run the worker processes (processes >= 1) as this user and group (a
	// name or a number each; the group defaults to the user's primary
	// group; supplementary groups are dropped). The privileges are dropped
	// as the worker is started, before the app is imported; a worker is a
	// fresh executable, so Caddy's TLS keys are never in its memory. Caddy
	// must run as root for this (refused at validate otherwise). The app's
	// files, its venv and libpython must be readable by that user.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`

	// A hard cap on each worker process's memory (processes >= 1): the
	// address space (RLIMIT_AS, not RSS) Python, the app and its threads
	// may map on top of what the worker had before Python started (about
	// 1.4 GiB of address space, mostly Go's reservations, never touched). Set in the
	// worker before the app is imported; MALLOC_ARENA_MAX=2 is set for it
	// too. An allocation past it fails: Python raises MemoryError (a 500
	// for that request, the worker serves on); if the runtime itself dies,
	// the worker is replaced as after any crash. Thread stacks (8 MiB
	// each) and reserved mappings count, so leave room: the "python app
	// ready" line says how much a worker uses after loading the app
	// (memory_limit_used). A limit too small to start a worker fails the
	// start with a log line saying so. max_memory is the soft limit, on
	// RSS, that recycles a worker gracefully. Caddyfile: a size such as
	// 1GiB. Default: 0, no cap.
	MemoryLimit int64 `json:"memory_limit,omitempty"`

	// Reload the app when its files change (development): the files
	// these globs match, polled every half second; a burst of saves is
	// one reload. A glob without a slash matches file names in any folder
	// ("*.py"); one with a slash matches paths, "**" spanning folders;
	// relative globs are taken from working_dir (else Caddy's working
	// directory). Hidden folders, venv, __pycache__, node_modules,
	// site-packages and the app's venv are not walked. An empty list
	// means ["*.py"]; absent, nothing is watched. A watched app is served
	// from worker processes (processes 0 becomes 1: the main interpreter
	// cannot re-import an app cleanly); a reload starts new workers, and
	// once they all loaded the app the old ones drain their requests in
	// flight. A reload that fails (a syntax or import error) keeps the old
	// workers serving and logs the traceback once; the next change tries
	// again.
	Watch []string `json:"watch,omitempty"`

	workerCred  *syscall.Credential // user and group, resolved by checkConfig
	env         []string            // "NAME=value": env over env_file (env.go)
	watcher     *watch.Watcher
	watchForced bool // processes 0 served as 1 for watch

	app    engine.App
	logger *zap.Logger
	stop   *stopper

	// Metrics and the admin API (observe.go, admin.go); serverName is
	// the Caddy server (srv0, ...) the handler is in.
	stats      *engine.Stats
	metricsReg *prometheus.Registry
	serverName string
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.python",
		New: func() caddy.Module { return new(Handler) },
	}
}

// resolveTimeout is a timeout setting as used: the default when unset, 0
// (off) when negative.
func resolveTimeout(d caddy.Duration, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return time.Duration(d)
}

// Provision validates the settings, starts CPython (once per process),
// imports the app into its interpreter(s) and starts its threads or event
// loops.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.watchProcesses()
	if err := h.checkConfig(); err != nil {
		return err
	}
	if err := h.resolveEnv(); err != nil {
		return err
	}
	if err := h.claimSharedEnv(ctx); err != nil {
		return err
	}
	cfg := engine.Config{Interpreters: h.Interpreters, FreeThreaded: h.FreeThreaded}
	defaultDir := defaultWorkingDir(h.WorkingDir)
	if h.ModuleASGI != "" {
		cfg.ASGI = &engine.ASGIOptions{
			Target:          h.ModuleASGI,
			WorkingDir:      h.WorkingDir,
			DefaultDir:      defaultDir,
			Venv:            h.Venv,
			Lifespan:        cmp.Or(h.Lifespan, "auto"),
			Loop:            cmp.Or(h.Loop, "asyncio"),
			StartupTimeout:  cmp.Or(time.Duration(h.StartupTimeout), engine.DefaultStartupTimeout),
			ShutdownTimeout: cmp.Or(time.Duration(h.ShutdownTimeout), engine.DefaultShutdownTimeout),
			WSMaxMessage:    cmp.Or(h.WSMaxMessage, engine.DefaultWSMaxMessage),
			WSCompression:   h.WSCompression,
			RequestTimeout:  resolveTimeout(h.RequestTimeout, engine.DefaultRequestTimeout),
			BodyTimeout:     resolveTimeout(h.RequestBodyTimeout, engine.DefaultRequestBodyTimeout),
		}
	} else {
		cfg.WSGI = &engine.WSGIOptions{
			Target:      h.ModuleWSGI,
			WorkingDir:  h.WorkingDir,
			DefaultDir:  defaultDir,
			Venv:        h.Venv,
			Threads:     cmp.Or(h.Threads, engine.DefaultThreads),
			MaxWait:     cmp.Or(time.Duration(h.MaxWait), engine.DefaultMaxWait),
			Timeout:     resolveTimeout(h.RequestTimeout, engine.DefaultRequestTimeout),
			BodyTimeout: resolveTimeout(h.RequestBodyTimeout, engine.DefaultRequestBodyTimeout),
		}
	}
	h.stats = new(engine.Stats)
	cfg.Stats = h.stats
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		h.serverName = srv.Name()
	}
	h.watchShutdown(ctx)
	var app engine.App
	var fields []zap.Field
	var err error
	if h.Processes > 0 {
		app, fields, err = worker.Start(cfg, worker.Options{
			Processes:         h.Processes,
			MaxRequests:       h.MaxRequests,
			MaxRequestsJitter: h.MaxRequestsJitter,
			MaxMemory:         h.MaxMemory,
			MemoryLimit:       h.MemoryLimit,
			Credential:        h.workerCred,
			StopBound:         h.stop.bound,
			Exiting:           caddy.Exiting,
			Env:               slices.Concat(h.env, h.watchEnv()),
			Stats:             h.stats,
		}, h.logger)
	} else {
		cfg.Env = h.env
		app, fields, err = engine.Load(cfg, h.logger)
	}
	if err != nil {
		return err
	}
	h.app = app
	if err := h.observe(ctx.GetMetricsRegistry()); err != nil {
		h.logger.Warn("python: the app's metrics could not be registered", zap.Error(err))
	}
	h.logger.Info("python app ready", append(append(h.readyFields(defaultDir, siteOf(ctx, h.moduleKey(), h.appName())), fields...), h.watchFields()...)...)
	h.startWatch()
	return nil
}

// checkConfig rejects settings that cannot work, naming the fix; it runs
// before Python starts so `caddy validate` reports these first.
func (h *Handler) checkConfig() error {
	target, field := h.ModuleWSGI, "module_wsgi"
	switch {
	case h.ModuleWSGI != "" && h.ModuleASGI != "":
		return fmt.Errorf("python: set either module_wsgi or module_asgi, not both")
	case h.ModuleASGI != "":
		target, field = h.ModuleASGI, "module_asgi"
		if h.Threads != 0 || h.MaxWait != 0 {
			return fmt.Errorf("python: threads and max_wait apply to WSGI apps; an ASGI app runs on one event loop per interpreter")
		}
	case h.ModuleWSGI == "":
		return fmt.Errorf(`python: module_wsgi or module_asgi is required, e.g. module_wsgi "myapp.wsgi:application"`)
	default:
		if h.Lifespan != "" || h.Loop != "" || h.StartupTimeout != 0 || h.ShutdownTimeout != 0 || h.WSMaxMessage != 0 || h.WSCompression != "" {
			return fmt.Errorf("python: lifespan, loop, startup_timeout, shutdown_timeout, ws_max_message and ws_compression apply to ASGI apps (module_asgi)")
		}
	}
	if mod, attr, ok := strings.Cut(target, ":"); !ok || mod == "" || attr == "" {
		return fmt.Errorf(`python: %s %q: expected "module:attribute", e.g. "myapp.wsgi:application"`, field, target)
	}
	switch h.Lifespan {
	case "", "on", "off", "auto":
	default:
		return fmt.Errorf("python: lifespan %q: expected on, off or auto", h.Lifespan)
	}
	switch h.Loop {
	case "", "asyncio", "uvloop", "auto":
	default:
		return fmt.Errorf("python: loop %q: expected asyncio, uvloop or auto", h.Loop)
	}
	for _, d := range []struct {
		name string
		path *string
	}{{"working_dir", &h.WorkingDir}, {"venv", &h.Venv}} {
		if *d.path == "" {
			continue
		}
		abs, err := filepath.Abs(*d.path)
		if err != nil {
			return fmt.Errorf("python: %s %q: %v", d.name, *d.path, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return fmt.Errorf("python: %s %q is not a directory", d.name, *d.path)
		}
		*d.path = abs
	}
	if h.WSMaxMessage < 0 {
		return fmt.Errorf("python: ws_max_message must be positive")
	}
	if err := engine.CheckWSCompression(h.WSCompression); err != nil {
		return fmt.Errorf("python: %v", err)
	}
	if h.Threads < 0 {
		return fmt.Errorf("python: threads must be at least 1, got %d", h.Threads)
	}
	if h.Processes < 0 {
		return fmt.Errorf("python: processes must be 0 (serve in Caddy's own process) or more, got %d", h.Processes)
	}
	if h.MaxRequests < 0 || h.MaxRequestsJitter < 0 || h.MaxMemory < 0 {
		return fmt.Errorf("python: max_requests, max_requests_jitter and max_memory must not be negative")
	}
	if h.MaxRequestsJitter > 0 && h.MaxRequests == 0 {
		return fmt.Errorf("python: max_requests_jitter %d without max_requests: set max_requests too", h.MaxRequestsJitter)
	}
	if h.MemoryLimit < 0 {
		return fmt.Errorf("python: memory_limit must not be negative")
	}
	if h.Processes == 0 && h.MemoryLimit > 0 {
		return fmt.Errorf("python: memory_limit caps the memory of worker processes, and Caddy's own process is never capped: set processes 1 or more, or remove memory_limit")
	}
	if h.Processes == 0 && (h.MaxRequests > 0 || h.MaxMemory > 0) {
		return fmt.Errorf("python: max_requests and max_memory recycle worker processes: set processes 1 or more")
	}
	if h.User != "" || h.Group != "" {
		if h.Processes == 0 {
			return fmt.Errorf("python: user and group apply to worker processes (Caddy's own process serves as Caddy's user): set processes 1 or more")
		}
		cred, err := workerCredential(h.User, h.Group)
		if err != nil {
			return err
		}
		h.workerCred = cred
	}
	if h.Interpreters < 0 {
		return fmt.Errorf("python: interpreters must be 0 (the main interpreter) or more, got %d", h.Interpreters)
	}
	if h.Interpreters > 0 && !engine.SubinterpretersSupported() {
		return fmt.Errorf("python: interpreters %d needs CPython 3.12 or later (sub-interpreters with their own GIL, PEP 684), "+
			"but this caddy is linked against Python %s: remove interpreters, or build caddy with make PYTHON=python3.12 (or later)",
			h.Interpreters, engine.LinkedPythonVersion())
	}
	if h.FreeThreaded && !engine.FreeThreadedBuild() {
		return fmt.Errorf("python: free_threaded needs a free-threaded CPython (built with --disable-gil, e.g. python3.13t), "+
			"but this caddy is linked against Python %s, which has a GIL: remove free_threaded, or build caddy with make PYTHON=python3.13t",
			engine.LinkedPythonVersion())
	}
	if h.MaxWait < 0 || h.StartupTimeout < 0 || h.ShutdownTimeout < 0 {
		return fmt.Errorf("python: durations must not be negative")
	}
	// Under a second, a request would be cut before the thread even had
	// its grace to unwind (and a timeout that short is a typo for one in
	// seconds).
	for _, t := range []struct {
		name string
		d    caddy.Duration
	}{{"request_timeout", h.RequestTimeout}, {"request_body_timeout", h.RequestBodyTimeout}} {
		if t.d > 0 && time.Duration(t.d) < time.Second {
			return fmt.Errorf("python: %s %v is under a second: use at least 1s, or off to disable it", t.name, time.Duration(t.d))
		}
	}
	return h.checkWatch()
}

// ServeHTTP hands the request to the app with what Caddy knows of it
// beyond the request itself (the path before a handle_path or
// strip_prefix, the client IP behind trusted_proxies), and answers the
// engine's errors as Caddy errors.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.stop.entered.Add(1)
	if !isUpgrade(r) { // a WebSocket stays inside for its life: not counted
		h.stop.inside.Add(1)
		defer h.stop.inside.Add(-1)
	}
	var via nethttp.Via
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		via.OriginalURL = orig.URL
	}
	via.ClientIP, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	via.Stats = h.stats
	return caddyError(nethttp.Serve(h.app, w, r, via, h.ModuleASGI != "", h.logger))
}

// caddyError maps the engine's answer with a status to Caddy's.
func caddyError(err error) error {
	if err == nil {
		return nil
	}
	var e *engine.Error
	if errors.As(err, &e) {
		return caddyhttp.Error(e.Status, e.Err)
	}
	return err
}

// Cleanup stops the app's threads once they finish their current requests
// (on config reload or stop).
func (h *Handler) Cleanup() error {
	h.stopWatch()
	defer h.waitWatch()
	if h.app == nil {
		return nil
	}
	h.unobserve()
	h.startDrain()
	if caddy.Exiting() || h.stop == nil || h.stop.entered.Load() == 0 || h.Processes == 0 || h.Watch != nil {
		// The servers are done (stop), or never served this app. In
		// process the app closes at once too: its threads would overlap
		// the new app's, and Go keeps every thread it ever made. A
		// watched app too: its close cuts a reload under way short.
		h.app.Close()
		return nil
	}
	go h.closeWhenQuiet()
	return nil
}
