// Package caddysnake is a Caddy HTTP handler that serves Python web apps
// (WSGI, PEP 3333; ASGI 3.0) from CPython embedded in the Caddy process.
//
// The Python core (python.go, threads.go, wsgi.go, asgi*.go, callbacks.go
// and the C bridge) knows nothing of Caddy; this file is the thin Caddy module around
// it: configuration, provisioning and ServeHTTP.
package caddysnake

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
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
//		free_threaded                        # refuse to start with the GIL on
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
	// none (only the interpreter's own sys.path).
	WorkingDir string `json:"working_dir,omitempty"`

	// A virtual environment whose site-packages become importable (before
	// the interpreter's own). It must be built for the Python version this
	// Caddy is linked against. Default: none.
	Venv string `json:"venv,omitempty"`

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

	app    servedApp
	logger *zap.Logger
	stop   *stopper
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.python",
		New: func() caddy.Module { return new(Handler) },
	}
}

// servedApp is a loaded WSGIApp or ASGIApp.
type servedApp interface {
	Serve(w http.ResponseWriter, r *http.Request) error
	// Close stops admitting requests and drains those in flight, then
	// drops the app; it does not wait for them on a reload.
	Close()
	// Abandon gives up on the requests still in flight once stop's
	// deadline passed: they return from Serve at once (503 if nothing was
	// sent, else aborted), after a short grace for the app to unwind.
	Abandon()
}

// Defaults of the timeouts, documented on the Handler fields.
const (
	DefaultRequestTimeout     = 60 * time.Second
	DefaultRequestBodyTimeout = 30 * time.Second
)

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
	if err := h.checkConfig(); err != nil {
		return err
	}
	target, kind := h.ModuleWSGI, "module_wsgi"
	var load func(it *interpreter) (servedApp, error)
	var fields []zap.Field
	if h.ModuleASGI != "" {
		target, kind = h.ModuleASGI, "module_asgi"
		wsCompression, _ := wsCompressionMode(h.WSCompression) // checked by Validate
		opts := ASGIOptions{
			Target:          h.ModuleASGI,
			WorkingDir:      h.WorkingDir,
			Venv:            h.Venv,
			Lifespan:        cmp.Or(h.Lifespan, "auto"),
			Loop:            cmp.Or(h.Loop, "asyncio"),
			StartupTimeout:  cmp.Or(time.Duration(h.StartupTimeout), DefaultStartupTimeout),
			ShutdownTimeout: cmp.Or(time.Duration(h.ShutdownTimeout), DefaultShutdownTimeout),
			WSMaxMessage:    cmp.Or(h.WSMaxMessage, DefaultWSMaxMessage),
			WSCompression:   wsCompression,
			RequestTimeout:  resolveTimeout(h.RequestTimeout, DefaultRequestTimeout),
			BodyTimeout:     resolveTimeout(h.RequestBodyTimeout, DefaultRequestBodyTimeout),
		}
		load = func(it *interpreter) (servedApp, error) { return LoadASGI(it, opts, h.logger) }
		fields = []zap.Field{zap.String("lifespan", opts.Lifespan), zap.String("loop", opts.Loop)}
	} else {
		opts := WSGIOptions{
			Target:      h.ModuleWSGI,
			WorkingDir:  h.WorkingDir,
			Venv:        h.Venv,
			Threads:     cmp.Or(h.Threads, DefaultThreads),
			MaxWait:     cmp.Or(time.Duration(h.MaxWait), DefaultMaxWait),
			Timeout:     resolveTimeout(h.RequestTimeout, DefaultRequestTimeout),
			BodyTimeout: resolveTimeout(h.RequestBodyTimeout, DefaultRequestBodyTimeout),
		}
		load = func(it *interpreter) (servedApp, error) { return LoadWSGI(it, opts, h.logger) }
		fields = []zap.Field{zap.Int("threads_each", opts.Threads), zap.Duration("max_wait", opts.MaxWait),
			zap.Duration("request_timeout", opts.Timeout), zap.Duration("request_body_timeout", opts.BodyTimeout)}
	}
	var gil []string
	var gilMu sync.Mutex
	insts, err := loadInstances(h.Interpreters, func(it *interpreter) (servedApp, error) {
		app, err := load(it)
		if err != nil {
			return nil, err
		}
		status := it.gilStatus()
		if h.FreeThreaded && status != "disabled" {
			app.Close()
			return nil, fmt.Errorf("free_threaded is set, but importing the app turned the GIL on (%s): "+
				"use extensions that support free-threading, start caddy with PYTHON_GIL=0 at your own risk, "+
				"or remove free_threaded", status)
		}
		gilMu.Lock()
		gil = append(gil, status)
		gilMu.Unlock()
		return app, nil
	})
	if err != nil {
		return fmt.Errorf("python: cannot load %q: %w", target, err)
	}
	h.app = newSpreadApp(insts)
	mode, count := "main", 1
	if h.Interpreters > 0 {
		mode, count = "sub-interpreters (own GIL)", h.Interpreters
	}
	fields = append([]zap.Field{
		zap.String(kind, target),
		zap.String("python", PythonVersion()),
		zap.String("interpreter", mode),
		zap.Int("interpreters", count),
		zap.String("scheduling", schedulingPolicy),
	}, fields...)
	if FreeThreadedBuild() {
		fields = append(fields, zap.String("gil", strings.Join(gil, "; ")))
	}
	h.watchShutdown(ctx)
	h.logger.Info("python app ready", fields...)
	for _, g := range gil {
		if strings.HasPrefix(g, "enabled") {
			h.logger.Warn("this free-threaded CPython turned the GIL back on while importing the app; "+
				"threads will not run Python in parallel", zap.String(kind, target), zap.String("gil", g))
			break
		}
	}
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
	if _, err := wsCompressionMode(h.WSCompression); err != nil {
		return fmt.Errorf("python: %v", err)
	}
	if h.Threads < 0 {
		return fmt.Errorf("python: threads must be at least 1, got %d", h.Threads)
	}
	if h.Interpreters < 0 {
		return fmt.Errorf("python: interpreters must be 0 (the main interpreter) or more, got %d", h.Interpreters)
	}
	if h.Interpreters > 0 && !SubinterpretersSupported() {
		return fmt.Errorf("python: interpreters %d needs CPython 3.12 or later (sub-interpreters with their own GIL, PEP 684), "+
			"but this caddy is linked against Python %s: remove interpreters, or build caddy with make PYTHON=python3.12 (or later)",
			h.Interpreters, LinkedPythonVersion())
	}
	if h.FreeThreaded && !FreeThreadedBuild() {
		return fmt.Errorf("python: free_threaded needs a free-threaded CPython (built with --disable-gil, e.g. python3.13t), "+
			"but this caddy is linked against Python %s, which has a GIL: remove free_threaded, or build caddy with make PYTHON=python3.13t",
			LinkedPythonVersion())
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
	return nil
}

