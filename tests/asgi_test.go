package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// asgiSite serves an ASGI app from tests/apps with the test venv.
func asgiSite(t *testing.T, target string, extra ...string) string {
	venv := ""
	if v := os.Getenv("CADDYSNAKE_VENV"); v != "" {
		venv = "venv " + v
	}
	return fmt.Sprintf(`http://127.0.0.1:{{PORT}} {
	python {
		module_asgi %q
		working_dir {{APPS}}
		%s
		%s
	}
}
`, target, venv, strings.Join(extra, "\n\t\t"))
}

// asgiEchoResult is what asgi_raw.py's /echo answers.
type asgiEchoResult struct {
	Len    int    `json:"len"`
	Sha256 string `json:"sha256"`
	Chunks int    `json:"chunks"` // receive() calls that brought body
}

func postASGIEcho(t *testing.T, c *caddy, body []byte) asgiEchoResult {
	t.Helper()
	resp, b := c.do(t, "POST", c.URL("/echo"), bytes.NewReader(body))
	var got asgiEchoResult
	if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /echo, %d bytes: status %d, %v: %.300s", len(body), resp.StatusCode, err, b)
	}
	return got
}

func TestASGIRawApp(t *testing.T) {
	// The counts subtests read what earlier requests left in the app.
	c := startCaddy(t, asgiSite(t, "asgi_raw:app", inOneProcess()))

	t.Run("hello", func(t *testing.T) {
		if b := c.get(t, "/hello", 200); string(b) != "hello" {
			t.Fatalf("body %q", b)
		}
	})

	t.Run("scope", func(t *testing.T) {
		resp, b := c.do(t, "GET", c.URL("/scope/a%20b?x=1&y=%20"), nil, "X-Multi", "one", "X-Multi", "two")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var scope map[string]any
		if err := json.Unmarshal(b, &scope); err != nil {
			t.Fatal(err)
		}
		for key, want := range map[string]any{
			"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
			"path": "/scope/a b", "raw_path": "/scope/a%20b", "query_string": "x=1&y=%20", "root_path": "",
		} {
			if scope[key] != want {
				t.Errorf("scope[%q] = %#v, want %#v", key, scope[key], want)
			}
		}
		if asgi, _ := scope["asgi"].(map[string]any); asgi["version"] != "3.0" {
			t.Errorf("scope asgi = %#v", scope["asgi"])
		}
		if client, _ := scope["client"].([]any); len(client) != 2 || client[0] != "127.0.0.1" {
			t.Errorf("scope client = %#v", scope["client"])
		}
		if server, _ := scope["server"].([]any); len(server) != 2 || server[1] != float64(c.Port) {
			t.Errorf("scope server = %#v", scope["server"])
		}
		multi := 0
		for _, h := range scope["headers"].([]any) {
			kv := h.([]any)
			if kv[0] != strings.ToLower(kv[0].(string)) {
				t.Errorf("header name %q is not lower-case", kv[0])
			}
			if kv[0] == "x-multi" {
				multi++
			}
		}
		if multi != 2 {
			t.Errorf("x-multi appeared %d times, want 2 (one pair per value)", multi)
		}
	})

	t.Run("10MiB request body", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789abcdef"), 10*1024*1024/16)
		got := postASGIEcho(t, c, body)
		if got.Len != len(body) || got.Sha256 != sha(body) {
			t.Fatalf("echo: %+v, want len %d", got, len(body))
		}
		if got.Chunks < 2 {
			t.Errorf("body came in %d chunk(s): it must stream in pieces, not be read whole", got.Chunks)
		}
	})

	// Up to 64 KiB, Go reads the body into the C block of the body event
	// that goes with the request: one chunk, exact bytes, on either side
	// of the limit.
	t.Run("bodies around the read-ahead limit", func(t *testing.T) {
		for i, n := range []int{65536, 1, 65535, 65537, 3} {
			body := randomBytes(n, int64(20+i))
			got := postASGIEcho(t, c, body)
			if got.Len != n || got.Sha256 != sha(body) {
				t.Errorf("%d bytes: echo %+v", n, got)
			}
			if n <= 65536 && got.Chunks != 1 {
				t.Errorf("%d bytes came in %d receive()s: a read-ahead body is one", n, got.Chunks)
			}
		}
	})

	t.Run("10MiB response", func(t *testing.T) {
		resp, b := c.do(t, "GET", c.URL("/big"), nil)
		sum := sha256.Sum256(b)
		if resp.StatusCode != 200 || len(b) != 10*1024*1024 || hex.EncodeToString(sum[:]) != resp.Header.Get("X-Sha256") {
			t.Fatalf("status %d, %d bytes, sha mismatch", resp.StatusCode, len(b))
		}
	})

	t.Run("streaming", func(t *testing.T) {
		start := time.Now()
		resp, err := c.Client.Get(c.URL("/stream"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 64)
		n, err := resp.Body.Read(buf)
		first := time.Since(start)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "chunk 0") {
			t.Fatalf("first read %q, %v", buf[:n], err)
		}
		rest, _ := io.ReadAll(resp.Body)
		total := time.Since(start)
		if first > time.Second || total < 1200*time.Millisecond {
			t.Fatalf("first chunk after %v, all after %v: want the first well before the end", first, total)
		}
		if !strings.HasSuffix(string(rest), "chunk 4\n") {
			t.Fatalf("rest %q", rest)
		}
	})

	t.Run("exception before start is 500 with traceback", func(t *testing.T) {
		c.get(t, "/error-before", 500)
		if !c.waitLog(5*time.Second, "asgi boom before start", "Traceback") {
			t.Fatal("no traceback in the log")
		}
	})

	t.Run("exception after start aborts", func(t *testing.T) {
		resp, err := c.Client.Get(c.URL("/error-after"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("a response whose app failed midway read as complete")
		}
	})

	t.Run("no response is 500", func(t *testing.T) {
		c.get(t, "/no-response", 500)
	})

	t.Run("pathsend", func(t *testing.T) {
		b := c.get(t, "/pathsend", 200)
		want, _ := os.ReadFile(filepath.Join(appsDir, "asgi_raw.py"))
		if !bytes.Equal(b, want) {
			t.Fatalf("pathsend sent %d bytes, want the %d of the file", len(b), len(want))
		}
	})

	t.Run("pathsend that raises", func(t *testing.T) {
		// The final message never reached Go: the request must still end
		// (500, the response had not gone out), not wait for the app's stop.
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(c.URL("/pathsend-bad"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("status %d, want 500", resp.StatusCode)
		}
	})

	t.Run("receive waiting when the response completes", func(t *testing.T) {
		// A receive() asked for before the response went out whole must
		// return (http.disconnect, or the chunk if it came first), never
		// stay waiting: the request ends in Go on the final body. A body
		// that is still arriving keeps Go's body reader busy.
		const n = 20
		for i := 0; i < n; i++ {
			pr, pw := io.Pipe()
			go pw.Write([]byte("first chunk")) // then nothing until the response came
			req, _ := http.NewRequest("POST", c.URL("/receive-after"), pr)
			resp, err := c.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			pw.Close()
			if resp.StatusCode != 200 || string(b) != "done" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
			}
		}
		var counts struct {
			LateReceive map[string]int `json:"late_receive"`
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			json.Unmarshal(c.get(t, "/counts", 200), &counts)
			total := 0
			for _, v := range counts.LateReceive {
				total += v
			}
			if total >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d late receive() calls returned: %v", total, n, counts.LateReceive)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if counts.LateReceive["stuck"] != 0 {
			t.Fatalf("receive() calls left waiting after the response: %v", counts.LateReceive)
		}
	})

	t.Run("trailers", func(t *testing.T) {
		resp, b := c.do(t, "GET", c.URL("/trailers"), nil, "TE", "trailers")
		if string(b) != "with trailers" || resp.Trailer.Get("X-Checksum") != "abc123" {
			t.Fatalf("body %q trailer %q", b, resp.Trailer.Get("X-Checksum"))
		}
	})

	t.Run("early hint", func(t *testing.T) {
		conn := dial(t, c.Addr())
		defer conn.Close()
		fmt.Fprintf(conn, "GET /early-hint HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", c.Addr())
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		raw, _ := io.ReadAll(conn)
		s := string(raw)
		if !strings.HasPrefix(s, "HTTP/1.1 103") || !strings.Contains(s, "rel=preload") || !strings.Contains(s, "HTTP/1.1 200") {
			t.Fatalf("want a 103 with the link, then a 200; got:\n%s", s)
		}
	})

	t.Run("disconnect reaches the app and cancels sleepers", func(t *testing.T) {
		for _, path := range []string{"/wait-disconnect", "/sleep"} {
			conn := dial(t, c.Addr())
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, c.Addr())
			time.Sleep(300 * time.Millisecond)
			conn.Close()
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			var counts struct{ Disconnects, Cancelled int }
			json.Unmarshal(c.get(t, "/counts", 200), &counts)
			if counts.Disconnects >= 1 && counts.Cancelled >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after two clients left: %+v, want a disconnect seen and a sleeper cancelled", counts)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("send waits for a slow client (backpressure)", func(t *testing.T) {
		conn := dial(t, c.Addr())
		defer conn.Close()
		fmt.Fprintf(conn, "GET /flood HTTP/1.1\r\nHost: %s\r\n\r\n", c.Addr())
		time.Sleep(time.Second) // never read: the socket buffers fill up
		var counts struct {
			FloodSent int `json:"flood_sent"`
		}
		// The loop keeps serving others while that send waits.
		json.Unmarshal(c.get(t, "/counts", 200), &counts)
		t.Logf("sends completed to a client that reads nothing: %d of 200 MiB", counts.FloodSent)
		if counts.FloodSent < 1 || counts.FloodSent > 60 {
			t.Fatalf("%d 1 MiB sends returned to a client that read nothing: send must wait for the write", counts.FloodSent)
		}
	})

	t.Run("full duplex: the response streams while the body still arrives", func(t *testing.T) {
		conn := dial(t, c.Addr())
		defer conn.Close()
		fmt.Fprintf(conn, "POST /duplex HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n", c.Addr())
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		// The first chunk must be echoed while the upload is still open.
		got := readUntil(t, conn, nil, "echo: first")
		fmt.Fprintf(conn, "6\r\nsecond\r\n0\r\n\r\n")
		readUntil(t, conn, got, "echo: second")
	})

	t.Run("malformed chunked body is 400", func(t *testing.T) {
		resp, err := rawExchange(t, c.Addr(), "POST /echo HTTP/1.1\r\nHost: "+c.Addr()+"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false, 5*time.Second)
		if code := statusOf(resp); code != 400 {
			t.Fatalf("status %d (%v): %q", code, err, resp)
		}
		c.get(t, "/hello", 200)
	})

	t.Run("concurrent requests", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, b, err := c.fetch("GET", "/hello", nil)
				if err != nil || code != 200 || string(b) != "hello" {
					t.Errorf("%d %q %v", code, b, err)
				}
			}()
		}
		wg.Wait()
	})
}

