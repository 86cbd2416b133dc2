package tests

// Sub-interpreters with their own GIL (`interpreters N`, CPython 3.12+) and
// free-threaded CPython (`free_threaded`). Tests that need a capability the
// linked CPython lacks skip, and the ones that check the refusal run
// instead, so every Python version of CI exercises one side.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// linkedPython describes the CPython the caddy binary is linked against,
// found through the venv built for it (the loader refuses mismatched
// venvs, so they agree).
type linkedPython struct {
	major, minor int
	freeThreaded bool
	include      string // C headers
	extSuffix    string // e.g. .cpython-312-x86_64-linux-gnu.so
}

var (
	pyInfoOnce sync.Once
	pyInfo     linkedPython
	pyInfoErr  error
)

func requirePythonInfo(t *testing.T) linkedPython {
	t.Helper()
	venv := requireVenv(t)
	pyInfoOnce.Do(func() {
		out, err := exec.Command(filepath.Join(venv, "bin", "python"), "-c",
			`import sys, sysconfig; print(sys.version_info[0], sys.version_info[1], int(bool(sysconfig.get_config_var("Py_GIL_DISABLED"))), sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))`).Output()
		if err != nil {
			pyInfoErr = err
			return
		}
		var ft int
		_, pyInfoErr = fmt.Sscan(string(out), &pyInfo.major, &pyInfo.minor, &ft, &pyInfo.include, &pyInfo.extSuffix)
		pyInfo.freeThreaded = ft == 1
	})
	if pyInfoErr != nil {
		t.Fatalf("asking the venv's python about itself: %v", pyInfoErr)
	}
	return pyInfo
}

// requireVenvPackage skips when the venv lacks a package that cannot be
// installed on a free-threaded CPython (tests/requirements-freethreaded.txt);
// elsewhere a missing package is a broken venv, and the test runs to fail.
func requireVenvPackage(t *testing.T, module string) {
	t.Helper()
	if !requirePythonInfo(t).freeThreaded {
		return
	}
	if err := exec.Command(filepath.Join(venvDir, "bin", "python"), "-c", "import "+module).Run(); err != nil {
		t.Skipf("%s is not installable on this free-threaded CPython (see tests/requirements-freethreaded.txt)", module)
	}
}

func requireSubinterpreters(t *testing.T) {
	t.Helper()
	if p := requirePythonInfo(t); p.major == 3 && p.minor < 12 {
		t.Skipf("sub-interpreters with their own GIL need CPython 3.12+, caddy is linked against %d.%d", p.major, p.minor)
	}
}

// isoReport is what tests/apps/iso_*/isoapp.py answers.
type isoReport struct {
	Name         string   `json:"name"`
	Value        string   `json:"value"`
	JSONMarker   any      `json:"json_marker"`
	SysPath      []string `json:"sys_path"`
	Instance     string   `json:"instance"`
	Interpreters int      `json:"interpreters"`
	VenvModules  []string `json:"venv_modules"`
}

func fetchReport(t *testing.T, c *caddy, url string) isoReport {
	t.Helper()
	resp, b := c.do(t, "GET", url, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %.300s", url, resp.StatusCode, b)
	}
	var r isoReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("GET %s: %v in %.300s", url, err, b)
	}
	return r
}

