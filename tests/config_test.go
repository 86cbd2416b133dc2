package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigErrorsFailValidate(t *testing.T) {
	t.Parallel()

	// A venv made for another Python version.
	fakeVenv := filepath.Join(t.TempDir(), "venv39")
	if err := os.MkdirAll(filepath.Join(fakeVenv, "lib", "python3.9", "site-packages"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(fakeVenv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.9.1\n"
	if err := os.WriteFile(filepath.Join(fakeVenv, "pyvenv.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(t.TempDir(), "does-not-exist")

	// A venv for the right Python that holds another caddysnake version.
	// The linked Python is the one the test venv was made with (Makefile).
	py := "python3"
	if v := os.Getenv("CADDYSNAKE_VENV"); v != "" {
		py = filepath.Join(v, "bin", "python")
	}
	// pyver is "3.13"; libdir is "python3.13", or "python3.13t" on a
	// free-threaded build, whose venvs use that directory.
	pyver, libdir, _ := strings.Cut(strings.TrimSpace(runOut(t, py, "-c",
		"import sys, sysconfig; v = '%d.%d' % sys.version_info[:2]; "+
			"print(v, 'python' + v + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))")), " ")
	oldPkgVenv := filepath.Join(t.TempDir(), "venv-old-caddysnake")
	oldSite := filepath.Join(oldPkgVenv, "lib", libdir, "site-packages")
	if err := os.MkdirAll(filepath.Join(oldSite, "caddysnake-0.0.1.dist-info"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(oldPkgVenv, "pyvenv.cfg"), []byte("home = /usr/bin\nversion = "+pyver+".0\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	site := func(body string) string {
		return "http://127.0.0.1:{{PORT}} {\n\tpython {\n" + body + "\n\t}\n}\n"
	}

	t.Run("valid config validates", func(t *testing.T) {
		out, err := validate(t, site(`module_wsgi "wsgi_alpha:app"
		working_dir {{APPS}}`))
		if err != nil {
			t.Fatalf("a valid config failed validation: %v\n%s", err, out)
		}
	})

	cases := []struct {
		name string
		body string
		want []string // all must appear in the output
	}{
		{
			name: "missing attribute",
			body: `module_wsgi "wsgi_alpha:nope_not_here"
		working_dir {{APPS}}`,
			want: []string{"nope_not_here", "has no attribute"},
		},
		{
			name: "bad module:attr syntax",
			body: `module_wsgi "wsgi_alpha_app"
		working_dir {{APPS}}`,
			want: []string{`expected "module:attribute"`},
		},
		{
			name: "empty attribute",
			body: `module_wsgi "wsgi_alpha:"
		working_dir {{APPS}}`,
			want: []string{`expected "module:attribute"`},
		},
		{
			name: "import error shows the traceback",
			body: `module_wsgi "cfg_import_error:app"
		working_dir {{APPS}}`,
			want: []string{"Traceback", "no_such_module_caddysnake_4242", "cfg_import_error"},
		},
		{
			name: "attribute not callable",
			body: `module_wsgi "cfg_not_callable:app"
		working_dir {{APPS}}`,
			want: []string{"cfg_not_callable:app", "callable"},
		},
		{
			name: "memory_limit without processes",
			body: `module_wsgi "wsgi_alpha:app"
		working_dir {{APPS}}
		processes 0
		memory_limit 1GiB`,
			want: []string{"memory_limit caps the memory of worker processes", "set processes 1 or more"},
		},
		{
			name: "memory_limit not a size",
			body: `module_wsgi "wsgi_alpha:app"
		working_dir {{APPS}}
		processes 1
		memory_limit lots`,
			want: []string{"memory_limit: expected a size"},
		},
		{
			name: "unknown subdirective",
			body: `module_wsgi "wsgi_alpha:app"
		working_dir {{APPS}}
		bogus_subdirective 1`,
			want: []string{"unknown python subdirective", "bogus_subdirective"},
		},
		{
			name: "working_dir missing",
			body: `module_wsgi "wsgi_alpha:app"
		working_dir ` + missingDir,
			want: []string{"working_dir", missingDir, "not a directory"},
		},
		{
			name: "venv for another Python version",
			body: `module_wsgi "wsgi_alpha:app"
		working_dir {{APPS}}
		venv ` + fakeVenv,
			want: []string{"3.9", fakeVenv},
		},
		{
			name: "venv holding another caddysnake version",
			body: `module_wsgi "wsgi_alpha:app"
		working_dir {{APPS}}
		venv ` + oldPkgVenv,
			want: []string{"0.0.1", "0.1.0", "caddysnake"},
		},
		{
			name: "module_wsgi missing",
			body: `working_dir {{APPS}}`,
			want: []string{"module_wsgi"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := validate(t, site(tc.body))
			if err == nil {
				t.Fatalf("caddy validate succeeded, want a non-zero exit; output:\n%s", out)
			}
			// Caddy logs the error as JSON: undo its string escaping.
			plain := strings.NewReplacer(`\"`, `"`, `\n`, "\n", `\t`, "\t").Replace(out)
			for _, w := range tc.want {
				if !strings.Contains(plain, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
		})
	}
}

func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}