func TestASGILifespan(t *testing.T) {
	t.Run("startup state reaches requests; shutdown runs once", func(t *testing.T) {
		c := startCaddy(t, asgiSite(t, "asgi_lifespan:app", "lifespan on", inOneProcess()))
		if b := c.get(t, "/", 200); string(b) != "hello from startup" {
			t.Fatalf("body %q", b)
		}
		c.stop()
		log, _ := os.ReadFile(filepath.Join(c.dir, "lifespan.log"))
		if string(log) != "startup\nshutdown\n" {
			t.Fatalf("lifespan.log = %q, want one startup then one shutdown", log)
		}
	})

	t.Run("reload shuts the old app down once and starts the new", func(t *testing.T) {
		c := startCaddy(t, asgiSite(t, "asgi_lifespan:app", "lifespan on", inOneProcess()))
		c.reload(t, asgiSite(t, "asgi_lifespan:app", "lifespan on", "startup_timeout 10s", inOneProcess()))
		c.get(t, "/", 200)
		c.stop()
		log, _ := os.ReadFile(filepath.Join(c.dir, "lifespan.log"))
		if string(log) != "startup\nstartup\nshutdown\nshutdown\n" {
			t.Fatalf("lifespan.log = %q, want two startups and two shutdowns", log)
		}
	})

	t.Run("startup.failed stops caddy with the app's message", func(t *testing.T) {
		out, err := validate(t, asgiSite(t, "asgi_lifespan:failing", "lifespan on"))
		if err == nil || !strings.Contains(out, "database unreachable (test)") {
			t.Fatalf("validate: %v; output:\n%s", err, out)
		}
	})

	t.Run("auto tolerates apps without lifespan", func(t *testing.T) {
		c := startCaddy(t, asgiSite(t, "asgi_lifespan:no_lifespan", "lifespan auto"))
		if b := c.get(t, "/", 200); string(b) != "works without lifespan" {
			t.Fatalf("body %q", b)
		}
	})

	t.Run("on refuses apps that fail lifespan", func(t *testing.T) {
		out, err := validate(t, asgiSite(t, "asgi_lifespan:no_lifespan", "lifespan on"))
		if err == nil || !strings.Contains(out, "only http is supported") {
			t.Fatalf("validate: %v; output:\n%s", err, out)
		}
	})
}