// ServeHTTP hands the request to the app's threads.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if err := h.checkRequest(r); err != nil { // target.go
		return err
	}
	return h.app.Serve(w, r)
}

// Cleanup stops the app's threads once they finish their current requests
// (on config reload or stop).
func (h *Handler) Cleanup() error {
	if h.app != nil {
		h.startDrain()
		h.app.Close()
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	python [<module:attribute>] {
//		module_wsgi <module:attribute>
//		module_asgi <module:attribute>
//		working_dir <path>
//		venv        <path>
//		threads     <count>           # WSGI
//		max_wait    <duration>        # WSGI
//		request_timeout      <duration>|off
//		request_body_timeout <duration>|off
//		lifespan    on|off|auto       # ASGI
//		loop        asyncio|uvloop|auto   # ASGI
//		startup_timeout  <duration>   # ASGI
//		shutdown_timeout <duration>   # ASGI
//		ws_max_message   <size>       # ASGI WebSocket, e.g. 16MiB
//		ws_compression   on|off|context_takeover  # ASGI WebSocket
//		interpreters     <count>      # 0: main interpreter; N: own-GIL sub-interpreters
//		free_threaded    [on|off]     # require a free-threaded CPython, GIL off
//	}
//
// The shorthand argument is a WSGI app.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		h.ModuleWSGI = d.Val()
	}
	if d.NextArg() {
		return d.Errf("python takes one argument, the app as \"module:attribute\"; got also %q", d.Val())
	}
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "module_wsgi", "module_asgi", "working_dir", "venv", "lifespan", "loop":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			if d.NextArg() {
				return d.Errf("%s takes one argument", sub)
			}
			switch sub {
			case "module_wsgi", "module_asgi":
				if h.ModuleWSGI != "" || h.ModuleASGI != "" {
					return d.Errf("the app is already set to %q", h.ModuleWSGI+h.ModuleASGI)
				}
				if sub == "module_asgi" {
					h.ModuleASGI = v
				} else {
					h.ModuleWSGI = v
				}
			case "lifespan":
				h.Lifespan = v
			case "loop":
				h.Loop = v
			case "working_dir":
				h.WorkingDir = v
			case "venv":
				h.Venv = v
			}
		case "threads":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("threads: expected a whole number >= 1, got %q", d.Val())
			}
			h.Threads = n
		case "ws_max_message":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 {
				return d.Errf("ws_max_message: expected a size such as 16MiB, got %q", d.Val())
			}
			h.WSMaxMessage = int64(n)
		case "ws_compression":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if _, err := wsCompressionMode(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			h.WSCompression = d.Val()
		case "interpreters":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("interpreters: expected a whole number >= 0 (0: the main interpreter), got %q", d.Val())
			}
			h.Interpreters = n
		case "free_threaded":
			h.FreeThreaded = true
			if d.NextArg() {
				switch d.Val() {
				case "on", "true":
				case "off", "false":
					h.FreeThreaded = false
				default:
					return d.Errf("free_threaded: expected on or off, got %q", d.Val())
				}
			}
		case "request_timeout", "request_body_timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur := time.Duration(-1) // off
			if v := d.Val(); v != "off" {
				parsed, err := caddy.ParseDuration(v)
				if err != nil || parsed < 0 {
					return d.Errf("%s: expected a duration such as 60s, or off, got %q", sub, v)
				}
				if parsed > 0 {
					dur = parsed
				}
			}
			if d.NextArg() {
				return d.Errf("%s takes one argument", sub)
			}
			if sub == "request_timeout" {
				h.RequestTimeout = caddy.Duration(dur)
			} else {
				h.RequestBodyTimeout = caddy.Duration(dur)
			}
		case "max_wait", "startup_timeout", "shutdown_timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("%s: expected a positive duration such as 30s, got %q", sub, d.Val())
			}
			switch sub {
			case "max_wait":
				h.MaxWait = caddy.Duration(dur)
			case "startup_timeout":
				h.StartupTimeout = caddy.Duration(dur)
			default:
				h.ShutdownTimeout = caddy.Duration(dur)
			}
		default:
			return d.Errf("unknown python subdirective %q; allowed: module_wsgi, module_asgi, working_dir, venv, threads, max_wait, request_timeout, request_body_timeout, lifespan, loop, startup_timeout, shutdown_timeout, ws_max_message, ws_compression, interpreters, free_threaded", sub)
		}
	}
	return nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
