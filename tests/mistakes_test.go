package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Common mistakes fail at `caddy validate` (or in the log) with one
// sentence that says what to fix. Every test runs in both suite modes:
// in process mode the worker loads the app and its error reaches Caddy
// as the FrameLoadFail text.

func TestWrongInterfaceDirectiveFailsValidate(t *testing.T) {
	t.Parallel()
	venv := requireVenv(t)
	site := func(directive, target string) string {
		return "http://127.0.0.1:{{PORT}} {\n\tpython {\n\t\t" + directive + " \"" + target +
			"\"\n\t\tworking_dir {{APPS}}\n\t\tvenv " + venv + "\n\t}\n}\n"
	}
	for _, tc := range []struct {
		directive, target, want string
	}{
		{"module_wsgi", "asgi_raw:app", `"asgi_raw:app" is an ASGI application (an async callable taking scope, receive, send): serve it with module_asgi, not module_wsgi`},
		{"module_wsgi", "asgi_fastapi:app", `serve it with module_asgi, not module_wsgi`},
		{"module_asgi", "wsgi_alpha:app", `"wsgi_alpha:app" is a WSGI application (a callable taking environ, start_response): serve it with module_wsgi, not module_asgi`},
		{"module_asgi", "flask_site:app", `serve it with module_wsgi, not module_asgi`},
		{"module_asgi", "django_site:application", `serve it with module_wsgi, not module_asgi`},
	} {
		t.Run(tc.directive+" "+tc.target, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(tc.target, "asgi_fastapi:") {
				requireVenvPackage(t, "fastapi")
			}
			out, err := validate(t, site(tc.directive, tc.target))
			if err == nil {
				t.Fatalf("caddy validate succeeded, want a failure naming the right directive; output:\n%s", out)
			}
			plain := unescapeLog(out)
			if !strings.Contains(plain, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, plain)
			}
			if n := strings.Count(provisionError(out), `"`+tc.target+`"`); n != 1 {
				t.Errorf("the target is named %d times in the error, want once:\n%s", n, plain)
			}
		})
	}
	// The frameworks the check must not refuse under their own directive.
	for _, tc := range []struct{ directive, target string }{
		{"module_wsgi", "flask_site:app"}, {"module_wsgi", "django_site:application"},
		{"module_asgi", "asgi_fastapi:app"}, {"module_asgi", "asgi_socketio:app"},
	} {
		t.Run("right "+tc.directive+" "+tc.target, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(tc.target, "asgi_fastapi:") {
				requireVenvPackage(t, "fastapi")
			}
			if out, err := validate(t, site(tc.directive, tc.target)); err != nil {
				t.Fatalf("%s %s failed validation: %v\n%s", tc.directive, tc.target, err, out)
			}
		})
	}
}

// `python "okapp:app"` without working_dir imports from Caddy's working
// folder, and the start-up line says where the module came from; run from
// elsewhere, the error says to set working_dir.
func TestShorthandResolvesFromCaddysWorkingFolder(t *testing.T) {
	t.Parallel()
	appDir := t.TempDir()
	src := "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
	if err := os.WriteFile(filepath.Join(appDir, "okapp.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	site := "http://127.0.0.1:{{PORT}} {\n\tpython \"okapp:app\"\n}\n"

	out, err := validateIn(t, appDir, site)
	if err != nil {
		t.Fatalf("validate from the app's folder failed: %v\n%s", err, out)
	}
	ready := readyLine(t, out)
	if got, want := ready["app_from"], appDir; got != want {
		t.Errorf("app_from %v, want %q", got, want)
	}
	if got, want := ready["working_dir"], appDir+" (working_dir not set: Caddy's working folder)"; got != want {
		t.Errorf("working_dir %v, want %q", got, want)
	}

	elsewhere := t.TempDir()
	out, err = validateIn(t, elsewhere, site)
	if err == nil {
		t.Fatalf("validate from another folder succeeded; output:\n%s", out)
	}
	want := `cannot load "okapp:app": no module named "okapp" in Caddy's working folder ` + elsewhere +
		`, the default working_dir (or sys.path): set working_dir to the folder that holds okapp.py`
	if plain := unescapeLog(out); !strings.Contains(plain, want) {
		t.Errorf("output does not say %q:\n%s", want, plain)
	}
}

// The start-up line names the app's site, working_dir, venv, mode and the
// folder its module came from.
func TestReadyLineNamesFoldersAndMode(t *testing.T) {
	t.Parallel()
	venv := requireVenv(t)
	out, err := validate(t, "http://127.0.0.1:{{PORT}} {\n\tpython {\n\t\tmodule_wsgi \"wsgi_alpha:app\"\n"+
		"\t\tworking_dir {{APPS}}\n\t\tvenv "+venv+"\n\t}\n}\n")
	if err != nil {
		t.Fatalf("validate failed: %v\n%s", err, out)
	}
	ready := readyLine(t, out)
	mode := "in Caddy's process, the main interpreter"
	if processesMode > 0 {
		mode = "processes " + strconv.Itoa(processesMode) + " (the main interpreter each)"
	}
	for k, want := range map[string]string{"working_dir": appsDir, "venv": venv, "app_from": appsDir, "mode": mode} {
		if got := ready[k]; got != want {
			t.Errorf("%s: %v, want %q", k, got, want)
		}
	}
	// The site: the server, its listen address and the host matched.
	if site, _ := ready["site"].(string); !strings.HasPrefix(site, "srv0 :") || !strings.HasSuffix(site, " 127.0.0.1") {
		t.Errorf("site: %q, want \"srv0 :<port> 127.0.0.1\"", site)
	}
}

// A load error states its cause once, without the import machinery's
// frames.
func TestLoadErrorStatedOnce(t *testing.T) {
	t.Parallel()
	out, err := validate(t, pySite("http://127.0.0.1:{{PORT}}", "cfg_import_error:app"))
	if err == nil {
		t.Fatalf("validate succeeded; output:\n%s", out)
	}
	plain := unescapeLog(out)
	if n := strings.Count(provisionError(out), `cannot load "cfg_import_error:app"`); n != 1 {
		t.Errorf(`"cannot load" appears %d times, want once:`+"\n%s", n, plain)
	}
	for _, bad := range []string{"<frozen importlib", "importlib/__init__.py", "caddysnake/loader.py"} {
		if strings.Contains(plain, bad) {
			t.Errorf("the error carries %q:\n%s", bad, plain)
		}
	}
	for _, want := range []string{"cfg_import_error.py\", line 2, in <module>", "No module named 'no_such_module_caddysnake_4242'"} {
		if !strings.Contains(plain, want) {
			t.Errorf("the error lacks %q:\n%s", want, plain)
		}
	}
}
