package tests

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestExamples starts each app under examples/ the way its README says: from
// its own folder (a copy, so the checkout stays clean), in a venv made from
// its requirements.txt, with its own Caddyfile, of which only the ports
// change. Then it checks that the app answers what the README promises.
func TestExamples(t *testing.T) {
	t.Parallel()
	// In process mode (CADDYSNAKE_PROCESSES) too: the table "Coming from
	// gunicorn" sends --workers users to `processes`, so these should hold
	// there (about 6 s with the venvs cached).
	requireVenv(t)

	t.Run("flask", func(t *testing.T) {
		c := startExample(t, "flask")
		if b := c.get(t, "/", 200); !strings.Contains(string(b), `<form method="post"`) {
			t.Fatalf("GET /: no form in %.300s", b)
		}
		if m := decodeJSON(t, c.get(t, "/api/info", 200)); m["framework"] != "flask" || m["path"] != "/api/info" {
			t.Fatalf("GET /api/info: %v", m)
		}
		form := url.Values{"name": {"<b>Ann</b>"}}.Encode()
		resp, b := c.do(t, "POST", c.URL("/"), strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
		if resp.StatusCode != 200 || !strings.Contains(string(b), "Hello, &lt;b&gt;Ann&lt;/b&gt;!") {
			t.Fatalf("POST /: %d %.400s", resp.StatusCode, b)
		}
	})

	t.Run("django", func(t *testing.T) {
		c := startExample(t, "django")
		css, err := os.ReadFile(filepath.Join(examplesDir(t), "django", "static", "style.css"))
		if err != nil {
			t.Fatal(err)
		}
		// The Caddyfile's two sites: WSGI on the first port, ASGI on the second.
		for iface, port := range map[string]int{"wsgi": c.Port, "asgi": c.Port2} {
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			resp, b := c.do(t, "GET", base+"/", nil)
			page := string(b)
			if resp.StatusCode != 200 || !strings.Contains(page, `id="interface">`+iface+"<") ||
				!strings.Contains(page, `href="/static/style.css"`) {
				t.Fatalf("%s: GET /: %d %.500s", iface, resp.StatusCode, b)
			}
			// Django serves no static files here: only the handle_path +
			// file_server recipe makes this a 200 (else Django's 404).
			resp, b = c.do(t, "GET", base+"/static/style.css", nil)
			if resp.StatusCode != 200 || string(b) != string(css) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
				t.Fatalf("%s: GET /static/style.css: %d %s %.300s", iface, resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
		}
	})

	t.Run("fastapi", func(t *testing.T) {
		if requirePythonInfo(t).freeThreaded {
			t.Skip("FastAPI needs pydantic-core, which does not build for free-threaded CPython below 3.14 (tests/requirements-freethreaded.txt)")
		}
		c := startExample(t, "fastapi")
		if b := c.get(t, "/", 200); !strings.Contains(string(b), "new WebSocket(") {
			t.Fatalf("GET /: %.300s", b)
		}
		if b := c.get(t, "/api/items/42?q=x", 200); string(b) != `{"item_id":42,"q":"x"}` {
			t.Fatalf("GET /api/items/42: %s", b)
		}
		checkStreams(t, c)
		conn, _ := wsDial(t, wsURL(c, "/ws"), nil)
		defer conn.CloseNow()
		for _, msg := range []string{"hello", "caddysnake"} {
			if got := wsEcho(t, conn, websocket.MessageText, []byte(msg)); string(got) != msg {
				t.Fatalf("WebSocket echo of %q: %q", msg, got)
			}
		}
		if err := conn.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatalf("WebSocket close: %v", err)
		}
	})
}

// checkStreams reads the FastAPI example's /stream (five lines, 0.2 s apart)
// and fails unless the first line came well before the end: a buffered
// response would bring them all at once.
func checkStreams(t *testing.T, c *caddy) {
	t.Helper()
	start := time.Now()
	resp, err := c.Client.Get(c.URL("/stream"))
	if err != nil {
		t.Fatalf("GET /stream: %v", err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("GET /stream: first line: %v", err)
	}
	firstAt := time.Since(start)
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("GET /stream: %v", err)
	}
	endAt := time.Since(start)
	if got := first + string(rest); got != "line 0\nline 1\nline 2\nline 3\nline 4\n" {
		t.Fatalf("GET /stream: %q", got)
	}
	if endAt-firstAt < 400*time.Millisecond {
		t.Fatalf("GET /stream: first line after %v, last after %v: not streamed", firstAt, endAt)
	}
}

// examplesDir is the absolute path of the checkout's examples/.
func examplesDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(appsDir, "..", "..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// The examples' Caddyfiles listen on these; the test moves them to free ports.
var examplePorts = []string{"http://:8000 {", "http://:8001 {"}

// startExample copies examples/<name> to a temp folder, links the venv of its
// requirements.txt in as .venv, runs collectstatic if it is a Django project,
// and starts caddy there with the example's Caddyfile, its :8000 site on
// {{PORT}} and :8001 on {{PORT2}}.
func startExample(t *testing.T, name string) *caddy {
	t.Helper()
	src := filepath.Join(examplesDir(t), name)
	dir := t.TempDir()
	copyExample(t, src, dir)
	venv := exampleVenv(t, filepath.Join(src, "requirements.txt"))
	if err := os.Symlink(venv, filepath.Join(dir, ".venv")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "manage.py")); err == nil {
		runIn(t, dir, 2*time.Minute, filepath.Join(dir, ".venv", "bin", "python"), "manage.py", "collectstatic", "--noinput")
	}

	b, err := os.ReadFile(filepath.Join(dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	sites := string(b)
	for _, line := range strings.Split(sites, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			// The harness writes the global options (admin, ports) itself.
			if l == "{" {
				t.Fatalf("examples/%s/Caddyfile starts with a global options block; examples_test.go cannot add its own", name)
			}
			break
		}
	}
	if !strings.Contains(sites, examplePorts[0]) {
		t.Fatalf("examples/%s/Caddyfile has no %q site; update examples_test.go with it", name, examplePorts[0])
	}
	sites = strings.NewReplacer(examplePorts[0], "http://:{{PORT}} {", examplePorts[1], "http://:{{PORT2}} {").Replace(sites)
	return startCaddy(t, sites, siteOpts{dir: dir})
}

// copyExample copies the example's files, leaving out what following its
// README may have left in the checkout (a venv, collectstatic's output).
func copyExample(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			switch d.Name() {
			case ".venv", "staticfiles", "__pycache__":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
}

// exampleVenv returns a venv with the packages of requirements, made with
// the Python caddy is linked against (the one $CADDYSNAKE_VENV was made
// with). It is kept across runs in ~/.cache/caddysnake/, named by the Python
// version and a hash of the requirements, so pip runs once per change.
// pip fetches from the index pip is configured for (PyPI by default).
func exampleVenv(t *testing.T, requirements string) string {
	t.Helper()
	reqs, err := os.ReadFile(requirements)
	if err != nil {
		t.Fatal(err)
	}
	py := requirePythonInfo(t)
	tag := fmt.Sprintf("%d.%d", py.major, py.minor)
	if py.freeThreaded {
		tag += "t"
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache folder for the examples' venvs: %v", err)
	}
	cache = filepath.Join(cache, "caddysnake")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(reqs)
	venv := filepath.Join(cache, fmt.Sprintf("examples-venv-%s-%x", tag, sum[:6]))

	// One maker at a time, also across go test processes: the others wait,
	// then find it ready. Closing the file releases the lock.
	lock, err := os.OpenFile(venv+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("locking %s: %v", lock.Name(), err)
	}

	python := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(filepath.Join(venv, ".ready")); err == nil {
		// A venv whose base Python went away is made again.
		if exec.Command(python, "-c", "pass").Run() == nil {
			return venv
		}
	}
	if err := os.RemoveAll(venv); err != nil {
		t.Fatal(err)
	}
	t.Logf("making %s from %s (pip install, once per requirements change)", venv, requirements)
	runIn(t, cache, 2*time.Minute, filepath.Join(venvDir, "bin", "python"), "-m", "venv", venv)
	runIn(t, cache, 10*time.Minute, python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", requirements)
	if err := os.WriteFile(filepath.Join(venv, ".ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return venv
}

// runIn runs a command in dir, failing the test with its output if it fails
// or outlasts timeout.
func runIn(t *testing.T, dir string, timeout time.Duration, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
