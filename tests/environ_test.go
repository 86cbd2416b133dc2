package tests

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type environDump struct {
	Env   map[string]any    `json:"env"`
	Types map[string]string `json:"types"`
}

func decodeEnviron(t *testing.T, b []byte) environDump {
	t.Helper()
	var d environDump
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("environ dump is not JSON: %v\n%.1000s", err, b)
	}
	return d
}

// wantEnv asserts environ[key] == want (want may be string, bool, or nil
// for "absent").
func wantEnv(t *testing.T, d environDump, key string, want any) {
	t.Helper()
	got, ok := d.Env[key]
	if want == nil {
		if ok {
			t.Errorf("environ[%q] = %#v, want it absent", key, got)
		}
		return
	}
	if !ok {
		t.Errorf("environ[%q] is missing, want %#v", key, want)
		return
	}
	if got != want {
		t.Errorf("environ[%q] = %#v, want %#v", key, got, want)
	}
}

const environSites = `http://127.0.0.1:{{PORT}} {
	handle_path /prefix/* {
		python {
			module_wsgi "wsgi_environ:app"
			working_dir {{APPS}}
		}
	}
	handle {
		python {
			module_wsgi "wsgi_environ:app"
			working_dir {{APPS}}
		}
	}
}
`

func TestEnvironPEP3333OverHTTP1(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, environSites)

	t.Run("GET", func(t *testing.T) {
		resp, b := c.do(t, "GET", c.URL("/a%20b?x=1&y=%20z&x=2"), nil,
			"X-Multi", "one",
			"X-Multi", "two",
			"Cookie", "a=1",
			"Cookie", "b=2",
			"User-Agent", "caddysnake-tests",
		)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		d := decodeEnviron(t, b)
		wantEnv(t, d, "REQUEST_METHOD", "GET")
		wantEnv(t, d, "SCRIPT_NAME", "")
		wantEnv(t, d, "PATH_INFO", "/a b")
		wantEnv(t, d, "QUERY_STRING", "x=1&y=%20z&x=2")
		wantEnv(t, d, "SERVER_NAME", "127.0.0.1")
		wantEnv(t, d, "SERVER_PORT", strconv.Itoa(c.Port))
		wantEnv(t, d, "SERVER_PROTOCOL", "HTTP/1.1")
		wantEnv(t, d, "REMOTE_ADDR", "127.0.0.1")
		wantEnv(t, d, "HTTP_HOST", c.Addr())
		wantEnv(t, d, "HTTP_USER_AGENT", "caddysnake-tests")
		wantEnv(t, d, "HTTP_X_MULTI", "one, two")
		wantEnv(t, d, "HTTP_COOKIE", "a=1; b=2")
		wantEnv(t, d, "HTTP_CONTENT_TYPE", nil)
		wantEnv(t, d, "HTTP_CONTENT_LENGTH", nil)
		wantEnv(t, d, "wsgi.url_scheme", "http")
		wantEnv(t, d, "wsgi.multithread", true)
		wantEnv(t, d, "wsgi.multiprocess", false)
		wantEnv(t, d, "wsgi.run_once", false)
		if v, ok := d.Env["wsgi.version"].([]any); !ok || len(v) != 2 || v[0] != float64(1) || v[1] != float64(0) {
			t.Errorf("wsgi.version = %#v, want (1, 0)", d.Env["wsgi.version"])
		}
		if d.Types["wsgi.version"] != "tuple" {
			t.Errorf("wsgi.version is a %s, want tuple", d.Types["wsgi.version"])
		}
		for _, k := range []string{"wsgi.input", "wsgi.errors"} {
			if _, ok := d.Env[k]; !ok {
				t.Errorf("environ has no %s", k)
			}
		}
		// PEP 3333: every CGI variable present is a native str.
		for k, typ := range d.Types {
			if !strings.Contains(k, ".") && typ != "str" {
				t.Errorf("environ[%q] is a %s, want str", k, typ)
			}
		}
		if p, ok := d.Env["REMOTE_PORT"].(string); ok {
			if n, err := strconv.Atoi(p); err != nil || n <= 0 {
				t.Errorf("REMOTE_PORT = %q, want a port number", p)
			}
		}
	})

	t.Run("POST content headers", func(t *testing.T) {
		resp, b := c.do(t, "POST", c.URL("/post"), strings.NewReader("hello"),
			"Content-Type", "application/x-test; charset=utf-8")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		d := decodeEnviron(t, b)
		wantEnv(t, d, "REQUEST_METHOD", "POST")
		wantEnv(t, d, "CONTENT_TYPE", "application/x-test; charset=utf-8")
		wantEnv(t, d, "CONTENT_LENGTH", "5")
		wantEnv(t, d, "HTTP_CONTENT_TYPE", nil)
		wantEnv(t, d, "HTTP_CONTENT_LENGTH", nil)
	})

	t.Run("SCRIPT_NAME from handle_path", func(t *testing.T) {
		b := c.get(t, "/prefix/x?q=1", 200)
		d := decodeEnviron(t, b)
		wantEnv(t, d, "SCRIPT_NAME", "/prefix")
		wantEnv(t, d, "PATH_INFO", "/x")
		wantEnv(t, d, "QUERY_STRING", "q=1")
	})
}

func TestEnvironHTTP2OverTLS(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	python {
		module_wsgi "wsgi_environ:app"
		working_dir {{APPS}}
	}
}
`, siteOpts{tls: true})
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			ForceAttemptHTTP2: true,
		},
	}
	defer client.CloseIdleConnections()
	url := "https://" + c.Addr() + "/h2/path?k=v"
	resp := getOnceCertReady(t, client, url)
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("response protocol %s, want HTTP/2", resp.Proto)
	}
	var d environDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	wantEnv(t, d, "SERVER_PROTOCOL", "HTTP/2.0")
	wantEnv(t, d, "wsgi.url_scheme", "https")
	wantEnv(t, d, "PATH_INFO", "/h2/path")
	wantEnv(t, d, "QUERY_STRING", "k=v")
	wantEnv(t, d, "SERVER_NAME", "127.0.0.1")
	wantEnv(t, d, "SERVER_PORT", strconv.Itoa(c.Port))
	wantEnv(t, d, "REMOTE_ADDR", "127.0.0.1")
	wantEnv(t, d, "REQUEST_METHOD", "GET")
}
