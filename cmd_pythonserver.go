package caddysnake

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// `caddy python-server`: serves one Python app with no Caddyfile, as
// `caddy file-server` serves files and FrankenPHP's `php-server` PHP. It
// builds the JSON config (serverconfig.go) and runs it; with no
// --interface it first asks a short-lived `caddy python-detect` process
// whether the app is WSGI or ASGI.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name: "python-server",
		Usage: "--app <module:attr> [--interface auto|wsgi|asgi] [--listen <addr>] [--domain <example.com>] " +
			"[--working-dir <dir>] [--venv <dir>] [--threads <n>] [--interpreters <n>] [--processes <n>] " +
			"[--static-path <dir> [--static-route </static>]] [--env-file <file>] [--reload] [--access-log] [--debug]",
		Short: "Serves a Python WSGI or ASGI app (no Caddyfile needed)",
		Long: `
Serves one Python web app, WSGI or ASGI, from CPython embedded in Caddy.
Useful for development, demos and simple deployments; for more (several
apps, headers, matchers) write a Caddyfile with the python directive.

  cd myproject && caddy python-server --app main:app
  caddy python-server --app mysite.wsgi:application --static-path staticfiles
  caddy python-server --app main:app --domain example.com

--app is the app as "module:attribute" ("module:factory()" calls a
factory), imported from --working-dir (default: the current folder) with
--venv's packages (default: $VIRTUAL_ENV, else .venv in the working
folder if there is one). Unless --interface says, the app is imported once
in a short-lived process to tell ASGI (an async callable: FastAPI,
Starlette, Django's ASGI handler) from WSGI (Flask, Django's WSGI handler).

It listens on 127.0.0.1:8000 unless --listen (or --host/--port) says
otherwise. With --domain, Caddy serves that name over HTTPS with a
certificate it obtains and renews itself, HTTP/2 and HTTP/3 included,
listening on port 443 unless --listen says otherwise (and on port 80 to
redirect to HTTPS); point the name's DNS at this machine first.

--static-path serves a folder under --static-route (default /static) from
Caddy's file server, before the app: /static/css/site.css is
<static-path>/css/site.css, and a missing file is a 404 from Caddy
(Django: set STATIC_URL to the route, run collectstatic into the folder).

--env-file sets NAME=value lines (a .env file) in the app's environment
before it is imported. --reload restarts the app when its files change.
The admin endpoint (and /metrics) is at localhost:2019 unless --admin says
otherwise; when that port is taken, python-server runs without it.

Coming from other servers:
  uvicorn / granian              caddy python-server
  main:app (argument)            --app main:app
  --interface asgi3|wsgi         --interface asgi|wsgi (asgi3, asgi2 accepted)
  --host H --port P              --host H --port P, or --listen H:P
  --app-dir (uvicorn)            --working-dir (granian's name)
  --workers N                    --processes N (--workers is accepted)
  --blocking-threads (granian)   --threads (WSGI; gunicorn's --threads)
  --reload                       --reload
  --env-file / --env-files       --env-file
  --static-path-mount DIR        --static-path DIR (granian's)
  --static-path-route /static    --static-route /static (granian's)
  --access-log                   --access-log
  --log-level debug              --debug
  --ssl-certfile, --ssl-keyfile  --domain (automatic HTTPS, no files to manage)`,
		CobraFunc: func(cmd *cobra.Command) {
			addServerFlags(cmd)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdPythonServer)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "python-detect",
		Short: "Says whether a Python app is WSGI or ASGI (run by python-server)",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Hidden = true
			cmd.Flags().String("app", "", "")
			cmd.Flags().String("working-dir", "", "")
			cmd.Flags().String("venv", "", "")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdPythonDetect)
		},
	})
}

