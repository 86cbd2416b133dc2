package tests

import (
	"strings"
	"testing"
)

// The harness's process mode reaches every python block, whatever its
// form, and leaves alone a block that sets its own count.
func TestHarnessAddsProcessesToEveryPythonBlock(t *testing.T) {
	t.Parallel()
	sites := `http://a {
	handle /x/* {
		python {
			module_wsgi "a:app"
		}
	}
	python "b:app" {
		working_dir /tmp
	}
}
http://b {
	python {
		module_asgi "c:app"
		processes 1
	}
	respond "python {" 200
}
`
	if got := withProcesses(sites, 0); got != sites {
		t.Fatalf("with 0 the sites changed:\n%s", got)
	}
	got := withProcesses(sites, 3)
	if n := strings.Count(got, "processes 3"); n != 2 {
		t.Errorf("%d blocks got processes 3, want 2:\n%s", n, got)
	}
	for _, want := range []string{"\t\tpython {\n\t\t\tprocesses 3\n", "\tpython \"b:app\" {\n\t\tprocesses 3\n",
		"\t\tmodule_asgi \"c:app\"\n\t\tprocesses 1\n\t}"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}
