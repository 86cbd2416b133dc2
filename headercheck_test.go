package caddysnake

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBadHeader(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"Content-Type", "text/plain; charset=utf-8", ""},
		{"X-Tab", "a\tb", ""},
		{"X-Latin", "caf\xe9", ""},
		{"x!#$%&'*+-.^_`|~09", "", ""},
		{"", "v", "empty header name"},
		{"X Bad", "v", "byte 0x20"},
		{"X-Bad:", "v", "byte 0x3a"},
		{"X-Bad\r", "v", "a CR"},
		{"X-Bad", "a\x00b", "a NUL in its value"},
		{"X-Bad", "a\r\nX-Injected: 1", "a CR in its value"},
		{"X-Bad", "a\nb", "an LF in its value"},
		{"X-Bad", "a\x01b", "byte 0x01"},
		{"X-Bad", "a\x7fb", "byte 0x7f"},
	} {
		got := badHeader(tc.name, tc.value)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("badHeader(%q, %q) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
		if gotB := badHeader([]byte(tc.name), []byte(tc.value)); gotB != got {
			t.Errorf("badHeader of bytes %q != of strings %q", gotB, got)
		}
	}
}

type unwrapping struct{ http.ResponseWriter }

func (u unwrapping) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// closeAfterResponse must close the connection after the response even
// once the headers went out (where Connection: close is too late), through
// a wrapper as Caddy's.
func TestCloseAfterResponseAfterHeadersWent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = w.Write([]byte("hello"))
		w.(http.Flusher).Flush()
		if r.URL.Path == "/close" && !closeAfterResponse(unwrapping{w}) {
			t.Error("closeAfterResponse did not reach net/http's writer")
		}
	}))
	defer srv.Close()
	for path, wantResponses := range map[string]int{"/close": 1, "/keep": 2} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\nGET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, err := io.ReadAll(conn)
		conn.Close()
		if n := strings.Count(string(out), "HTTP/1.1 200"); n != wantResponses || err != nil {
			t.Errorf("%s: %d responses (read error %v), want %d:\n%s", path, n, err, wantResponses, out)
		}
	}
}
