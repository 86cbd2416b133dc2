package caddysnake

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func writeEnvFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseEnvFile(t *testing.T) {
	p := writeEnvFile(t, "\ufeff# a comment\n\nPLAIN=value\nexport EXPORTED = spaced out  \n"+
		"COMMENTED=v # trailing comment\nSINGLE='lit $HOME \\n' # c\nDOUBLE=\"a\\nb \\\"q\\\" \\$x\"\n"+
		"EMPTY=\nHASH=a#b\nEQUALS=a=b\n")
	got, err := parseEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PLAIN": "value", "EXPORTED": "spaced out", "COMMENTED": "v", "SINGLE": `lit $HOME \n`,
		"DOUBLE": "a\nb \"q\" $x", "EMPTY": "", "HASH": "a#b", "EQUALS": "a=b"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestParseEnvFileErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{"A=1\nno equals sign\n", `line 2: expected NAME=value, got "no equals sign"`},
		{"\n\nBAD-NAME=1\n", `line 3: "BAD-NAME" is not a variable name`},
		{"1ST=1\n", `line 1: "1ST" is not a variable name`},
		{"Q=\"open\n", `line 1: Q: no closing "`},
		{"Q='open\n", `line 1: Q: no closing '`},
		{"Q=\"a\" b\n", `line 1: Q: unexpected "b" after the quoted value`},
		{"CADDYSNAKE_WORKER_CONFIG={}\n", "line 1: CADDYSNAKE_WORKER_CONFIG is caddysnake's own"},
	} {
		p := writeEnvFile(t, tc.content)
		_, err := parseEnvFile(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.content, err, tc.want)
		}
	}
	if _, err := parseEnvFile("/nonexistent/.env"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: got %v", err)
	}
}

func TestCaddyfileEnv(t *testing.T) {
	h, err := parse(t, `python {
		module_wsgi "a:b"
		env DJANGO_SETTINGS_MODULE mysite.settings
		env GREETING "hello world"
		env_file .env
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DJANGO_SETTINGS_MODULE": "mysite.settings", "GREETING": "hello world"}
	if !reflect.DeepEqual(h.Env, want) || h.EnvFile != ".env" {
		t.Fatalf("Env %q, EnvFile %q", h.Env, h.EnvFile)
	}
	for _, tc := range []struct{ input, want string }{
		{"python {\nenv A\n}", "env takes a name and a value"},
		{"python {\nenv A 1 2\n}", "env takes a name and a value"},
		{"python {\nenv A-B 1\n}", `"A-B" is not a variable name`},
		{"python {\nenv A 1\nenv A 2\n}", "env A is set twice"},
		{"python {\nenv_file\n}", "env_file takes one argument"},
		{"python {\nenv_file a\nenv_file b\n}", `env_file is already set to "a"`},
	} {
		_, err := parse(t, tc.input)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.input, err, tc.want)
		}
	}
}

// env wins over env_file, and the app sees both in os.environ (in-process).
func TestEnvReachesTheApp(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	file := writeEnvFile(t, "CS_UNIT_FROM_FILE=file\nCS_UNIT_BOTH=file\n")
	srv := serveApp(t, &Handler{ModuleWSGI: "unit_app:getenv", WorkingDir: testdata, EnvFile: file,
		Env: map[string]string{"CS_UNIT_BOTH": "env", "CS_UNIT_SPACED": "a b"}})
	for name, want := range map[string]string{"CS_UNIT_FROM_FILE": "file", "CS_UNIT_BOTH": "env", "CS_UNIT_SPACED": "a b"} {
		if code, body := get(t, srv.URL+"/"+name); code != 200 || body != want {
			t.Errorf("%s: got %d %q, want %q", name, code, body, want)
		}
	}
}

func TestEnvFileErrorFailsProvision(t *testing.T) {
	testdata, _ := filepath.Abs("testdata")
	file := writeEnvFile(t, "OK=1\nnot a line\n")
	h := Handler{ModuleWSGI: "unit_app:getenv", WorkingDir: testdata, EnvFile: file}
	err := provision(t, &h)
	if err == nil || !strings.Contains(err.Error(), "line 2: expected NAME=value") {
		t.Fatalf("got %v", err)
	}
}

// Two in-process apps of one config may not set one variable to different
// values; the same value, another config, or a worker process is fine.
func TestSharedEnvConflicts(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	claim := func(app string, processes int, env ...string) error {
		h := Handler{ModuleWSGI: app, Processes: processes, env: env}
		return h.claimSharedEnv(ctx)
	}
	if err := claim("a:app", 0, "X=1", "Y=2"); err != nil {
		t.Fatal(err)
	}
	if err := claim("b:app", 0, "X=1"); err != nil {
		t.Fatalf("same value: %v", err)
	}
	if err := claim("c:app", 1, "X=3"); err != nil {
		t.Fatalf("worker process: %v", err)
	}
	err := claim("d:app", 0, "Y=3")
	if err == nil || !strings.Contains(err.Error(), `env Y is "2" for a:app but "3" for d:app`) {
		t.Fatalf("conflict: got %v", err)
	}
	other, cancel2 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel2()
	h := Handler{ModuleWSGI: "e:app", env: []string{"Y=3"}}
	if err := h.claimSharedEnv(other); err != nil {
		t.Fatalf("another config: %v", err)
	}
}