func TestASGIFastAPI(t *testing.T) {
	requireVenv(t)
	requireVenvPackage(t, "fastapi")
	c := startCaddy(t, asgiSite(t, "asgi_fastapi:app", "lifespan on"))
	if b := c.get(t, "/hello", 200); string(b) != `{"message":"hello"}` {
		t.Fatalf("hello: %s", b)
	}
	resp, b := c.do(t, "POST", c.URL("/items"), strings.NewReader(`{"name":"x","price":10}`), "Content-Type", "application/json")
	if resp.StatusCode != 200 || string(b) != `{"name":"x","price_with_tax":12.0}` {
		t.Fatalf("items: %d %s", resp.StatusCode, b)
	}
	resp, b = c.do(t, "POST", c.URL("/items"), strings.NewReader(`{"name":"x"}`), "Content-Type", "application/json")
	if resp.StatusCode != 422 || !strings.Contains(string(b), "price") {
		t.Fatalf("validation error: %d %s", resp.StatusCode, b)
	}
	if b := c.get(t, "/stream", 200); string(b) != "part 0\npart 1\npart 2\n" {
		t.Fatalf("stream: %q", b)
	}
	want, _ := os.ReadFile(filepath.Join(appsDir, "asgi_fastapi.py"))
	if b := c.get(t, "/file", 200); !bytes.Equal(b, want) {
		t.Fatalf("file: %d bytes, want %d", len(b), len(want))
	}
	if b := c.get(t, "/state", 200); string(b) != `{"started":"yes"}` {
		t.Fatalf("state: %s", b)
	}
	c.get(t, "/missing", 404)
}

func TestASGIEventLoopChoice(t *testing.T) {
	t.Run("uvloop serves", func(t *testing.T) {
		requireVenv(t)
		c := startCaddy(t, asgiSite(t, "asgi_raw:app", "loop uvloop"))
		if b := c.get(t, "/hello", 200); string(b) != "hello" {
			t.Fatalf("body %q", b)
		}
		if !c.waitLog(5*time.Second, `"loop":"uvloop"`) {
			t.Error("the start-up log line does not name the uvloop loop")
		}
	})
	t.Run("uvloop missing fails start-up with the remedy", func(t *testing.T) {
		// No venv: the interpreter's own site-packages have no uvloop.
		out, err := validate(t, `http://127.0.0.1:{{PORT}} {
	python {
		module_asgi "asgi_raw:app"
		working_dir {{APPS}}
		loop uvloop
	}
}
`)
		if err == nil || !strings.Contains(out, "uvloop") || !strings.Contains(out, "pip install uvloop") {
			t.Fatalf("validate: %v; output:\n%s", err, out)
		}
	})
}