// Two apps in one Caddy, each in its own sub-interpreter, both importing
// modules named isoapp and shared_mod from different directories, one with
// a venv: neither sees the other's modules, sys.path, venv or globals.
func TestSubinterpretersIsolateApps(t *testing.T) {
	t.Parallel()
	requireSubinterpreters(t)
	site := func(addr, dir, extra string) string {
		return fmt.Sprintf(`%s {
	python {
		module_wsgi isoapp:app
		working_dir {{APPS}}/%s
		interpreters 1
		%s
		%s
	}
}
`, addr, dir, extra, inOneProcess())
	}
	c := startCaddy(t, site("http://127.0.0.1:{{PORT}}", "iso_a", "venv {{VENV}}")+
		site("http://127.0.0.1:{{PORT2}}", "iso_b", ""))
	urlB := fmt.Sprintf("http://127.0.0.1:%d", c.Port2)

	a := fetchReport(t, c, c.URL("/"))
	b := fetchReport(t, c, urlB+"/")
	if a.Name != "a" || b.Name != "b" {
		t.Fatalf("shared_mod: app A imported %q, app B %q; want each its own (a, b)", a.Name, b.Name)
	}
	if a.Instance == b.Instance {
		t.Fatalf("both apps answered from the same isoapp module instance")
	}
	dirA, dirB := filepath.Join(appsDir, "iso_a"), filepath.Join(appsDir, "iso_b")
	if !slices.Contains(a.SysPath, dirA) || slices.Contains(a.SysPath, dirB) {
		t.Errorf("app A's sys.path = %v: want %s and not %s", a.SysPath, dirA, dirB)
	}
	if !slices.Contains(b.SysPath, dirB) || slices.Contains(b.SysPath, dirA) {
		t.Errorf("app B's sys.path = %v: want %s and not %s", b.SysPath, dirB, dirA)
	}
	venvSP := func(paths []string) bool {
		for _, p := range paths {
			if strings.HasPrefix(p, venvDir+string(os.PathSeparator)) && strings.HasSuffix(p, "site-packages") {
				return true
			}
		}
		return false
	}
	if !venvSP(a.SysPath) {
		t.Errorf("app A's sys.path lacks its venv's site-packages: %v", a.SysPath)
	}
	if venvSP(b.SysPath) {
		t.Errorf("app B (no venv) sees app A's venv on sys.path: %v", b.SysPath)
	}

	// A mutates its module and a stdlib module; B must not see either.
	fetchReport(t, c, c.URL("/mutate"))
	a = fetchReport(t, c, c.URL("/"))
	b = fetchReport(t, c, urlB+"/")
	if a.Value != "mutated by a" || a.JSONMarker != "a" {
		t.Fatalf("app A's own mutation did not stick: value %q, json marker %v", a.Value, a.JSONMarker)
	}
	if b.Value != "pristine b" || b.JSONMarker != nil {
		t.Errorf("app B sees app A's globals: shared_mod.VALUE %q, json.caddysnake_marker %v", b.Value, b.JSONMarker)
	}
	want := 3 // main + one per app
	if processesMode > 0 {
		want = 2 // each app's worker: main + its own
	}
	if a.Interpreters != want {
		t.Errorf("live interpreters = %d, want %d", a.Interpreters, want)
	}
	if !c.waitLog(time.Second, `"interpreter":"sub-interpreters (own GIL)"`, `"interpreters":1`, `"threads_each":16`, `"python":"3.`) {
		t.Errorf("the start-up log line lacks the interpreter mode, count, threads or Python version")
	}
}