// addServerFlags declares python-server's flags.
func addServerFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringP("app", "a", "", `The app as "module:attribute" (required)`)
	f.String("interface", "auto", "auto (import the app to tell), wsgi or asgi")
	f.StringP("listen", "l", "", "The address to listen on (default 127.0.0.1:8000; :443 with --domain)")
	f.String("host", "", "The host to listen on, with --port (uvicorn's and granian's flag)")
	f.Int("port", 0, "The port to listen on, with --host (uvicorn's and granian's flag)")
	f.StringP("domain", "d", "", "Serve this domain name over automatic HTTPS, HTTP/2 and HTTP/3")
	f.String("working-dir", "", "The folder the app's module is imported from (default: the current folder; uvicorn's --app-dir)")
	f.String("venv", "", `The virtual environment whose packages the app uses (default: $VIRTUAL_ENV, else <working-dir>/.venv if present; "none" for none)`)
	f.Int("threads", 0, "WSGI: threads running the app's requests, per interpreter (default 16)")
	f.Int("interpreters", 0, "Own-GIL sub-interpreters serving the app (CPython 3.12+; default 0, the main interpreter)")
	f.Int("processes", 0, "Worker processes serving the app (default 0, in Caddy's own process)")
	f.Int("workers", 0, "Same as --processes (uvicorn's and granian's name)")
	f.String("static-path", "", "A folder Caddy's file server serves under --static-route, before the app")
	f.String("static-route", "", "The URL path --static-path is served under (default /static)")
	f.String("env-file", "", "A file of NAME=value lines set in the app's environment before it is imported")
	f.Bool("reload", false, "Reload the app when its .py files change (the python directive's watch)")
	f.Bool("access-log", false, "Log every request")
	f.BoolP("debug", "v", false, "Verbose debug logs")
	f.String("admin", defaultAdmin, `The admin endpoint's address (metrics at /metrics), or "off"`)
}

const defaultAdmin = "localhost:2019"

func cmdPythonServer(fs caddycmd.Flags) (int, error) {
	caddy.TrapSignals()
	o, err := serverOptionsFromFlags(fs)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if o.Interface == "" {
		if o.Interface, err = detectInterface(o); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}
	if o.Admin == defaultAdmin && !fs.Changed("admin") && !addrFree(o.Admin) {
		caddy.Log().Warn("python-server: the admin endpoint's address is in use (another caddy?): "+
			"running without it; pass --admin <addr> for one", zap.String("address", o.Admin))
		o.Admin = "off"
	}
	cfg, err := buildServerConfig(o)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := caddy.Run(cfg); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	scheme := "http"
	if o.Domain != "" {
		scheme = "https"
	}
	caddy.Log().Info(fmt.Sprintf("python-server: serving %s (%s) on %s://%s", o.App, o.Interface, scheme,
		cmp.Or(o.Domain, o.Listen)), zap.String("working_dir", o.WorkingDir), zap.String("venv", o.Venv))
	select {}
}

