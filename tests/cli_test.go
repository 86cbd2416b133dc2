package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startPythonServer runs `caddy python-server --listen 127.0.0.1:<free>
// --admin off args...` from dir and waits until it answers. In process
// mode it adds --processes, unless args set it.
func startPythonServer(t *testing.T, dir string, args ...string) *caddy {
	t.Helper()
	c := &caddy{t: t, dir: t.TempDir(), log: &syncBuffer{}, done: make(chan struct{}), Port: freePorts(t, 1)[0]}
	tr := &http.Transport{DisableCompression: true}
	c.Client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	full := append([]string{"python-server", "--listen", c.Addr(), "--admin", "off"}, args...)
	if processesMode > 0 && !slices.Contains(args, "--processes") {
		full = append(full, "--processes", strconv.Itoa(processesMode))
	}
	c.cmd = exec.Command(caddyBin, full...)
	c.cmd.Dir = dir
	c.cmd.Env = append(childEnv(c.dir), "VIRTUAL_ENV=")
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stop()
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("caddy python-server %q log:\n%s", full, c.Log())
		}
	})
	deadline := time.Now().Add(40 * time.Second)
	for {
		select {
		case <-c.done:
			t.Fatalf("python-server exited before serving (%v):\n%s", c.waitErr, c.Log())
		default:
		}
		if conn, err := net.DialTimeout("tcp", c.Addr(), 500*time.Millisecond); err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("python-server did not answer on %s within 40s", c.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A WSGI app is served from the folder python-server runs in, with no
// Caddyfile and no --interface: it is found to be WSGI.
func TestPythonServerServesWSGIFromItsFolder(t *testing.T) {
	t.Parallel()
	c := startPythonServer(t, appsDir, "--app", "cli_env:app")
	if got := string(c.get(t, "/interface", 200)); got != "wsgi" {
		t.Fatalf("GET /interface: %q", got)
	}
	if !c.waitLog(5*time.Second, `"module_wsgi":"cli_env:app"`, "serving cli_env:app (wsgi)") {
		t.Fatalf("no start-up line naming module_wsgi cli_env:app")
	}
}

// An ASGI app is told from a WSGI one by importing it, and served as ASGI.
func TestPythonServerDetectsASGI(t *testing.T) {
	t.Parallel()
	c := startPythonServer(t, appsDir, "--app", "asgi_raw:app")
	if got := string(c.get(t, "/hello", 200)); got != "hello" {
		t.Fatalf("GET /hello: %q", got)
	}
	if !c.waitLog(5*time.Second, `"module_asgi":"asgi_raw:app"`, "serving asgi_raw:app (asgi)") {
		t.Fatalf("the app was not served as ASGI")
	}
}

// --static-path is served by Caddy's file server under --static-route,
// before the app: a missing file there is Caddy's 404, not the app's page.
func TestPythonServerStaticRoute(t *testing.T) {
	t.Parallel()
	static := t.TempDir()
	if err := os.MkdirAll(filepath.Join(static, "css"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(static, "css", "site.css"), []byte("body { color: teal }"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startPythonServer(t, appsDir, "--app", "cli_env:app", "--interface", "wsgi",
		"--static-path", static, "--static-route", "/assets")
	if got := string(c.get(t, "/assets/css/site.css", 200)); got != "body { color: teal }" {
		t.Errorf("GET /assets/css/site.css: %q", got)
	}
	if body := string(c.get(t, "/assets/missing.css", 404)); strings.Contains(body, "unset") {
		t.Errorf("a missing static file reached the app: %q", body)
	}
	if got := string(c.get(t, "/interface", 200)); got != "wsgi" {
		t.Errorf("the app behind the static route: %q", got)
	}
}

// --env-file's variables are in the app's environment (in process mode, the
// worker's), and set before the app is imported: detection sees them too.
func TestPythonServerEnvFile(t *testing.T) {
	t.Parallel()
	env := filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(env, []byte("# settings\nCS_CLI_GREETING=\"hello from the env file\"\nexport CS_CLI_MODE=test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startPythonServer(t, appsDir, "--app", "cli_env:app", "--env-file", env)
	for name, want := range map[string]string{"CS_CLI_GREETING": "hello from the env file", "CS_CLI_MODE": "test"} {
		if got := string(c.get(t, "/"+name, 200)); got != want {
			t.Errorf("GET /%s: %q, want %q", name, got, want)
		}
	}
}

// A mistake in the flags or the app stops python-server at once with a
// sentence naming it.
func TestPythonServerMistakes(t *testing.T) {
	t.Parallel()
	env := filepath.Join(t.TempDir(), "bad.env")
	if err := os.WriteFile(env, []byte("A=1\nnot a line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--app", "no_such_module_cli:app"}, `no module named \"no_such_module_cli\"`},
		{[]string{"--app", "cli_env"}, `expected \"module:attribute\"`},
		{[]string{"--app", "cli_env:app", "--env-file", env}, "line 2: expected NAME=value"},
		{[]string{"--app", "asgi_raw:app", "--threads", "4"}, "--threads applies to WSGI apps"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, caddyBin, append([]string{"python-server", "--admin", "off", "--listen", "127.0.0.1:0"}, tc.args...)...)
		cmd.Dir = appsDir
		cmd.Env = append(childEnv(t.TempDir()), "VIRTUAL_ENV=")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%q: exit %v, want a failure saying %q; output:\n%s", tc.args, err, tc.want, out)
		}
	}
}

func TestPythonServerHelp(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(caddyBin, "python-server", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, flag := range []string{"--app", "--interface", "--listen", "--host", "--port", "--domain", "--working-dir",
		"--venv", "--threads", "--interpreters", "--processes", "--workers", "--static-path", "--static-route",
		"--access-log", "--reload", "--env-file", "--debug", "--admin", "Coming from other servers"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help does not mention %s:\n%s", flag, out)
		}
	}
}

// env and env_file set the app's environment; env wins over env_file.
func TestEnvSubdirectives(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(file, []byte("CS_ENV_FILE_ONLY=file\nCS_ENV_BOTH=file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCaddy(t, fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		module_wsgi cli_env:app
		working_dir {{APPS}}
		env CS_ENV_BOTH "from env"
		env CS_ENV_ONLY only
		env_file %s
	}
}`, file))
	for name, want := range map[string]string{"CS_ENV_FILE_ONLY": "file", "CS_ENV_BOTH": "from env", "CS_ENV_ONLY": "only"} {
		if got := string(c.get(t, "/"+name, 200)); got != want {
			t.Errorf("GET /%s: %q, want %q", name, got, want)
		}
	}
}

func TestEnvFileBadLineFailsValidate(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(file, []byte("# ok\nGOOD=1\nBAD LINE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := validate(t, fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		module_wsgi cli_env:app
		working_dir {{APPS}}
		env_file %s
	}
}`, file))
	if err == nil || !strings.Contains(out, "line 3: expected NAME=value") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
}

// Apps in Caddy's own process share its environment: two setting one
// variable differently are refused at validate.
func TestEnvConflictInProcessFailsValidate(t *testing.T) {
	t.Parallel()
	skipInProcessMode(t, "worker processes each have their own environment")
	out, err := validate(t, `http://127.0.0.1:{{PORT}} {
	handle /a/* {
		python {
			module_wsgi cli_env:app
			working_dir {{APPS}}
			env CS_SHARED one
		}
	}
	python {
		module_wsgi wsgi_alpha:app
		working_dir {{APPS}}
		env CS_SHARED two
	}
}`)
	if err == nil || !strings.Contains(out, `env CS_SHARED is \"one\" for cli_env:app but \"two\" for wsgi_alpha:app`) {
		t.Fatalf("validate: %v\n%s", err, out)
	}
}

// --reload: python-server run from an app's folder serves an edit of the
// app within 5 s (the app's watch setting, default *.py).
func TestPythonServerReloadServesAnEdit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := func(v string) []byte {
		return []byte("def app(environ, start_response):\n" +
			"    start_response('200 OK', [('Content-Type', 'text/plain')])\n" +
			"    return [b'" + v + "']\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), src("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startPythonServer(t, dir, "--app", "app:app", "--reload")
	if got := string(c.get(t, "/", 200)); got != "v1" {
		t.Fatalf("before the edit: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), src("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, b, err := c.fetch("GET", "/", nil)
		if err == nil && status == 200 && string(b) == "v2" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the edit: %d %q %v, want 200 \"v2\"", status, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
