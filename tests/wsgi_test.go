package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestValidatorAppReportsNoWarnings(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_validated:app", inOneProcess()))
	body := randomBytes(200_000, 7)

	for _, p := range []string{"/", "/close", "/gen", "/errors", "/write"} {
		c.get(t, p, 200)
	}
	resp, b := c.do(t, "GET", c.URL("/status"), nil)
	if resp.StatusCode != 201 || string(b) != "created" || resp.Header.Get("X-Test") != "1" {
		t.Errorf("/status: %d %q X-Test=%q", resp.StatusCode, b, resp.Header.Get("X-Test"))
	}
	for _, p := range []string{"/read", "/readline", "/readlines", "/iter"} {
		resp, b := c.do(t, "POST", c.URL(p), bytes.NewReader(body), "Content-Type", "application/octet-stream")
		if resp.StatusCode != 200 {
			t.Errorf("POST %s: status %d: %.300s", p, resp.StatusCode, b)
			continue
		}
		if !bytes.Equal(b, body) {
			t.Errorf("POST %s: echoed %d bytes (sha %s), want %d (sha %s)", p, len(b), sha(b), len(body), sha(body))
		}
	}
	w := c.get(t, "/warnings", 200)
	count, msgs, _ := strings.Cut(string(w), "\n")
	if count != "0" {
		t.Errorf("wsgiref.validate emitted %s warnings:\n%s", count, msgs)
	}

	// Control: the counter does see the validator's warnings (it warns
	// about a REQUEST_METHOD it does not know).
	resp, b = c.do(t, "BREW", c.URL("/"), nil)
	if resp.StatusCode != 200 {
		t.Errorf("BREW /: status %d %q", resp.StatusCode, b)
	}
	w = c.get(t, "/warnings", 200)
	if count, msgs, _ = strings.Cut(string(w), "\n"); count != "1" || !strings.Contains(msgs, "BREW") {
		t.Errorf("after a BREW request /warnings = %q, want 1 warning about BREW (the warning counter is broken)", w)
	}
}

type echoResult struct {
	Len      int    `json:"len"`
	SHA256   string `json:"sha256"`
	Calls    int    `json:"calls"`
	MaxChunk int    `json:"max_chunk"`
}

func postEcho(t *testing.T, c *caddy, path string, body io.Reader, contentLength int64) echoResult {
	t.Helper()
	req, err := http.NewRequest("POST", c.URL(path), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = contentLength
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: body: %v", path, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: status %d: %.500s", path, resp.StatusCode, b)
	}
	var r echoResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("POST %s: %v: %.500s", path, err, b)
	}
	return r
}

func TestLargeBodiesIntact(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `http://127.0.0.1:{{PORT}} {
	handle /big {
		python {
			module_wsgi "wsgi_big:app"
			working_dir {{APPS}}
		}
	}
	handle {
		python {
			module_wsgi "wsgi_echo:app"
			working_dir {{APPS}}
		}
	}
}
`)
	big := randomBytes(10<<20, 1)
	bigSHA := sha(big)

	t.Run("10MiB request body read(65536)", func(t *testing.T) {
		r := postEcho(t, c, "/read", bytes.NewReader(big), int64(len(big)))
		if r.Len != len(big) || r.SHA256 != bigSHA {
			t.Errorf("echo: len %d sha %s, want len %d sha %s", r.Len, r.SHA256, len(big), bigSHA)
		}
		if r.MaxChunk > 65536 {
			t.Errorf("wsgi.input.read(65536) returned %d bytes", r.MaxChunk)
		}
	})

	t.Run("10MiB request body echoed back", func(t *testing.T) {
		resp, b := c.do(t, "POST", c.URL("/raw"), bytes.NewReader(big))
		if resp.StatusCode != 200 || len(b) != len(big) || sha(b) != bigSHA {
			t.Errorf("raw echo: status %d, %d bytes sha %s; want %d bytes sha %s", resp.StatusCode, len(b), sha(b), len(big), bigSHA)
		}
	})

	t.Run("readline and iteration", func(t *testing.T) {
		body := randomBytes(2<<20, 2) // random bytes: lines of ~256 bytes
		for _, p := range []string{"/readline", "/iter"} {
			r := postEcho(t, c, p, bytes.NewReader(body), int64(len(body)))
			if r.Len != len(body) || r.SHA256 != sha(body) {
				t.Errorf("%s: len %d sha %s, want len %d sha %s", p, r.Len, r.SHA256, len(body), sha(body))
			}
			if r.Calls < 1000 {
				t.Errorf("%s: only %d lines for %d random bytes", p, r.Calls, len(body))
			}
		}
	})

	t.Run("chunked request body", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			// Odd-sized writes, each becoming a chunk.
			data := big
			for len(data) > 0 {
				n := min(len(data), 100_003)
				if _, err := pw.Write(data[:n]); err != nil {
					return
				}
				data = data[n:]
			}
			pw.Close()
		}()
		r := postEcho(t, c, "/read", pr, -1)
		if r.Len != len(big) || r.SHA256 != bigSHA {
			t.Errorf("chunked echo: len %d sha %s, want len %d sha %s", r.Len, r.SHA256, len(big), bigSHA)
		}
	})

	t.Run("chunked request body readline", func(t *testing.T) {
		body := randomBytes(1<<20, 3)
		pr, pw := io.Pipe()
		go func() {
			pw.Write(body[:12345])
			pw.Write(body[12345:])
			pw.Close()
		}()
		r := postEcho(t, c, "/readline", pr, -1)
		if r.Len != len(body) || r.SHA256 != sha(body) {
			t.Errorf("chunked readline echo: len %d sha %s, want len %d sha %s", r.Len, r.SHA256, len(body), sha(body))
		}
	})

	// Bodies up to 64 KiB are read into the request slot's C buffer before
	// the app runs, and slots are reused: a body shorter than the last one
	// must not show the last one's tail, and the sizes around the limit
	// must come through whole, both as raw echo and read(n).
	t.Run("bodies around the read-ahead limit, slots reused", func(t *testing.T) {
		for i, n := range []int{65536, 1, 65535, 65537, 3, 1000, 65536, 2} {
			body := randomBytes(n, int64(10+i))
			resp, b := c.do(t, "POST", c.URL("/raw"), bytes.NewReader(body))
			if resp.StatusCode != 200 || !bytes.Equal(b, body) {
				t.Errorf("%d-byte body: status %d, got %d bytes back (equal: %v)", n, resp.StatusCode, len(b), bytes.Equal(b, body))
			}
			r := postEcho(t, c, "/read", bytes.NewReader(body), int64(n))
			if r.Len != n || r.SHA256 != sha(body) {
				t.Errorf("%d-byte body read(65536): len %d sha %s, want sha %s", n, r.Len, r.SHA256, sha(body))
			}
		}
	})

	t.Run("10MiB response", func(t *testing.T) {
		resp, b := c.do(t, "GET", c.URL("/big"), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		want := resp.Header.Get("X-SHA256")
		if len(b) != 10<<20 || sha(b) != want {
			t.Errorf("got %d bytes sha %s, want %d bytes sha %s", len(b), sha(b), 10<<20, want)
		}
		if resp.ContentLength != 10<<20 {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, 10<<20)
		}
	})
}

