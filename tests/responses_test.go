package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func websocketDialOK(c *caddy, path string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+c.Addr()+path, nil)
	if err == nil {
		conn.CloseNow()
	}
	return resp, err
}

// badFiles are paths that cannot be sent as a response: the name is what
// the log line must show.
func badFiles(t *testing.T) map[string]string {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	return map[string]string{
		"missing":   filepath.Join(dir, "no-such-file"),
		"directory": dir,
		"FIFO":      fifo,
	}
}

// getRaw is GET path with the response read whole; readErr is the error
// reading the body (an aborted response), trailers what came after it.
func getRaw(t *testing.T, c *caddy, path string) (status int, body string, readErr error, resp *http.Response) {
	t.Helper()
	resp, err := c.Client.Get(c.URL(path))
	if err != nil {
		return 0, "", err, nil
	}
	defer resp.Body.Close()
	b, readErr := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), readErr, resp
}

func testBadFiles(t *testing.T, c *caddy, wsgi bool) {
	for kind, path := range badFiles(t) {
		if wsgi && kind != "FIFO" {
			continue // the app opens the file itself: open() raises in the app
		}
		t.Run(kind, func(t *testing.T) {
			status, body, readErr, resp := getRaw(t, c, "/file?path="+url.QueryEscape(path))
			if status != 500 || readErr != nil {
				t.Errorf("a %s sent as the whole response: %d %q (read error %v, headers %v), want 500", kind, status, body, readErr, headersOf(resp))
			}
			if !c.waitLog(3*time.Second, path) {
				t.Errorf("no log line names %s", path)
			}
			status, body, readErr, _ = getRaw(t, c, "/file-after?path="+url.QueryEscape(path))
			if readErr == nil {
				t.Errorf("a %s sent after a first chunk: %d %q read whole, want the response aborted", kind, status, body)
			}
		})
	}
	if _, b := c.do(t, "GET", c.URL("/ok"), nil); string(b) != "ok" {
		t.Errorf("GET /ok after the bad files: %q", b)
	}
}

func headersOf(resp *http.Response) http.Header {
	if resp == nil {
		return nil
	}
	return resp.Header
}

func TestPathsendOfBadFileIs500OrAbort(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, asgiSite(t, "asgi_faults:app"))
	testBadFiles(t, c, false)
}

