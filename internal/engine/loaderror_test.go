package engine

import (
	"errors"
	"testing"
)

// A load error names its app once: the loader's messages name it already.
func TestLoadErrorNamesTheAppOnce(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`cannot load "a:app": no module named "a"`, `python: cannot load "a:app": no module named "a"`},
		{`"a:app" is an ASGI application: serve it with module_asgi, not module_wsgi`,
			`python: "a:app" is an ASGI application: serve it with module_asgi, not module_wsgi`},
		{"lifespan startup failed: db down", `python: cannot load "a:app": lifespan startup failed: db down`},
		{`cannot load "b:app": x`, `python: cannot load "a:app": cannot load "b:app": x`},
	} {
		if got := loadError("a:app", errors.New(tc.in)).Error(); got != tc.want {
			t.Errorf("loadError(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