func TestStreamingGeneratorFlushesEachChunk(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stream:app"))
	conn := dial(t, c.Addr())
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "GET /stream HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", c.Addr())
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var got []byte
	var first, last time.Duration
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if first == 0 && bytes.Contains(got, []byte("chunk-0|")) {
			first = time.Since(start)
		}
		if last == 0 && bytes.Contains(got, []byte("chunk-4|")) {
			last = time.Since(start)
		}
		if err != nil {
			break
		}
	}
	t.Logf("first chunk after %v, last after %v", first, last)
	if statusOf(string(got)) != 200 {
		t.Fatalf("response: %q", got)
	}
	for i := 0; i < 5; i++ {
		if !bytes.Contains(got, []byte(fmt.Sprintf("chunk-%d|", i))) {
			t.Errorf("chunk %d missing from %q", i, got)
		}
	}
	if first == 0 || first >= time.Second {
		t.Errorf("first chunk arrived after %v, want < 1s (chunks are not flushed as produced)", first)
	}
	if last < 1200*time.Millisecond {
		t.Errorf("last chunk arrived after %v, want >= 1.2s", last)
	}
}

func TestConcurrentRequestsRunInParallel(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "threads 100"))
	c.get(t, "/fast", 200) // warm up
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := c.Client.Get(c.URL(fmt.Sprintf("/slow?i=%d", i)))
			if err != nil {
				errs <- fmt.Sprintf("request %d: %v", i, err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(b) != fmt.Sprint(i) {
				errs <- fmt.Sprintf("request %d: status %d body %q err %v", i, resp.StatusCode, b, err)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	t.Logf("%d concurrent 1s requests took %v", n, elapsed)
	if elapsed >= 3*time.Second {
		t.Errorf("%d concurrent 1s requests with threads 100 took %v, want < 3s (not run in parallel)", n, elapsed)
	}
}

func TestQueueLimitAnswers503(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "threads 1", "max_wait 200ms", inOneProcess()))
	c.get(t, "/fast", 200)
	firstDone := make(chan string, 1)
	go func() {
		resp, err := c.Client.Get(c.URL("/slow?i=1"))
		if err != nil {
			firstDone <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		firstDone <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	time.Sleep(300 * time.Millisecond) // the first request holds the only thread
	start := time.Now()
	resp, b := c.do(t, "GET", c.URL("/slow?i=2"), nil)
	elapsed := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second request: status %d %q after %v, want 503", resp.StatusCode, b, elapsed)
	}
	if elapsed > 650*time.Millisecond {
		t.Errorf("503 came after %v, want about max_wait (200ms)", elapsed)
	}
	if got := <-firstDone; got != "200 1" {
		t.Errorf("first request: %s, want 200 1", got)
	}
	c.get(t, "/fast", 200)
}

func TestExceptionsBeforeAndAfterHeaders(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_errors:app"))

	t.Run("before headers is 500 with traceback logged", func(t *testing.T) {
		resp, b := c.do(t, "GET", c.URL("/before"), nil)
		if resp.StatusCode != 500 {
			t.Errorf("status %d %q, want 500", resp.StatusCode, b)
		}
		if strings.Contains(string(b), "boom-before-headers") {
			t.Errorf("the exception leaked into the response body: %q", b)
		}
		if !c.waitLog(5*time.Second, "boom-before-headers-7731", "Traceback") {
			t.Errorf("the log has no traceback with the exception text")
		}
		c.get(t, "/ok", 200)
	})

	t.Run("after first chunk aborts the response", func(t *testing.T) {
		resp, err := c.Client.Get(c.URL("/after"))
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil {
				t.Errorf("got a clean complete response (status %d, %d bytes); want the body read to fail", resp.StatusCode, len(b))
			} else {
				t.Logf("body read failed as expected after %d bytes: %v", len(b), rerr)
			}
		} else {
			t.Logf("request failed as expected: %v", err)
		}
		if !c.waitLog(5*time.Second, "boom-after-headers-8842") {
			t.Errorf("the log does not mention the exception raised after the headers")
		}
		for i := 0; i < 3; i++ {
			if b := c.get(t, "/ok", 200); string(b) != "ok" {
				t.Errorf("/ok: %q", b)
			}
		}
	})

	t.Run("wsgi.errors goes to the log", func(t *testing.T) {
		c.get(t, "/errors", 200)
		if !c.waitLog(5*time.Second, "wsgi-errors-marker-5150") {
			t.Errorf("wsgi.errors output is not in caddy's log")
		}
	})
}

