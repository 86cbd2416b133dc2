package tests

// A fault that ends the process leaves a trace in Caddy's log: a fatal
// signal gets faulthandler's Python stacks before Go's dump, and os._exit()
// is logged with the app and the request before the process ends.

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// exitOf waits for the process to end and returns its exit code (-1 for a
// signal).
func (c *caddy) exitOf(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(within):
		t.Fatalf("caddy still runs %v after the fault", within)
	}
	var ee *exec.ExitError
	if errors.As(c.waitErr, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func TestFatalSignalLogsPythonStacks(t *testing.T) {
	skipInProcessMode(t, "the segfault ends a worker, not Caddy: TestProcessesCrash checks that")
	t.Parallel()
	site := pySite("http://127.0.0.1:{{PORT}}", "wsgi_faults:app")
	c := startCaddy(t, site)
	c.get(t, "/ok", 200)
	_, _, _ = c.fetch("GET", "/segv", nil) // no answer: the process dies
	if code := c.exitOf(t, 20*time.Second); code == 0 {
		t.Errorf("caddy exited with status 0 after a segfault")
	}
	log := c.Log()
	py := strings.Index(log, "Fatal Python error: Segmentation fault")
	frame := strings.Index(log, `wsgi_faults.py", line 10 in segv_view`)
	gosig := strings.LastIndex(log, "SIGSEGV: segmentation violation")
	if py < 0 || frame < 0 {
		t.Fatalf("no faulthandler report with the app's frame (segv_view) in the log:\n%s", tail(log, 6000))
	}
	// faulthandler chains to Go's handler, installed before it: Go's own
	// dump still follows.
	if gosig < frame {
		t.Errorf("Go's SIGSEGV dump does not follow faulthandler's report:\n%s", tail(log, 6000))
	}

	// faulthandler reports the crashing thread's interpreter, a
	// sub-interpreter's too.
	t.Run("sub-interpreter", func(t *testing.T) {
		requireSubinterpreters(t)
		c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_faults:app", "interpreters 2"))
		_, _, _ = c.fetch("GET", "/abort", nil)
		c.exitOf(t, 20*time.Second)
		log := c.Log()
		if !strings.Contains(log, "Fatal Python error: Aborted") || !strings.Contains(log, `wsgi_faults.py", line 14 in abort_view`) {
			t.Errorf("abort() in a sub-interpreter: no faulthandler report with abort_view:\n%s", tail(log, 6000))
		}
	})

	t.Run("CADDYSNAKE_FAULTHANDLER=0", func(t *testing.T) {
		c := startCaddy(t, site, siteOpts{env: []string{"CADDYSNAKE_FAULTHANDLER=0"}})
		_, _, _ = c.fetch("GET", "/segv", nil)
		c.exitOf(t, 20*time.Second)
		log := c.Log()
		// Go's dump, or AddressSanitizer's report under make check-memory
		// (its handler comes before Go's there).
		crashed := strings.Contains(log, "SIGSEGV: segmentation violation") || strings.Contains(log, "AddressSanitizer: SEGV")
		if strings.Contains(log, "Fatal Python error") || !crashed {
			t.Errorf("with CADDYSNAKE_FAULTHANDLER=0: want Go's dump only:\n%s", tail(log, 4000))
		}
	})
}

func TestOSExitIsLoggedWithAppAndRequest(t *testing.T) {
	skipInProcessMode(t, "os._exit ends a worker, not Caddy: TestProcessesCrash checks that")
	t.Parallel()
	cases := []struct {
		name, site, app string
		code            int
	}{
		{"wsgi", pySite("http://127.0.0.1:{{PORT}}", "wsgi_faults:app"), "wsgi_faults:app", 3},
		{"asgi", `http://127.0.0.1:{{PORT}} {
	python {
		module_asgi "wsgi_faults:asgi_app"
		working_dir {{APPS}}
	}
}
`, "wsgi_faults:asgi_app", 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startCaddy(t, tc.site)
			c.get(t, "/ok", 200)
			_, _, _ = c.fetch("GET", "/exit?why=test", nil)
			if code := c.exitOf(t, 20*time.Second); code != tc.code {
				t.Errorf("exit status %d, want the app's %d", code, tc.code)
			}
			log := c.Log()
			line := ""
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "os._exit(") {
					line = l
				}
			}
			for _, want := range []string{"python app " + tc.app, "while serving this request",
				`"method":"GET"`, `"uri":"/exit?why=test"`, "wsgi_faults.py"} {
				if !strings.Contains(line, want) {
					t.Errorf("the os._exit log line lacks %s:\n%s", want, tail(log, 4000))
				}
			}
		})
	}
}