func TestFileWrapperOfBadFileIs500OrAbort(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_badresponses:app"))
	testBadFiles(t, c, true)
	// A regular file still goes out whole, by sendfile.
	f := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(f, []byte(strings.Repeat("x", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if status, body, err, _ := getRaw(t, c, "/file?path="+url.QueryEscape(f)); status != 200 || len(body) != 100000 || err != nil {
		t.Errorf("a regular file: %d, %d bytes, %v", status, len(body), err)
	}
}

var badHeaderCases = []string{"nul-value", "crlf-value", "lf-value", "ctl-value", "del-value", "space-name", "colon-name", "empty-name"}

// rawGet sends GET path on its own connection and returns the raw response
// (what went on the wire, headers included).
func rawGet(t *testing.T, c *caddy, path string) string {
	t.Helper()
	out, _ := rawExchange(t, c.Addr(), "GET "+path+" HTTP/1.1\r\nHost: "+c.Addr()+"\r\nConnection: close\r\n\r\n", false, 10*time.Second)
	return out
}

// finalStatus is the status of a raw response after any 1xx ones.
func finalStatus(out string) int {
	for {
		st := statusOf(out)
		if st < 100 || st >= 200 {
			return st
		}
		_, rest, ok := strings.Cut(out, "\r\n\r\n")
		if !ok {
			return 0
		}
		out = rest
	}
}

func testBadHeaders(t *testing.T, c *caddy, prefixes ...string) {
	for _, prefix := range prefixes {
		for _, tc := range badHeaderCases {
			if prefix == "/hint" && strings.HasSuffix(tc, "-name") {
				continue // the app sends only a value (a Link)
			}
			t.Run(prefix+tc, func(t *testing.T) {
				out := rawGet(t, c, prefix+"?case="+tc)
				if finalStatus(out) != 500 || strings.Contains(out, "injected") || strings.Contains(out, "sent") {
					t.Errorf("%s%s: want 500 and none of the app's response, got:\n%q", prefix, tc, out)
				}
			})
		}
		for _, tc := range []string{"tab-value", "obs-text"} {
			if out := rawGet(t, c, prefix+"?case="+tc); finalStatus(out) != 200 {
				t.Errorf("%s%s (allowed): want 200, got %q", prefix, tc, out)
			}
		}
	}
}

func TestBadResponseHeadersAre500WSGI(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_badresponses:app"))
	testBadHeaders(t, c, "/header")
	if !c.waitLog(3*time.Second, `'X-Bad' has a control character`, `'X Bad' is not a token`) {
		t.Errorf("no log line names the bad headers")
	}
}

func TestBadResponseHeadersAre500ASGI(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, asgiSite(t, "asgi_faults:app"))
	testBadHeaders(t, c, "/header", "/hint")
	if !c.waitLog(3*time.Second, `header \"x-bad\" has a NUL`, `header name \"x bad\" has the byte 0x20`) {
		t.Errorf("no log line names the bad headers")
	}
	// A WebSocket accepted with a bad header: 500 instead of the 101.
	t.Run("websocket", func(t *testing.T) {
		for _, tc := range []string{"nul-value", "crlf-value", "space-name"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, resp, err := websocket.Dial(ctx, "ws://"+c.Addr()+"/ws?case="+tc, nil)
			cancel()
			if err == nil {
				conn.CloseNow()
				t.Errorf("websocket.accept with a bad header (%s): the handshake succeeded", tc)
			} else if resp == nil || resp.StatusCode != 500 {
				t.Errorf("websocket.accept with a bad header (%s): %v (response %v), want 500", tc, err, resp)
			}
		}
		if _, err := websocketDialOK(c, "/ws?case=tab-value"); err != nil {
			t.Errorf("websocket.accept with an allowed header: %v", err)
		}
	})
	// A bad trailer: the headers and body went out, so the response is
	// aborted (no last chunk), never ended as if whole.
	for _, tc := range badHeaderCases {
		if tc == "empty-name" || tc == "colon-name" || tc == "space-name" {
			continue
		}
		out := rawGet(t, c, "/trailer?case="+tc)
		if strings.HasSuffix(out, "0\r\n\r\n") || strings.Contains(out, "\r\n0\r\n") {
			t.Errorf("bad trailer %s: the response ended as if whole:\n%q", tc, out)
		}
	}
}

// headerFloods are header sets over the 1 MiB limit, and one under it.
func testHeaderLimit(t *testing.T, c *caddy) {
	for _, tc := range []struct {
		n, size int
		want    int
	}{
		{100000, 100, 500}, // 10 MB in many headers
		{1, 2 << 20, 500},  // one 2 MiB value
		{20, 1000, 200},    // 20 KB: fine
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.n, tc.size), func(t *testing.T) {
			out := rawGet(t, c, fmt.Sprintf("/many?n=%d&size=%d", tc.n, tc.size))
			if statusOf(out) != tc.want || (tc.want == 500 && len(out) > 10000) {
				t.Errorf("%d headers of %d bytes: status %d, %d bytes on the wire; want %d", tc.n, tc.size, statusOf(out), len(out), tc.want)
			}
		})
	}
	if !c.waitLog(3*time.Second, "over the limit of 1048576") {
		t.Errorf("no log line says the headers are over the limit")
	}
}

func TestResponseHeaderSizeLimitWSGI(t *testing.T) {
	t.Parallel()
	testHeaderLimit(t, startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_badresponses:app")))
}

func TestResponseHeaderSizeLimitASGI(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, asgiSite(t, "asgi_faults:app"))
	testHeaderLimit(t, c)
	// Trailers count too: they come after the body, so the response aborts.
	conn := dial(t, c.Addr())
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /many-trailers?n=20000&size=100 HTTP/1.1\r\nHost: "+c.Addr()+"\r\nConnection: close\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return // aborted before anything went out
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("2 MB of trailers: body %q and %d trailers read whole, want the response aborted", b, len(resp.Trailer))
	}
}