// Requests spread over the interpreters (least busy first), a request that
// fails in one does not disturb the others, and the log says how it runs.
func TestSubinterpretersSpreadRequestsAndSurviveFailures(t *testing.T) {
	t.Parallel()
	requireSubinterpreters(t)
	c := startCaddy(t, `http://127.0.0.1:{{PORT}} {
	python {
		module_wsgi isoapp:app
		working_dir {{APPS}}/iso_a
		interpreters 2
		threads 2
		`+inOneProcess()+`
	}
}
`)
	if !c.waitLog(time.Second, `"interpreters":2`, `"threads_each":2`) {
		t.Errorf("the start-up log line does not say 2 interpreters with 2 threads each")
	}
	// Two slow requests at once: the second goes to the idle interpreter.
	var wg sync.WaitGroup
	got := make([]isoReport, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, b, err := c.fetch("GET", "/sleep?0.5", nil)
			if err != nil || status != 200 {
				t.Errorf("GET /sleep: %d %v", status, err)
				return
			}
			_ = json.Unmarshal(b, &got[i])
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if got[0].Instance == "" || got[0].Instance == got[1].Instance {
		t.Fatalf("two concurrent requests ran in interpreters %q and %q; want two different ones", got[0].Instance, got[1].Instance)
	}
	seen := map[string]bool{got[0].Instance: true, got[1].Instance: true}

	// Failures of every kind in whatever interpreter they land in.
	for _, path := range []string{"/raise", "/exit", "/recurse", "/raise", "/exit", "/recurse"} {
		c.get(t, path, 500)
	}
	for i := 0; i < 10; i++ {
		r := fetchReport(t, c, c.URL("/"))
		if !seen[r.Instance] {
			t.Fatalf("after the failures a request ran in a new interpreter %s (one was replaced?)", r.Instance)
		}
		if r.Interpreters != 3 {
			t.Fatalf("live interpreters = %d after the failures, want 3", r.Interpreters)
		}
	}
	if !strings.Contains(c.Log(), "boom in a") || !strings.Contains(c.Log(), "RecursionError") {
		t.Errorf("the failures' tracebacks are not in the log")
	}
	c.alive(t)
}

// 20 reloads alternating a WSGI and an ASGI app with two sub-interpreters
// each: the replaced apps' interpreters are finalized, not piled up.
func TestSubinterpretersEndOnReload(t *testing.T) {
	t.Parallel()
	requireSubinterpreters(t)
	wsgi := `http://127.0.0.1:{{PORT}} {
	python {
		module_wsgi isoapp:app
		working_dir {{APPS}}/iso_b
		interpreters 2
		threads 4
	}
}
`
	asgi := `http://127.0.0.1:{{PORT}} {
	python {
		module_asgi iso_asgi:app
		working_dir {{APPS}}
		interpreters 2
		lifespan on
	}
}
`
	c := startCaddy(t, wsgi)
	count := func() int {
		status, b, err := c.fetch("GET", "/", nil)
		if err != nil || status != 200 {
			t.Fatalf("GET /: %d %v %.300s", status, err, b)
		}
		var r struct {
			Interpreters int    `json:"interpreters"`
			Instance     string `json:"instance"`
		}
		if err := json.Unmarshal(b, &r); err != nil || r.Instance == "" {
			t.Fatalf("GET /: %v %.300s", err, b)
		}
		return r.Interpreters
	}
	settle := func(round int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := count()
			if n == 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after reload %d: %d live interpreters, want 3 (main + the current app's 2)", round, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	settle(0)
	threads0, rss0 := c.threads(t), c.rss(t)
	for i := 1; i <= 20; i++ {
		if i%2 == 1 {
			c.reload(t, asgi)
		} else {
			c.reload(t, wsgi)
		}
		settle(i)
	}
	threads, rss := c.threads(t), c.rss(t)
	perInterp := float64(rss-rss0) / (1 << 20) / 40
	t.Logf("20 reloads (40 sub-interpreters ended): OS threads %d -> %d, RSS %d -> %d MiB (%.1f MiB per ended interpreter)",
		threads0, threads, rss0>>20, rss>>20, perInterp)
	if threads > threads0+8 {
		t.Errorf("OS threads grew from %d to %d over 20 reloads", threads0, threads)
	}
	// CPython 3.12/3.13 keep an ended sub-interpreter's allocator arenas
	// whenever any block is left (obmalloc.c frees them only at zero
	// leaked blocks, which a bare Py_NewInterpreter + Py_EndInterpreter
	// already misses): 6-12 MiB per interpreter importing asyncio, measured
	// with _interpreters alone, without caddy. This bounds what we add.
	if perInterp > 20 {
		t.Errorf("RSS grew %.1f MiB per ended sub-interpreter (from %d to %d MiB)", perInterp, rss0>>20, rss>>20)
	}
}

// buildLegacyExt compiles tests/apps/legacyext/legacyext.c against the
// linked CPython into a fresh working_dir holding legacy_app.py.
func buildLegacyExt(t *testing.T) string {
	t.Helper()
	p := requirePythonInfo(t)
	dir := t.TempDir()
	src := filepath.Join(appsDir, "legacyext")
	app, err := os.ReadFile(filepath.Join(src, "legacy_app.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "legacy_app.py"), app, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gcc", "-shared", "-fPIC", "-O1", "-I"+p.include,
		"-o", filepath.Join(dir, "legacyext"+p.extSuffix), filepath.Join(src, "legacyext.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("compiling legacyext: %v\n%s", err, out)
	}
	return dir
}

func legacySite(dir, extra string) string {
	return fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		module_wsgi legacy_app:app
		working_dir %s
		%s
	}
}
`, dir, extra)
}

// An extension that does not support sub-interpreters: fine in the main
// interpreter, a start-up error naming it and the setting in a
// sub-interpreter.
func TestSubinterpretersRefuseLegacyExtensionClearly(t *testing.T) {
	t.Parallel()
	requireSubinterpreters(t)
	dir := buildLegacyExt(t)

	c := startCaddy(t, legacySite(dir, ""))
	if b := c.get(t, "/", 200); string(b) != "answer=42" {
		t.Fatalf("main interpreter: GET / = %q, want answer=42", b)
	}
	c.stop()

	out, err := validate(t, legacySite(dir, "interpreters 2"))
	if err == nil {
		t.Fatalf("caddy validate accepted an app whose extension refuses sub-interpreters:\n%s", out)
	}
	for _, want := range []string{`C extension module \"legacyext\" cannot be loaded in a sub-interpreter`, `remove \"interpreters\"`} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %s:\n%s", want, out)
		}
	}

	// A real one from PyPI: pydantic-core (PyO3), under FastAPI; and
	// uvloop (Cython) asked for explicitly.
	venvSite := func(target, extra string) string {
		return fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		module_asgi %s
		working_dir {{APPS}}
		venv {{VENV}}
		interpreters 1
		%s
	}
}
`, target, extra)
	}
	t.Run("fastapi", func(t *testing.T) {
		requireVenvPackage(t, "fastapi")
		out, err := validate(t, venvSite("asgi_fastapi:app", ""))
		if err == nil || !strings.Contains(out, `C extension module \"pydantic_core._pydantic_core\" cannot be loaded in a sub-interpreter`) {
			t.Errorf("FastAPI in a sub-interpreter: want a start-up error naming pydantic_core, got %v:\n%s", err, out)
		}
	})
	out, err = validate(t, venvSite("asgi_raw:app", "loop uvloop"))
	if err == nil || !strings.Contains(out, "uvloop cannot run in a sub-interpreter; set loop asyncio") {
		t.Errorf("loop uvloop in a sub-interpreter: want a start-up error naming the loop setting, got %v:\n%s", err, out)
	}
	// loop auto falls back to asyncio there.
	c = startCaddy(t, venvSite("asgi_raw:app", "loop auto"))
	c.get(t, "/hello", 200)
}

