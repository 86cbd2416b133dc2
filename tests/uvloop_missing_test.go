package tests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `loop uvloop` without uvloop says so, not "lifespan startup failed".
func TestMissingUvloopSaysSo(t *testing.T) {
	t.Parallel()
	base := strings.TrimSpace(runOut(t, filepath.Join(requireVenv(t), "bin", "python"), "-c",
		"import sys; print(sys.base_prefix)"))
	if exec.Command(filepath.Join(base, "bin", "python3"), "-c", "import uvloop").Run() == nil {
		t.Skipf("uvloop is installed in the linked Python (%s): no venv can lack it", base)
	}
	bare := filepath.Join(t.TempDir(), "bare-venv")
	runOut(t, filepath.Join(base, "bin", "python3"), "-m", "venv", "--without-pip", bare)
	out, err := validate(t, "http://127.0.0.1:{{PORT}} {\n\tpython {\n\t\tmodule_asgi \"asgi_raw:app\"\n"+
		"\t\tworking_dir {{APPS}}\n\t\tvenv "+bare+"\n\t\tloop uvloop\n\t}\n}\n")
	if err == nil {
		t.Fatalf("validate succeeded without uvloop; output:\n%s", out)
	}
	plain := unescapeLog(out)
	want := "loop uvloop: uvloop is not installed in " + bare + ": pip install uvloop, or use loop asyncio"
	if !strings.Contains(plain, want) {
		t.Errorf("output does not say %q:\n%s", want, plain)
	}
	if strings.Contains(plain, "lifespan startup failed") {
		t.Errorf("a loop that could not start is called a lifespan failure:\n%s", plain)
	}
}