// addrFree tells whether addr can be listened on now.
func addrFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// serverOptionsFromFlags reads and checks the flags, filling in defaults
// from the environment (working folder, venv); every mistake is a sentence
// naming the flag.
func serverOptionsFromFlags(fs caddycmd.Flags) (serverOptions, error) {
	o := serverOptions{
		App:          fs.String("app"),
		Listen:       fs.String("listen"),
		Domain:       fs.String("domain"),
		WorkingDir:   fs.String("working-dir"),
		Venv:         fs.String("venv"),
		Threads:      fs.Int("threads"),
		Interpreters: fs.Int("interpreters"),
		Processes:    fs.Int("processes"),
		StaticPath:   fs.String("static-path"),
		StaticRoute:  fs.String("static-route"),
		EnvFile:      fs.String("env-file"),
		Reload:       fs.Bool("reload"),
		AccessLog:    fs.Bool("access-log"),
		Debug:        fs.Bool("debug"),
		Admin:        fs.String("admin"),
	}
	if o.App == "" {
		return o, errors.New(`python-server: --app is required, e.g. --app main:app ("module:attribute")`)
	}
	if mod, attr, ok := strings.Cut(o.App, ":"); !ok || mod == "" || attr == "" {
		return o, fmt.Errorf(`python-server: --app %q: expected "module:attribute", e.g. main:app or mysite.wsgi:application`, o.App)
	}
	switch iface := fs.String("interface"); iface {
	case "", "auto":
	case "wsgi":
		o.Interface = "wsgi"
	case "asgi", "asgi3", "asgi2":
		o.Interface = "asgi"
	default:
		return o, fmt.Errorf("python-server: --interface %q: expected auto, wsgi or asgi", iface)
	}
	if w := fs.Int("workers"); w != 0 {
		if fs.Changed("processes") && w != o.Processes {
			return o, errors.New("python-server: --workers and --processes are the same setting: give one")
		}
		o.Processes = w
	}
	host, port := fs.String("host"), fs.Int("port")
	if host != "" || port != 0 {
		if o.Listen != "" {
			return o, errors.New("python-server: give --listen, or --host and --port, not both")
		}
		if port < 0 || port > 65535 {
			return o, fmt.Errorf("python-server: --port %d is not a port number", port)
		}
		if host == "" {
			host = "127.0.0.1"
		}
		if port == 0 {
			port = 8000
		}
		o.Listen = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8000"
		if o.Domain != "" {
			o.Listen = ":443"
		}
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"threads", o.Threads}, {"interpreters", o.Interpreters}, {"processes", o.Processes}} {
		if n.v < 0 {
			return o, fmt.Errorf("python-server: --%s %d must not be negative", n.flag, n.v)
		}
	}
	var err error
	if o.WorkingDir == "" {
		if o.WorkingDir, err = os.Getwd(); err != nil {
			return o, err
		}
	}
	if o.WorkingDir, err = existingDir("--working-dir", o.WorkingDir); err != nil {
		return o, err
	}
	switch {
	case o.Venv == "none":
		o.Venv = ""
	case o.Venv != "":
	case os.Getenv("VIRTUAL_ENV") != "":
		o.Venv = os.Getenv("VIRTUAL_ENV")
	default:
		if _, err := os.Stat(filepath.Join(o.WorkingDir, ".venv", "pyvenv.cfg")); err == nil {
			o.Venv = filepath.Join(o.WorkingDir, ".venv")
		}
	}
	if o.Venv != "" {
		if o.Venv, err = existingDir("--venv", o.Venv); err != nil {
			return o, err
		}
	}
	if o.StaticRoute != "" && o.StaticPath == "" {
		return o, errors.New("python-server: --static-route needs --static-path, the folder to serve there")
	}
	if o.StaticPath != "" {
		if o.StaticPath, err = existingDir("--static-path", o.StaticPath); err != nil {
			return o, err
		}
		if o.StaticRoute == "" {
			o.StaticRoute = "/static"
		}
		if !strings.HasPrefix(o.StaticRoute, "/") || strings.ContainsAny(o.StaticRoute, "*?[ ") {
			return o, fmt.Errorf("python-server: --static-route %q: expected a URL path such as /static", o.StaticRoute)
		}
		o.StaticRoute = strings.TrimRight(o.StaticRoute, "/")
		if o.StaticRoute == "" {
			return o, errors.New("python-server: --static-route / would hide the app: use a path such as /static")
		}
	}
	if o.EnvFile != "" {
		if o.EnvFile, err = filepath.Abs(o.EnvFile); err != nil {
			return o, err
		}
		if o.env, err = parseEnvFile(o.EnvFile); err != nil {
			return o, fmt.Errorf("python-server: --%v", err)
		}
	}
	return o, nil
}

func existingDir(flag, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("python-server: %s %q: %v", flag, dir, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return "", fmt.Errorf("python-server: %s %q is not a folder", flag, dir)
	}
	return abs, nil
}
