package tests

// Real apps × `interpreters 1` and `2`: each validates and serves, or fails
// with the documented message, and the process never crashes. On CPython
// 3.12.1 `interpreters 2` with an app importing datetime and decimal died
// in caddysnake_load_app (SIGSEGV), Flask too; on 3.13.0 FastAPI with
// `interpreters 2` died in caddysnake_interp_end instead of saying that
// pydantic_core cannot be loaded in a sub-interpreter.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// crashSigns are what a Go runtime dump or a CPython fatal error print.
var crashSigns = []string{"SIGSEGV", "SIGABRT", "SIGBUS", "fatal error:", "Fatal Python error", "free(): ", "double free"}

func assertNoCrash(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range crashSigns {
		if strings.Contains(out, s) {
			t.Fatalf("%s: the process crashed (%q in its output):\n%s", what, s, tail(out, 4000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func TestSubinterpreterAppMatrix(t *testing.T) {
	t.Parallel()
	requireSubinterpreters(t)
	requireVenv(t)
	type app struct {
		name, kind, target string
		module             string // the venv package it needs, "" for none
		path               string // GET path and what its body must hold
		want               string
		refusal            string // the validate error expected instead
	}
	apps := []app{
		{name: "stdlib", kind: "module_wsgi", target: "wsgi_stdlib:app", path: "/", want: `"decimal": "3.305"`},
		{name: "flask", kind: "module_wsgi", target: "flask_site:app", module: "flask", path: "/json?x=1", want: `"framework":"flask"`},
		{name: "django", kind: "module_wsgi", target: "django_site:application", module: "django", path: "/json/", want: `"framework": "django"`},
		{name: "fastapi", kind: "module_asgi", target: "asgi_fastapi:app", module: "fastapi",
			refusal: `C extension module \"pydantic_core._pydantic_core\" cannot be loaded in a sub-interpreter`},
	}
	for _, a := range apps {
		for _, n := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/interpreters_%d", a.name, n), func(t *testing.T) {
				t.Parallel()
				if a.module != "" {
					requireVenvPackage(t, a.module)
				}
				site := fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		%s %q
		working_dir {{APPS}}
		venv {{VENV}}
		interpreters %d
	}
}
`, a.kind, a.target, n)
				out, err := validate(t, site)
				assertNoCrash(t, "caddy validate", out)
				if a.refusal != "" {
					if err == nil || !strings.Contains(out, a.refusal) {
						t.Fatalf("caddy validate: want the error %s, got %v:\n%s", a.refusal, err, tail(out, 4000))
					}
					return
				}
				if err != nil {
					t.Fatalf("caddy validate: %v\n%s", err, tail(out, 4000))
				}
				c := startCaddy(t, site)
				// Enough requests to reach every interpreter (ties rotate).
				for i := range 2 * n {
					if b := c.get(t, a.path, 200); !strings.Contains(string(b), a.want) {
						t.Fatalf("GET %s #%d: want %s in %.500s", a.path, i, a.want, b)
					}
				}
				// A reload ends these interpreters and loads new ones.
				c.reload(t, site)
				b := c.get(t, a.path, 200)
				if a.name == "stdlib" {
					var m map[string]any
					if err := json.Unmarshal(b, &m); err != nil || m["sqlite"] != float64(45) || m["asyncio"] != float64(42) || m["date"] != "2024-01-03T03:04:05+00:00" {
						t.Errorf("GET / after reload: %v %s", err, b)
					}
				}
				c.stop()
				assertNoCrash(t, "caddy run", c.Log())
			})
		}
	}
}