// Settings the linked CPython cannot honour fail at `caddy validate`,
// saying why; on a CPython that can, they validate.
func TestInterpreterSettingsValidateAgainstLinkedPython(t *testing.T) {
	t.Parallel()
	p := requirePythonInfo(t)
	site := func(extra string) string {
		return pySite("http://127.0.0.1:{{PORT}}", "wsgi_alpha:app", extra)
	}
	out, err := validate(t, site("interpreters 2"))
	if p.minor < 12 {
		if err == nil || !strings.Contains(out, "interpreters 2 needs CPython 3.12 or later") {
			t.Errorf("interpreters on %d.%d: want a validate error saying 3.12 is needed, got %v:\n%s", p.major, p.minor, err, out)
		}
	} else if err != nil {
		t.Errorf("interpreters 2 on %d.%d: validate failed: %v\n%s", p.major, p.minor, err, out)
	}
	out, err = validate(t, site("free_threaded"))
	if !p.freeThreaded {
		if err == nil || !strings.Contains(out, "free_threaded needs a free-threaded CPython") {
			t.Errorf("free_threaded on a build with a GIL: want a validate error, got %v:\n%s", err, out)
		}
	} else if err != nil {
		t.Errorf("free_threaded on a free-threaded build: validate failed: %v\n%s", err, out)
	}
	out, err = validate(t, site("interpreters -1"))
	if err == nil || !strings.Contains(out, "interpreters: expected a whole number >= 0") {
		t.Errorf("interpreters -1: want a parse error, got %v:\n%s", err, out)
	}
}

// On a free-threaded CPython: the GIL stays off for an app whose
// extensions allow it; an extension that turns it back on is named, as a
// warning, or as a start-up error under free_threaded.
func TestFreeThreadedGILReport(t *testing.T) {
	t.Parallel()
	if p := requirePythonInfo(t); !p.freeThreaded {
		t.Skip("caddy is not linked against a free-threaded CPython")
	}
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_alpha:app", "free_threaded"))
	c.get(t, "/", 200)
	if !c.waitLog(time.Second, `"gil":"disabled"`) {
		t.Errorf("the start-up log does not say the GIL is disabled")
	}
	c.stop()

	dir := buildLegacyExt(t)
	c = startCaddy(t, legacySite(dir, ""))
	c.get(t, "/", 200)
	if !c.waitLog(time.Second, "turned the GIL back on", "enabled by module legacyext") {
		t.Errorf("no warning naming legacyext for turning the GIL back on")
	}
	c.stop()

	out, err := validate(t, legacySite(dir, "free_threaded"))
	if err == nil || !strings.Contains(out, "free_threaded is set, but importing the app turned the GIL on (enabled by module legacyext)") {
		t.Errorf("free_threaded with a GIL-enabling extension: want a start-up error naming it, got %v:\n%s", err, out)
	}
}

// A sub-interpreter whose app started a thread that never ends cannot be
// ended on reload (Py_EndInterpreter joins it). Found in review: ending it
// held the import lock all along, so the next reload's load, in any
// interpreter, hung for good, and so did any interpreter creation (the C
// lock around Py_EndInterpreter). Now an interpreter with such a thread is
// left running, with a warning, and the import lock is held at most 10s.
func TestStuckSubinterpreterEndDoesNotBlockLaterLoads(t *testing.T) {
	t.Parallel()
	requireSubinterpreters(t)
	site := func(mod string) string {
		return pySite("http://127.0.0.1:{{PORT}}", mod+":app", "interpreters 1")
	}
	c := startCaddy(t, site("wsgi_heartbeat"))
	c.get(t, "/", 200)
	c.reload(t, site("wsgi_alpha")) // the heartbeat interpreter now cannot end
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.reload(t, site("wsgi_beta")) // loads while that end is stuck
	}()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatalf("a reload hung while an earlier sub-interpreter could not end")
	}
	if got := string(c.get(t, "/x", 200)); got != "B:/x" {
		t.Errorf("after the reloads: %q, want B:/x", got)
	}
	// In process mode the drained worker exits with its interpreter: the
	// stuck end is not Caddy's to report.
	if processesMode == 0 && !c.waitLog(15*time.Second, "left running instead of ended") {
		t.Errorf("the stuck end was not logged")
	}
}
