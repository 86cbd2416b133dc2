package tests

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// exchangeAll writes req on a fresh connection and reads until the server
// closes it or timeout passes; closed says which.
func exchangeAll(t *testing.T, addr, req string, timeout time.Duration) (out string, closed bool) {
	t.Helper()
	conn := dial(t, addr)
	defer conn.Close()
	// A NUL splits what is sent at once from what follows 1 s later.
	first, then, _ := strings.Cut(req, "\x00")
	if _, err := io.WriteString(conn, first); err != nil {
		t.Fatalf("write: %v", err)
	}
	if then != "" {
		time.Sleep(time.Second)
		_, _ = io.WriteString(conn, then)
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(conn)
	var ne net.Error
	return string(b), !(errors.As(err, &ne) && ne.Timeout())
}

// smuggleCases are requests whose body cannot be read whole, each followed
// on the same connection by a GET that must never be served: what follows
// a broken body is not a request.
func smuggleCases(host string) []struct{ name, req, then string } {
	smuggled := "GET /ok?SMUGGLED HTTP/1.1\r\n" + host + "\r\n"
	chunked := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nZZ\r\n" + smuggled
	}
	return []struct{ name, req, then string }{
		{"app fails on the body (bridge answers)", chunked("/read"), ""},
		{"app catches the error and answers 200", chunked("/swallow"), ""},
		{"response already started", chunked("/stream-then-read"), ""},
		// The small body read ahead of the app times out (read_body): the
		// GET sent afterwards is inside the declared Content-Length.
		{"read-ahead body times out", "POST /read HTTP/1.1\r\n" + host + "Content-Length: 100\r\n\r\n01234", smuggled},
	}
}

func testNoSmuggling(t *testing.T, c *caddy) {
	host := "Host: " + c.Addr() + "\r\n"
	for _, tc := range smuggleCases(host) {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if tc.then != "" {
				req += "\x00" + tc.then
			}
			out, closed := exchangeAll(t, c.Addr(), req, 5*time.Second)
			if n := strings.Count(out, "HTTP/1.1 "); n != 1 || strings.Contains(out, "\r\n\r\nok") {
				t.Errorf("%d responses on the connection, want 1 (the GET after the broken body was served):\n%.600s", n, out)
			}
			if !closed {
				t.Errorf("connection still open 5 s after the response; want it closed after a body error:\n%.600s", out)
			}
			c.alive(t)
		})
	}
	if _, b := c.do(t, "GET", c.URL("/ok"), nil); string(b) != "ok" {
		t.Errorf("GET /ok after the broken bodies: %q, want ok", b)
	}
}

// bodyTimeout bounds reading a request body (Caddy's read_body) so the
// read-ahead case fails within the test.
var bodyTimeout = siteOpts{globals: "\tservers {\n\t\ttimeouts {\n\t\t\tread_body 500ms\n\t\t}\n\t}"}

func TestBodyErrorClosesConnectionWSGI(t *testing.T) {
	t.Parallel()
	testNoSmuggling(t, startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_badresponses:app"), bodyTimeout))
}

func TestBodyErrorClosesConnectionASGI(t *testing.T) {
	t.Parallel()
	testNoSmuggling(t, startCaddy(t, asgiSite(t, "asgi_faults:app"), bodyTimeout))
}

// A request refused with 503 after max_wait while its body still streams
// in: nothing reads that body any more, and the log has no panic.
func TestMaxWaitOnStreamedBodyLogsNoPanic(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "threads 1", "max_wait 200ms", inOneProcess()))
	host := "Host: " + c.Addr() + "\r\n"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // holds the only thread for 1 s
		defer wg.Done()
		_, _, _ = c.fetch("GET", "/slow", nil)
	}()
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 2; i++ {
		conn := dial(t, c.Addr())
		defer conn.Close()
		_, _ = io.WriteString(conn, "POST /slow HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := readUntil(t, conn, nil, "\r\n\r\n")
		if statusOf(string(got)) != 503 {
			t.Errorf("streamed body while the thread is busy: %q, want 503", got)
		}
		// The client keeps sending after the answer.
		_, _ = io.WriteString(conn, "5\r\nworld\r\n0\r\n\r\n")
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(c.Log(), "panic") {
		t.Errorf("the log has a panic after 503s on streamed bodies:\n%s", c.Log())
	}
}

// failingBody yields some bytes, then an error: the client resets the
// stream mid-upload.
type failingBody struct{ sent int }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.sent >= 100000 {
		return 0, errors.New("upload broken on purpose")
	}
	n := min(len(p), 100000-b.sent)
	for i := range p[:n] {
		p[i] = 'x'
	}
	b.sent += n
	return n, nil
}

// Over HTTP/2 a broken or unread body ends only its stream: the connection
// keeps serving, and nothing panics.
func TestBodyErrorOverHTTP2(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	handle_path /wsgi/* {
		python {
			module_wsgi "wsgi_badresponses:app"
			working_dir {{APPS}}
		}
	}
	handle_path /asgi/* {
		python {
			module_asgi "asgi_faults:app"
			working_dir {{APPS}}
		}
	}
}
`, siteOpts{tls: true})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	base := "https://" + c.Addr()
	getOnceCertReady(t, client, base+"/wsgi/ok").Body.Close()
	for _, prefix := range []string{"/wsgi", "/asgi"} {
		for _, path := range []string{"/read", "/swallow", "/stream-then-read", "/ok"} {
			req, _ := http.NewRequest("POST", base+prefix+path, &failingBody{})
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			// An unread body of 1 MB.
			resp, err := client.Post(base+prefix+"/ok", "application/octet-stream", strings.NewReader(strings.Repeat("y", 1<<20)))
			if err != nil {
				t.Fatalf("POST %s/ok after a broken upload to %s: %v", prefix, path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(b) != "ok" {
				t.Errorf("POST %s/ok after a broken upload to %s: %s %q, want HTTP/2 ok", prefix, path, resp.Proto, b)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(c.Log(), "panic") {
		t.Errorf("the log has a panic:\n%s", c.Log())
	}
}

// A whole chunked body the app never reads: the answer goes out, the
// connection closes (the body's end was not seen by the bridge), and
// nothing panics (net/http's own drain after the handler used to start a
// read racing the next request's).
func TestUnreadChunkedBodyLogsNoPanic(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `http://127.0.0.1:{{PORT}} {
	handle_path /wsgi/* {
		python {
			module_wsgi "wsgi_badresponses:app"
			working_dir {{APPS}}
		}
	}
	handle_path /asgi/* {
		python {
			module_asgi "asgi_faults:app"
			working_dir {{APPS}}
		}
	}
}
`)
	host := "Host: " + c.Addr() + "\r\n"
	for _, prefix := range []string{"/wsgi", "/asgi"} {
		conn := dial(t, c.Addr())
		_, _ = io.WriteString(conn, "POST "+prefix+"/ok HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := readUntil(t, conn, nil, "\r\n\r\nok")
		if statusOf(string(got)) != 200 {
			t.Errorf("%s: %q, want 200 ok", prefix, got)
		}
		time.Sleep(200 * time.Millisecond) // the next request comes later, as a keep-alive client's would
		_, _ = io.WriteString(conn, "GET "+prefix+"/ok HTTP/1.1\r\n"+host+"\r\n")
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(c.Log(), "panic") {
		t.Errorf("the log has a panic after unread chunked bodies:\n%s", c.Log())
	}
}
