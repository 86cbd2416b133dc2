package caddysnake

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// serverFlags parses python-server's flags as its command would.
func serverFlags(t *testing.T, args ...string) (serverOptions, error) {
	t.Helper()
	cmd := &cobra.Command{}
	addServerFlags(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return serverOptionsFromFlags(caddycmd.Flags{FlagSet: cmd.Flags()})
}

func TestServerFlagDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("VIRTUAL_ENV", "")
	o, err := serverFlags(t, "--app", "main:app")
	if err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	if o.Listen != "127.0.0.1:8000" || o.WorkingDir != cwd || o.Venv != "" || o.Interface != "" || o.Admin != defaultAdmin {
		t.Fatalf("defaults: %+v", o)
	}
	// A .venv in the working folder is used; $VIRTUAL_ENV wins over it.
	venv := filepath.Join(dir, ".venv")
	if err := os.MkdirAll(venv, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(venv, "pyvenv.cfg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, _ = serverFlags(t, "--app", "main:app"); o.Venv != filepath.Join(cwd, ".venv") {
		t.Errorf("with ./.venv: venv %q", o.Venv)
	}
	other := t.TempDir()
	t.Setenv("VIRTUAL_ENV", other)
	if o, _ = serverFlags(t, "--app", "main:app"); o.Venv != other {
		t.Errorf("with $VIRTUAL_ENV: venv %q, want %q", o.Venv, other)
	}
	if o, _ = serverFlags(t, "--app", "main:app", "--venv", "none"); o.Venv != "" {
		t.Errorf("--venv none: venv %q", o.Venv)
	}
	o, err = serverFlags(t, "--app", "main:app", "--domain", "example.com", "--workers", "3", "--interface", "asgi3",
		"--static-path", ".", "--static-route", "/assets/")
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":443" || o.Processes != 3 || o.Interface != "asgi" || o.StaticRoute != "/assets" || o.StaticPath != cwd {
		t.Errorf("domain, workers, interface, static: %+v", o)
	}
	if o, _ = serverFlags(t, "--app", "main:app", "--host", "0.0.0.0", "--port", "9000"); o.Listen != "0.0.0.0:9000" {
		t.Errorf("--host/--port: listen %q", o.Listen)
	}
	if o, _ = serverFlags(t, "--app", "main:app", "--static-path", "."); o.StaticRoute != "/static" {
		t.Errorf("default static route %q", o.StaticRoute)
	}
}

func TestServerFlagErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	bad := filepath.Join(t.TempDir(), "bad.env")
	if err := os.WriteFile(bad, []byte("A=1\n\nB C\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--app is required"},
		{[]string{"--app", "main"}, `--app "main": expected "module:attribute"`},
		{[]string{"--app", "m:a", "--interface", "rsgi"}, `--interface "rsgi": expected auto, wsgi or asgi`},
		{[]string{"--app", "m:a", "--listen", ":1", "--port", "2"}, "give --listen, or --host and --port"},
		{[]string{"--app", "m:a", "--processes", "2", "--workers", "3"}, "--workers and --processes are the same"},
		{[]string{"--app", "m:a", "--threads", "-1"}, "--threads -1 must not be negative"},
		{[]string{"--app", "m:a", "--working-dir", "/nonexistent"}, `--working-dir "/nonexistent" is not a folder`},
		{[]string{"--app", "m:a", "--venv", "/nonexistent"}, `--venv "/nonexistent" is not a folder`},
		{[]string{"--app", "m:a", "--static-route", "/s"}, "--static-route needs --static-path"},
		{[]string{"--app", "m:a", "--static-path", ".", "--static-route", "/"}, "would hide the app"},
		{[]string{"--app", "m:a", "--static-path", ".", "--static-route", "static"}, "expected a URL path"},
		{[]string{"--app", "m:a", "--env-file", bad}, "line 3: expected NAME=value"},
	} {
		_, err := serverFlags(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// configJSON builds o's config and decodes it back, for the tests to walk.
func configJSON(t *testing.T, o serverOptions) map[string]any {
	t.Helper()
	cfg, err := buildServerConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// at walks m along keys (strings for objects, ints for arrays).
func at(t *testing.T, m any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			obj, ok := m.(map[string]any)
			if !ok {
				t.Fatalf("at %q: not an object: %v", k, m)
			}
			m = obj[k]
		case int:
			arr, ok := m.([]any)
			if !ok || k >= len(arr) {
				t.Fatalf("at %d: not an array that long: %v", k, m)
			}
			m = arr[k]
		}
	}
	return m
}

func TestServerConfigStaticRouteFirst(t *testing.T) {
	o := serverOptions{App: "main:app", Interface: "asgi", Listen: "127.0.0.1:8000", WorkingDir: "/srv/app",
		StaticPath: "/srv/app/static", StaticRoute: "/static", Admin: "off", AccessLog: true}
	m := configJSON(t, o)
	if at(t, m, "admin", "disabled") != true {
		t.Errorf("admin not disabled: %v", m["admin"])
	}
	srv := at(t, m, "apps", "http", "servers", "python")
	if got := at(t, srv, "listen", 0); got != "127.0.0.1:8000" {
		t.Errorf("listen %v", got)
	}
	if at(t, srv, "logs") == nil {
		t.Errorf("--access-log gave no server logs")
	}
	if at(t, srv, "routes", 0, "match") != nil {
		t.Errorf("no --domain, yet a host matcher")
	}
	routes := at(t, srv, "routes", 0, "handle", 0, "routes")
	if got := at(t, routes, 0, "match", 0, "path", 0); got != "/static/*" {
		t.Errorf("first route matches %v, want /static/*", got)
	}
	if got := at(t, routes, 0, "handle", 0, "strip_path_prefix"); got != "/static" {
		t.Errorf("static route strips %v", got)
	}
	if got := at(t, routes, 0, "handle", 1, "root"); got != "/srv/app/static" {
		t.Errorf("file_server root %v", got)
	}
	py := at(t, routes, 1, "handle", 0)
	if at(t, py, "handler") != "python" || at(t, py, "module_asgi") != "main:app" || at(t, py, "working_dir") != "/srv/app" {
		t.Errorf("python handler %v", py)
	}
}

func TestServerConfigDomain(t *testing.T) {
	o := serverOptions{App: "mysite.wsgi:application", Interface: "wsgi", Listen: ":443", Domain: "example.com",
		WorkingDir: "/srv", Threads: 4, Processes: 2, Admin: defaultAdmin}
	m := configJSON(t, o)
	if got := at(t, m, "admin", "listen"); got != defaultAdmin {
		t.Errorf("admin listen %v", got)
	}
	route := at(t, m, "apps", "http", "servers", "python", "routes", 0)
	if got := at(t, route, "match", 0, "host", 0); got != "example.com" {
		t.Errorf("host matcher %v", got)
	}
	py := at(t, route, "handle", 0, "routes", 0, "handle", 0)
	if at(t, py, "module_wsgi") != "mysite.wsgi:application" || at(t, py, "threads") != 4.0 || at(t, py, "processes") != 2.0 {
		t.Errorf("python handler %v", py)
	}
}

func TestServerConfigMistakes(t *testing.T) {
	if _, err := buildServerConfig(serverOptions{App: "m:a", Interface: "asgi", Threads: 4}); err == nil ||
		!strings.Contains(err.Error(), "--threads applies to WSGI apps") {
		t.Errorf("asgi with threads: %v", err)
	}
	cfg, err := buildServerConfig(serverOptions{App: "m:a", Interface: "wsgi", Reload: true})
	if err != nil {
		t.Fatalf("--reload: %v", err)
	}
	if b, _ := json.Marshal(cfg); !strings.Contains(string(b), `"watch":["*.py"]`) {
		t.Errorf("--reload: no watch setting [\"*.py\"] in %s", b)
	}
}
