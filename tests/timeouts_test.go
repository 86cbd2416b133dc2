package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// request_timeout 2s with two threads: three requests that never return
// (a Python loop, which RequestTimeout unwinds, and one blocked inside C,
// whose thread is written off) are each answered 504 within seconds, and
// the app serves at once afterwards: capacity came back.
func TestRequestTimeoutAnswers504AndFreesThreads(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 2", "request_timeout 2s"))
	c.get(t, "/ok", 200)
	type result struct {
		path   string
		status int
		took   time.Duration
		err    error
	}
	paths := []string{"/loop", "/wait", "/loop"}
	results := make(chan result, len(paths))
	start := time.Now()
	for i, p := range paths {
		go func() {
			time.Sleep(time.Duration(i) * 100 * time.Millisecond) // /loop and /wait take the two threads
			status, _, err := c.fetch("GET", p, nil)
			results <- result{p, status, time.Since(start), err}
		}()
	}
	for range paths {
		r := <-results
		if r.err != nil || r.status != http.StatusGatewayTimeout || r.took > 9*time.Second {
			t.Errorf("%s: status %d after %v (err %v), want 504 within 9s", r.path, r.status, r.took, r.err)
		}
	}
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		c.get(t, "/ok", 200)
		if took := time.Since(t0); took > time.Second {
			t.Errorf("GET /ok after the timeouts took %v, want under 1s", took)
		}
	}
	if !c.waitLog(3*time.Second, "ran over request_timeout", `"path":"/loop"`, "spin_forever", `"path":"/wait"`,
		"wait_forever", "written off and replaced") {
		t.Errorf("log lacks the timeout lines with path and stack:\n%s", c.Log())
	}
}

// A handler that streams, then gets stuck: the response is aborted, never
// completed (the client sees the first chunk and then a broken stream).
func TestRequestTimeoutAbortsStartedResponse(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 2", "request_timeout 1s"))
	resp, err := c.Client.Get(c.URL("/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "first chunk") {
		t.Errorf("status %d body %q, want 200 and the first chunk", resp.StatusCode, body)
	}
	if err == nil {
		t.Errorf("the stuck stream ended as if complete (%q); want an aborted response", body)
	}
	c.get(t, "/ok", 200)
}

// Six clients uploading a chunked body at a byte a second must not hold
// the app's two threads: GET /ok is answered at once meanwhile.
func TestSlowUploadsDoNotStarveThreads(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 2", "max_wait 5s"))
	c.get(t, "/ok", 200)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 6; i++ {
		conn := dial(t, c.Addr())
		defer conn.Close()
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", c.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 8; k++ { // at most 8 s
				if _, err := conn.Write([]byte("1\r\na\r\n")); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond) // every upload has reached the app
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		status, _, err := c.fetch("GET", "/ok", nil)
		if took := time.Since(t0); err != nil || status != 200 || took > 500*time.Millisecond {
			t.Errorf("GET /ok during slow uploads: %d after %v (err %v), want 200 well under 1s", status, took, err)
		}
	}
	close(stop)
	wg.Wait()
}

