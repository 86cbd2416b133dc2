package nethttp

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

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