func TestHeadWriteAndFileWrapper(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_misc:app"))

	t.Run("HEAD has no body", func(t *testing.T) {
		out, err := rawExchange(t, c.Addr(), "HEAD /body HTTP/1.1\r\nHost: "+c.Addr()+"\r\nConnection: close\r\n\r\n", false, 10*time.Second)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, out)
		}
		head, rest, ok := strings.Cut(out, "\r\n\r\n")
		if !ok {
			t.Fatalf("no end of headers in %q", out)
		}
		if statusOf(head) != 200 {
			t.Errorf("status line: %q", head)
		}
		if rest != "" {
			t.Errorf("HEAD response carried %d body bytes: %q", len(rest), rest)
		}
		if !strings.Contains(strings.ToLower(head), "\r\ncontent-length: 11") {
			t.Errorf("HEAD response has no Content-Length: 11:\n%s", head)
		}
	})

	t.Run("write callable", func(t *testing.T) {
		if b := c.get(t, "/write", 200); string(b) != "part1-part2-part3" {
			t.Errorf("body %q, want %q", b, "part1-part2-part3")
		}
	})

	t.Run("file_wrapper", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			resp, b := c.do(t, "GET", c.URL("/file"), nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %.300s", resp.StatusCode, b)
			}
			want := resp.Header.Get("X-SHA256")
			if len(b) != 3*1024*1024+17 || sha(b) != want {
				t.Errorf("file: %d bytes sha %s, want %d sha %s", len(b), sha(b), 3*1024*1024+17, want)
			}
		}
	})
}

func TestTwoPythonHandlersInOneCaddy(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, `http://127.0.0.1:{{PORT}} {
	handle /a/* {
		python {
			module_wsgi "wsgi_alpha:app"
			working_dir {{APPS}}
			threads 2
		}
	}
	handle /b/* {
		python "wsgi_beta:app" {
			working_dir {{APPS}}
		}
	}
	respond "neither" 404
}

http://127.0.0.1:{{PORT2}} {
	python {
		module_wsgi "wsgi_beta:app"
		working_dir {{APPS}}
	}
}
`)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for _, app := range []string{"a", "b"} {
				path := fmt.Sprintf("/%s/%d", app, i)
				want := strings.ToUpper(app) + ":" + path
				if status, b, err := c.fetch("GET", path, nil); err != nil || status != 200 || string(b) != want {
					t.Errorf("GET %s: %d %q %v, want 200 %q", path, status, b, err, want)
				}
			}
		}(i)
	}
	wg.Wait()
	c.get(t, "/c", 404)
	resp, b := c.do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/other", c.Port2), nil)
	if resp.StatusCode != 200 || string(b) != "B:/other" {
		t.Errorf("second site: %d %q", resp.StatusCode, b)
	}
}

// readline() on a body that arrives slowly returns each line as soon as it
// is there: it must not wait for its 64 KiB read-ahead to fill.
func TestReadlineOnTricklingUploadAnswersEachLine(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_lines:app"))
	conn := dial(t, c.Addr())
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nline1\n\r\n", c.Addr())
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	// Line 1 must be answered while the upload is still open.
	got := readUntil(t, conn, nil, "got: line1")
	fmt.Fprintf(conn, "6\r\nline2\n\r\n0\r\n\r\n")
	readUntil(t, conn, got, "got: line2")
}