// A body that stops arriving gets 408 after request_body_timeout, and the
// connection is closed; for a small body read before the app (preload) and
// a chunked one the app reads, WSGI and ASGI.
func TestRequestBodyTimeout408(t *testing.T) {
	c := startCaddy(t, `http://127.0.0.1:{{PORT}} {
	handle_path /asgi/* {
		python {
			module_asgi "asgi_raw:app"
			working_dir {{APPS}}
			request_body_timeout 1s
		}
	}
	python {
		module_wsgi "wsgi_stuck:app"
		working_dir {{APPS}}
		request_body_timeout 1s
	}
}
`)
	cases := []struct{ name, path, hdr, part string }{
		{"WSGI preloaded", "/upload", "Content-Length: 10", "abc"},
		{"WSGI chunked", "/upload", "Transfer-Encoding: chunked", "3\r\nabc\r\n"},
		{"ASGI preloaded", "/asgi/echo", "Content-Length: 10", "abc"},
		{"ASGI chunked", "/asgi/echo", "Transfer-Encoding: chunked", "3\r\nabc\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, c.Addr())
			defer conn.Close()
			t0 := time.Now()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n%s", tc.path, c.Addr(), tc.hdr, tc.part)
			conn.SetReadDeadline(time.Now().Add(6 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if took := time.Since(t0); resp.StatusCode != http.StatusRequestTimeout || took > 4*time.Second {
				t.Errorf("status %d after %v, want 408 after about 1s", resp.StatusCode, took)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("connection still open after the 408")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("connection still open after the 408 (read timed out)")
			}
		})
	}
	c.get(t, "/ok", 200)
}

// request_body_timeout over HTTP/2 (a stream's read deadline): a body that
// stops arriving gets 408, WSGI and ASGI, while the connection serves on.
func TestRequestBodyTimeoutHTTP2(t *testing.T) {
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	handle_path /asgi/* {
		python {
			module_asgi "asgi_raw:app"
			working_dir {{APPS}}
			request_body_timeout 1s
		}
	}
	python {
		module_wsgi "wsgi_stuck:app"
		working_dir {{APPS}}
		request_body_timeout 1s
	}
}
`, siteOpts{tls: true})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	base := "https://" + c.Addr()
	getOnceCertReady(t, client, base+"/ok").Body.Close()
	for _, path := range []string{"/upload", "/asgi/echo"} {
		for _, length := range []int64{10, -1} { // preloaded, streamed
			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", base+path, pr)
			req.ContentLength = length
			go pw.Write([]byte("abc")) // then nothing more
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("%s (length %d): %v", path, length, err)
				pw.Close()
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			pw.Close()
			if took := time.Since(t0); resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout || took > 4*time.Second {
				t.Errorf("%s (length %d): %s %d after %v, want HTTP/2 408 after about 1s", path, length, resp.Proto, resp.StatusCode, took)
			}
		}
	}
	if resp, err := client.Get(base + "/ok"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /ok after the timeouts: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// A thread written off that comes back later (time.sleep(3) past
// request_timeout 1s and the grace) unwinds, drops its job and exits: the
// app keeps serving, and the process is left with no more threads than
// before, round after round.
func TestWrittenOffThreadComesBackAndRetires(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 2", "request_timeout 1s"))
	threadsNow := func() int {
		n, _ := strconv.Atoi(c.procStatus(t, "Threads"))
		return n
	}
	c.get(t, "/ok", 200)
	var before int
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, _, err := c.fetch("GET", "/nap", nil); err != nil || status != http.StatusGatewayTimeout {
					t.Errorf("/nap: %d %v, want 504", status, err)
				}
			}()
		}
		wg.Wait()
		time.Sleep(2500 * time.Millisecond) // the naps end; the lost threads come back
		for i := 0; i < 20; i++ {
			c.get(t, "/ok", 200)
		}
		if round == 0 {
			before = threadsNow()
		} else if n := threadsNow(); n > before+2 {
			t.Errorf("round %d: %d threads, after round 0: %d (written-off threads do not exit)", round, n, before)
		}
	}
	if strings.Contains(c.Log(), "panic") {
		t.Errorf("panic in the log:\n%s", c.Log())
	}
}

// A response sent with sendfile to a client that stopped reading holds its
// worker thread inside the write: over request_timeout the write is made
// to fail, the response is aborted (never complete) and the one thread
// serves again.
func TestRequestTimeoutCutsWriteToStalledClient(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 1", "request_timeout 1s", "max_wait 10s"))
	c.get(t, "/ok", 200)
	conn := dial(t, c.Addr())
	defer conn.Close()
	fmt.Fprintf(conn, "GET /bigfile HTTP/1.1\r\nHost: %s\r\n\r\n", c.Addr())
	time.Sleep(4 * time.Second) // not reading meanwhile: 64 MiB do not fit in socket buffers
	t0 := time.Now()
	status, _, err := c.fetch("GET", "/ok", nil)
	if took := time.Since(t0); err != nil || status != 200 || took > time.Second {
		t.Errorf("GET /ok with the only thread writing to a stalled client: %d after %v (%v)", status, took, err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("the stalled response was not cut (read %d bytes, then nothing)", n)
	} else if n >= 64<<20 {
		t.Errorf("the whole file arrived (%d bytes): the response was not aborted", n)
	}
}

// request_timeout over a request whose thread waits for body bytes a client
// trickles, over HTTP/2 (found in review): the thread was written off while
// it was still inside the body read; the read, coming back after the
// handler returned, touched the finished HTTP/2 stream and crashed the
// process. Now the read is cut and the handler waits for it to leave: 504,
// and the process serves on.
func TestRequestTimeoutDuringTrickledUploadHTTP2(t *testing.T) {
	c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	python {
		module_wsgi "wsgi_stuck:app"
		working_dir {{APPS}}
		threads 2
		request_timeout 1s
		request_body_timeout 10s
	}
}
`, siteOpts{tls: true})
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	base := "https://" + c.Addr()
	getOnceCertReady(t, client, base+"/ok").Body.Close()
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() { // a byte every 200 ms, for at most 4 s
				for j := 0; j < 20; j++ {
					if _, err := pw.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
			req, _ := http.NewRequest("POST", base+"/upload", pr)
			req.ContentLength = -1
			resp, err := client.Do(req)
			if err != nil {
				// Cutting the stream's read makes Go's HTTP/2 server reset
				// it (INTERNAL_ERROR) while the client still sends: a
				// failure the client sees as one, which is all that can
				// be had mid-upload.
				if !strings.Contains(err.Error(), "stream error") {
					t.Errorf("trickled upload: %v", err)
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Errorf("trickled upload: %d, want 504", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	c.alive(t)
	if resp, err := client.Get(base + "/ok"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /ok after the timeouts: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A client whose stream was reset returns before the server's 504 is
	// logged: wait for the six lines.
	n := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if n = strings.Count(c.Log(), `"status":504`); n >= 6 {
			break
		}
	}
	if n != 6 {
		t.Errorf("%d requests answered 504 in the log, want 6", n)
	}
}
