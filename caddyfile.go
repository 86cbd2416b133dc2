package caddysnake

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddysnake/caddysnake/internal/engine"
	"github.com/dustin/go-humanize"
)

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
//		processes        <count>      # 0: in Caddy's process; N: N worker processes
//		max_requests        <count>   # processes: recycle a worker after count requests
//		max_requests_jitter <count>   # processes: plus 0..count, per worker
//		max_memory          <size>    # processes: recycle a worker over this RSS, e.g. 512MiB
//		memory_limit        <size>    # processes: hard cap on a worker's address space, e.g. 1GiB
//		user  <name|uid>              # processes: run the workers as (Caddy must be root)
//		group <name|gid>              # processes: default, the user's primary group
//		free_threaded    [on|off]     # require a free-threaded CPython, GIL off
//		env <name> <value>            # repeatable: the app's environment
//		env_file <path>               # NAME=value lines (.env)
//		watch            [<glob>...]  # reload on change; default *.py under working_dir
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
			if err := engine.CheckWSCompression(d.Val()); err != nil {
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
		case "processes":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("processes: expected a whole number >= 0 (0: in Caddy's own process), got %q", d.Val())
			}
			h.Processes = n
		case "max_requests", "max_requests_jitter":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("%s: expected a whole number >= 0, got %q", sub, d.Val())
			}
			if sub == "max_requests" {
				h.MaxRequests = n
			} else {
				h.MaxRequestsJitter = n
			}
		case "user", "group":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if sub == "user" {
				h.User = d.Val()
			} else {
				h.Group = d.Val()
			}
		case "max_memory":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 || n > 1<<62 {
				return d.Errf("max_memory: expected a size such as 512MiB or 1GB, got %q", d.Val())
			}
			h.MaxMemory = int64(n)
		case "memory_limit":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 || n > 1<<62 {
				return d.Errf("memory_limit: expected a size such as 1GiB or 512MiB, got %q", d.Val())
			}
			h.MemoryLimit = int64(n)
		case "watch":
			// Alone: the default globs, written out so that the JSON
			// (where the field is omitted when empty) keeps it.
			globs := d.RemainingArgs()
			if len(globs) == 0 {
				globs = DefaultWatchGlobs
			}
			h.Watch = append(h.Watch, globs...)
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
		case "env", "env_file":
			if err := h.unmarshalEnv(d, sub); err != nil {
				return err
			}
		default:
			return d.Errf("unknown python subdirective %q; allowed: module_wsgi, module_asgi, working_dir, venv, threads, max_wait, request_timeout, request_body_timeout, lifespan, loop, startup_timeout, shutdown_timeout, ws_max_message, ws_compression, interpreters, processes, max_requests, max_requests_jitter, max_memory, memory_limit, user, group, free_threaded, env, env_file, watch", sub)
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
