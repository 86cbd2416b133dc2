package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Request targets and trailers Go's parser lets through but RFC 9112 / 9110
// do not (target.go), replayed byte for byte as in gunicorn's request
// corpus, against a WSGI and an ASGI app: the same answer from both.

// rawDo sends req as is and parses the answer.
func rawDo(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	out, err := rawExchange(t, addr, req, false, 10*time.Second)
	if out == "" {
		t.Fatalf("no answer to %q: %v", req, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("answer to %q: %v\n%s", req, err, out)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// targetApps: a WSGI app dumping its environ on {{PORT}}, an ASGI app
// dumping its scope on {{PORT2}}.
func targetApps(t *testing.T, opts ...siteOpts) *caddy {
	return startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_environ:app")+
		strings.Replace(asgiSite(t, "asgi_raw:app"), "{{PORT}}", "{{PORT2}}", 1), opts...)
}

func (c *caddy) addr2() string { return fmt.Sprintf("127.0.0.1:%d", c.Port2) }

func wsgiEnv(t *testing.T, body string) map[string]any {
	t.Helper()
	var out struct {
		Env map[string]any `json:"env"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("environ: %v\n%s", err, body)
	}
	return out.Env
}

func asgiScope(t *testing.T, body string) map[string]any {
	t.Helper()
	var scope map[string]any
	if err := json.Unmarshal([]byte(body), &scope); err != nil {
		t.Fatalf("scope: %v\n%s", err, body)
	}
	return scope
}

func TestRequestTargetChecks(t *testing.T) {
	c := targetApps(t)
	host := "Host: 127.0.0.1\r\nConnection: close\r\n"

	bad := []struct{ name, line, logs string }{
		{"non-ASCII bytes in the target", "GET /api/\xc3\xa9esource/456 HTTP/1.1\r\n", "non-ASCII byte"},
		{"authority-form on GET", "GET example.com:443 HTTP/1.1\r\n", "authority-form is only for CONNECT"},
		{"asterisk-form on GET", "GET * HTTP/1.1\r\n", "only for OPTIONS"},
		{"asterisk-form on POST", "POST * HTTP/1.1\r\n", "only for OPTIONS"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, app := range []struct{ name, addr, path string }{{"wsgi", c.Addr(), ""}, {"asgi", c.addr2(), ""}} {
				status, body := rawDo(t, app.addr, tc.line+host+"\r\n")
				if status != http.StatusBadRequest {
					t.Errorf("%s: %q answered %d, want 400\n%s", app.name, tc.line, status, body)
				}
			}
			if !c.waitLog(2*time.Second, "bad request target", tc.logs) {
				t.Errorf("no log line naming the cause (%q)", tc.logs)
			}
		})
	}

	t.Run("control characters in a header value, a second Content-Type", func(t *testing.T) {
		for _, hdr := range []string{"X-Value: plain\x07injected\r\n", "X-Value: plain\x7finjected\r\n",
			"Content-Type: application/json\r\nContent-Type: text/html\r\n"} {
			for _, addr := range []string{c.Addr(), c.addr2()} {
				status, body := rawDo(t, addr, "GET /scope HTTP/1.1\r\n"+host+hdr+"\r\n")
				if status != http.StatusBadRequest {
					t.Errorf("%s: %q answered %d, want 400\n%s", addr, hdr, status, body)
				}
			}
		}
		// The control characters are Go's 400; the Content-Type is ours.
		if !c.waitLog(2*time.Second, "bad request header", "single-value field") {
			t.Error("no log line naming the bad header")
		}
		// HTAB and obs-text (bytes >= 0x80) are allowed in values.
		if status, body := rawDo(t, c.addr2(), "GET /scope HTTP/1.1\r\n"+host+"X-Value: a\tb\xe9\r\n\r\n"); status != 200 {
			t.Errorf("HTAB and obs-text answered %d\n%s", status, body)
		}
	})

	t.Run("OPTIONS * and absolute-form are still served", func(t *testing.T) {
		for _, line := range []string{"OPTIONS * HTTP/1.1\r\n", "GET http://127.0.0.1/scope?x=1 HTTP/1.1\r\n"} {
			if status, body := rawDo(t, c.addr2(), line+host+"\r\n"); status != http.StatusOK {
				t.Errorf("%q answered %d\n%s", line, status, body)
			}
		}
	})

	t.Run("a fragment is dropped from the query", func(t *testing.T) {
		status, body := rawDo(t, c.Addr(), "GET /?page=1#posts-17408 HTTP/1.1\r\n"+host+"\r\n")
		env := wsgiEnv(t, body)
		if status != 200 || env["QUERY_STRING"] != "page=1" || env["PATH_INFO"] != "/" {
			t.Fatalf("WSGI: %d QUERY_STRING %q PATH_INFO %q, want page=1 and /", status, env["QUERY_STRING"], env["PATH_INFO"])
		}
		status, body = rawDo(t, c.addr2(), "GET /scope?page=1#posts-17408 HTTP/1.1\r\n"+host+"\r\n")
		scope := asgiScope(t, body)
		if status != 200 || scope["query_string"] != "page=1" || scope["path"] != "/scope" {
			t.Fatalf("ASGI: %d query_string %q path %q", status, scope["query_string"], scope["path"])
		}
	})

	t.Run("a fragment is dropped from the path", func(t *testing.T) {
		status, body := rawDo(t, c.Addr(), "GET /a%23b/c#frag HTTP/1.1\r\n"+host+"\r\n")
		env := wsgiEnv(t, body)
		if status != 200 || env["PATH_INFO"] != "/a#b/c" || env["QUERY_STRING"] != "" {
			t.Fatalf("WSGI: %d PATH_INFO %q QUERY_STRING %q, want /a#b/c (the %%23 is path)", status, env["PATH_INFO"], env["QUERY_STRING"])
		}
		status, body = rawDo(t, c.addr2(), "GET /scope#frag HTTP/1.1\r\n"+host+"\r\n")
		scope := asgiScope(t, body)
		if status != 200 || scope["path"] != "/scope" || scope["raw_path"] != "/scope" {
			t.Fatalf("ASGI: %d path %q raw_path %q", status, scope["path"], scope["raw_path"])
		}
	})
}

func TestForbiddenRequestTrailersAreRefused(t *testing.T) {
	c := targetApps(t)
	chunked := func(path, declared, trailer string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n" +
			"Trailer: " + declared + "\r\n\r\n5\r\nhello\r\n0\r\n" + trailer + "\r\n"
	}
	for _, app := range []struct{ name, addr, path string }{{"wsgi", c.Addr(), "/"}, {"asgi", c.addr2(), "/echo"}} {
		for _, field := range []string{"Content-Length: 5", "Host: evil.example", "Transfer-Encoding: chunked"} {
			status, body := rawDo(t, app.addr, chunked(app.path, "X-Sum", "X-Sum: 1\r\n"+field+"\r\n"))
			if status != http.StatusBadRequest {
				t.Errorf("%s: trailer %q answered %d, want 400\n%s", app.name, field, status, body)
			}
		}
		if status, body := rawDo(t, app.addr, chunked(app.path, "X-Sum", "X-Sum: 1\r\n")); status != http.StatusOK {
			t.Errorf("%s: an allowed trailer answered %d\n%s", app.name, status, body)
		}
	}
	if !c.waitLog(2*time.Second, "request trailers carry forbidden fields", "Content-Length") {
		t.Error("no log line naming the forbidden trailer field")
	}
}

// Header names with token characters other than "-" reach the app, except
// "_" (dropped, so X_Forwarded_For cannot pose as X-Forwarded-For) and "."
// (Caddy drops those before any handler unless expected_dot_headers allows
// them, GHSA-49wc-4hcv-v58q).
func TestTokenHeaderNamesReachTheApp(t *testing.T) {
	c := targetApps(t, siteOpts{globals: "servers {\n\t\texpected_dot_headers x.custom*\n\t}"})
	req := "GET /scope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Tok|EN~!: a\r\nX.CUSTOM|PIPE: b\r\nX_Spoof: c\r\n\r\n"
	_, body := rawDo(t, c.Addr(), req)
	env := wsgiEnv(t, body)
	if env["HTTP_X_TOK|EN~!"] != "a" || env["HTTP_X.CUSTOM|PIPE"] != "b" || env["HTTP_X_SPOOF"] != nil {
		t.Errorf("WSGI: HTTP_X_TOK|EN~! %q, HTTP_X.CUSTOM|PIPE %q, HTTP_X_SPOOF %v; want a, b and none",
			env["HTTP_X_TOK|EN~!"], env["HTTP_X.CUSTOM|PIPE"], env["HTTP_X_SPOOF"])
	}
	_, body = rawDo(t, c.addr2(), req)
	got := map[string]string{}
	for _, kv := range asgiScope(t, body)["headers"].([]any) {
		pair := kv.([]any)
		got[pair[0].(string)] = pair[1].(string)
	}
	if got["x-tok|en~!"] != "a" || got["x.custom|pipe"] != "b" || got["x_spoof"] != "" {
		t.Errorf("ASGI headers %v", got)
	}
}
