package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap/zaptest"
)

// These tests run a worker's loop (Run) in the test process over one end
// of a socket pair, with a real app from testdata/, and play Caddy's part
// on the other end frame by frame.

// fakeCaddy is Caddy's end of a worker's socket pair.
type fakeCaddy struct {
	t    *testing.T
	conn net.Conn
	rd   *Reader
	wr   *Writer
	code chan int // Run's exit code
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func wsgiConfig(t *testing.T, bodyTimeout time.Duration) engine.Config {
	testdata, _ := filepath.Abs("testdata")
	return engine.Config{WSGI: &engine.WSGIOptions{Target: "worker_wsgi:app", WorkingDir: testdata, Threads: 4,
		MaxWait: 5 * time.Second, Timeout: 30 * time.Second, BodyTimeout: bodyTimeout}}
}

func asgiConfig(t *testing.T) engine.Config {
	testdata, _ := filepath.Abs("testdata")
	return engine.Config{ASGI: &engine.ASGIOptions{Target: "worker_asgi:app", WorkingDir: testdata,
		Lifespan: "on", Loop: "asyncio", StartupTimeout: 10 * time.Second, ShutdownTimeout: 5 * time.Second,
		WSMaxMessage: engine.DefaultWSMaxMessage, RequestTimeout: 30 * time.Second, BodyTimeout: 30 * time.Second}}
}

// startWorker runs Run over a socket pair and returns Caddy's end once
// the worker sent its first frame (kept in first).
func startWorker(t *testing.T, cfg engine.Config) (*fakeCaddy, Frame) {
	t.Helper()
	caddyEnd, workerEnd := socketPair(t)
	c := &fakeCaddy{t: t, conn: caddyEnd, rd: NewFileReader(caddyEnd.(*net.UnixConn)), wr: NewWriter(caddyEnd), code: make(chan int, 1)}
	go func() {
		c.code <- Run(workerEnd, cfg, zaptest.NewLogger(t))
		workerEnd.Close()
	}()
	t.Cleanup(func() { caddyEnd.Close(); c.rd.Close() })
	return c, c.next(30 * time.Second)
}

// startReady is startWorker for an app that loads, shut down (drained) at
// the end of the test.
func startReady(t *testing.T, cfg engine.Config) *fakeCaddy {
	t.Helper()
	c, f := startWorker(t, cfg)
	if f.Type != FrameReady {
		t.Fatalf("first frame: type %d %q, want FrameReady", f.Type, f.Payload)
	}
	t.Cleanup(func() {
		if c.code == nil {
			return // the test ended the worker itself
		}
		c.send(FrameShutdown, 0, 0)
		c.exitCode(15 * time.Second)
	})
	return c
}

// next reads one frame (its payload copied), failing after wait.
func (c *fakeCaddy) next(wait time.Duration) Frame {
	c.t.Helper()
	f, err := c.tryNext(wait)
	if err != nil {
		c.t.Fatalf("reading a frame from the worker: %v", err)
	}
	return f
}

func (c *fakeCaddy) tryNext(wait time.Duration) (Frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	f, err := c.rd.ReadFrame()
	f.Payload = append([]byte(nil), f.Payload...)
	return f, err
}

func (c *fakeCaddy) send(typ, flags uint8, id uint32, payload ...[]byte) {
	c.t.Helper()
	if err := c.wr.WriteFrame(typ, flags, id, true, payload...); err != nil {
		c.t.Fatal(err)
	}
}

// exitCode waits for Run to return.
func (c *fakeCaddy) exitCode(wait time.Duration) int {
	c.t.Helper()
	select {
	case code := <-c.code:
		c.code = nil
		return code
	case <-time.After(wait):
		c.t.Fatalf("the worker did not exit within %v", wait)
		return -1
	}
}

// request sends a FrameRequest for method and path with a body of
// length cl (0: none; -1: unknown).
func (c *fakeCaddy) request(id uint32, method, path string, cl int64, h http.Header) {
	c.t.Helper()
	if h == nil {
		h = http.Header{}
	}
	r := &engine.Request{Method: method, Target: path, Path: path, RawPath: path, Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Host: "example.test:80", Header: h, ContentLength: cl,
		RemoteAddr: "127.0.0.1:5000"}
	e := &Encoder{}
	EncodeRequest(e, r)
	c.send(FrameRequest, 0, id, e.B)
}

// response is what a stream sent back.
type response struct {
	heads    []int // every FrameHead's status, 1xx included
	header   http.Header
	hints    []http.Header
	body     []byte
	trailers http.Header
	flushes  int
	wants    int
	end      error
	endFlags uint8
	wholes   int // FrameWhole: the whole response came in one frame
	files    int // FrameFile: a file passed to be sent
}

// exchange reads stream id's frames until its FrameEnd: FrameData is
// credited at once, and each FrameWantBody is answered with the next of
// chunks, then FrameBodyEnd (or bodyEnd's error, if set).
func (c *fakeCaddy) exchange(id uint32, chunks [][]byte, bodyEnd []byte) *response {
	c.t.Helper()
	res := &response{}
	deadline := time.Now().Add(60 * time.Second)
	for n := 0; ; n++ {
		if n > 100000 || time.Now().After(deadline) {
			c.t.Fatalf("stream %d: no FrameEnd after %d frames", id, n)
		}
		f := c.next(20 * time.Second)
		if f.Stream != id {
			c.t.Fatalf("frame type %d for stream %d, want stream %d", f.Type, f.Stream, id)
		}
		switch f.Type {
		case FrameHead:
			d := &Decoder{B: f.Payload}
			status := int(d.U32())
			h := DecodeHeader(d)
			if d.Err != nil {
				c.t.Fatal(d.Err)
			}
			res.heads = append(res.heads, status)
			if status < 200 {
				res.hints = append(res.hints, h)
			} else {
				res.header = h
			}
		case FrameData:
			res.body = append(res.body, f.Payload...)
			e := &Encoder{}
			e.U32(uint32(len(f.Payload)))
			c.send(FrameCredit, 0, id, e.B)
		case FrameFile:
			res.files++
			res.body = append(res.body, c.readPassed(f)...)
		case FrameFlush:
			res.flushes++
		case FrameWantBody:
			res.wants++
			switch {
			case len(chunks) > 0:
				c.send(FrameBody, 0, id, chunks[0])
				chunks = chunks[1:]
			case bodyEnd != nil:
				c.send(FrameBodyEnd, FlagError, id, bodyEnd)
			default:
				c.send(FrameBodyEnd, 0, id)
			}
		case FrameTrailers:
			d := &Decoder{B: f.Payload}
			res.trailers = DecodeHeader(d)
		case FrameEnd:
			res.end, res.endFlags = DecodeEnd(f.Payload), f.Flags
			return res
		case FrameWhole:
			d := &Decoder{B: f.Payload}
			status := int(d.U32())
			res.header = DecodeHeader(d)
			if n := d.U32(); d.Err != nil || int(n) != len(d.B) {
				c.t.Fatalf("FrameWhole: body length %d, %d bytes follow (%v)", n, len(d.B), d.Err)
			}
			res.heads = append(res.heads, status)
			res.body = append(res.body, d.B...)
			res.wholes++
			res.endFlags = f.Flags
			return res
		default:
			c.t.Fatalf("unexpected frame type %d", f.Type)
		}
	}
}

func (res *response) status() int {
	if len(res.heads) == 0 {
		return 0
	}
	return res.heads[len(res.heads)-1]
}

func endStatus(err error) int {
	var ee *engine.Error
	if errors.As(err, &ee) {
		return ee.Status
	}
	return 0
}

func TestWorkerReadyThenServesWSGI(t *testing.T) {
	c, f := startWorker(t, wsgiConfig(t, 0))
	if f.Type != FrameReady || f.Stream != 0 {
		t.Fatalf("first frame: type %d stream %d, want FrameReady on stream 0", f.Type, f.Stream)
	}
	var fields map[string]any
	if err := json.Unmarshal(f.Payload, &fields); err != nil || fields["module_wsgi"] != "worker_wsgi:app" {
		t.Fatalf("ready payload %s (%v): want the start-up fields with module_wsgi", f.Payload, err)
	}
	c.request(1, "GET", "/hi", 0, nil)
	c.send(FrameBodyEnd, 0, 1) // Caddy ends even a body that is not there
	res := c.exchange(1, nil, nil)
	if res.end != nil || res.status() != 200 || string(res.body) != "hello from /hi" ||
		res.header.Get("X-Path") != "/hi" || res.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("got status %d header %v body %q end %v", res.status(), res.header, res.body, res.end)
	}
	if res.wants != 0 {
		t.Errorf("a request without a body asked for one %d times", res.wants)
	}
	if res.wholes != 1 {
		t.Errorf("a small response came in pieces, not as one FrameWhole")
	}
	c.send(FrameShutdown, 0, 0)
	if code := c.exitCode(15 * time.Second); code != 0 {
		t.Fatalf("exit code after a drain: %d, want 0", code)
	}
}

func TestWorkerLoadFailure(t *testing.T) {
	cfg := wsgiConfig(t, 0)
	cfg.WSGI.Target = "no_such_module_here:app"
	c, f := startWorker(t, cfg)
	if f.Type != FrameLoadFail || !strings.Contains(string(f.Payload), "no_such_module_here") {
		t.Fatalf("first frame: type %d %q, want FrameLoadFail naming the module", f.Type, f.Payload)
	}
	if code := c.exitCode(5 * time.Second); code != ExitLoadFailed {
		t.Fatalf("exit code after a failed load: %d, want %d", code, ExitLoadFailed)
	}
}

func TestWorkerPullsBodyOneChunkPerWant(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	var chunks [][]byte
	var want []byte
	for i := range 5 {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 40000)
		chunks = append(chunks, chunk)
		want = append(want, chunk...)
	}
	c.request(1, "POST", "/echo", int64(len(want)), nil)
	// exchange answers each FrameWantBody with exactly one frame: a second
	// want before the answer would show up as an extra want here.
	res := c.exchange(1, chunks, nil)
	if res.end != nil || !bytes.Equal(res.body, want) {
		t.Fatalf("echo: end %v, %d bytes back of %d", res.end, len(res.body), len(want))
	}
	// Not one for the end: the body's Content-Length says it is over
	// with the last chunk (as net/http's EOF with the last bytes).
	if res.wants != len(chunks) {
		t.Errorf("%d FrameWantBody for %d chunks of a Content-Length body, want %d", res.wants, len(chunks), len(chunks))
	}
}

func TestWorkerTakesSmallBodyUnasked(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	c.request(1, "POST", "/echo", 5, nil)
	// Late on purpose: the app reads first and must wait, not ask.
	time.Sleep(200 * time.Millisecond)
	c.send(FrameBody, 0, 1, []byte("hel"))
	c.send(FrameBody, 0, 1, []byte("lo"))
	c.send(FrameBodyEnd, 0, 1)
	res := c.exchange(1, nil, nil)
	if res.end != nil || string(res.body) != "hello" {
		t.Fatalf("echo of an eager body: end %v body %q", res.end, res.body)
	}
	if res.wants != 0 {
		t.Errorf("the worker asked for an eager body %d times", res.wants)
	}
}

func TestWorkerBodyErrorsMapAsInProcess(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	for i, tc := range []struct {
		kind   uint32
		status int
	}{{BodyErrTooLarge, 413}, {BodyErrDeadline, 408}, {BodyErrOther, 400}} {
		id := uint32(i + 1)
		c.request(id, "POST", "/echo", 100000, nil)
		e := &Encoder{}
		e.U32(tc.kind)
		e.Str("the body failed on Caddy's side")
		res := c.exchange(id, nil, e.B)
		if got := endStatus(res.end); got != tc.status || len(res.heads) != 0 {
			t.Errorf("body error kind %d: end %v (status %d), heads %v; want status %d and no head",
				tc.kind, res.end, got, res.heads, tc.status)
		}
	}
}

func TestWorkerReadDeadlineBoundsBodyWait(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 300*time.Millisecond))
	c.request(1, "POST", "/echo", 100000, nil)
	start := time.Now()
	var res *response
	for n := 0; res == nil; n++ {
		if n > 1000 {
			t.Fatal("no FrameEnd after 1000 frames")
		}
		f := c.next(10 * time.Second)
		if f.Type == FrameWantBody {
			continue // never answered: the engine's body timeout must end the wait
		}
		if f.Type == FrameEnd {
			res = &response{end: DecodeEnd(f.Payload), endFlags: f.Flags}
			break
		}
		t.Fatalf("unexpected frame type %d", f.Type)
	}
	if got := endStatus(res.end); got != http.StatusRequestTimeout {
		t.Fatalf("a body that never came: end %v, want 408", res.end)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the 300 ms body timeout took %v", el)
	}
	if res.endFlags&FlagClose == 0 {
		t.Errorf("an HTTP/1 body not read to its end must close the connection (FlagClose)")
	}
}

func TestWorkerWindowHoldsResponseUntilCredit(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	c.request(1, "GET", "/stream", 0, nil)
	got := 0
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatalf("%d frames and still sending without credit (%d bytes)", n, got)
		}
		f, err := c.tryNext(500 * time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				break // the worker stopped sending: the window is full
			}
			t.Fatal(err)
		}
		switch f.Type {
		case FrameHead, FrameFlush:
		case FrameData:
			got += len(f.Payload)
		default:
			t.Fatalf("frame type %d before any credit", f.Type)
		}
	}
	if got != Window {
		t.Fatalf("%d bytes sent without credit, want exactly the window (%d)", got, Window)
	}
	// The reader kept a frame cut short by the deadline: start over on a
	// fresh reader (no frame was in flight when the worker stalled).
	c.rd = NewReader(c.conn)
	e := &Encoder{}
	e.U32(uint32(got))
	c.send(FrameCredit, 0, 1, e.B)
	res := c.exchange(1, nil, nil)
	if total := got + len(res.body); res.end != nil || total != 64*65536 {
		t.Fatalf("after the credit: end %v, %d bytes in all, want %d", res.end, total, 64*65536)
	}
}

func TestWorkerCancelEndsBodyWait(t *testing.T) {
	c := startReady(t, asgiConfig(t))
	c.request(1, "POST", "/wait-disconnect", 100000, nil)
	if f := c.next(10 * time.Second); f.Type != FrameWantBody {
		t.Fatalf("frame type %d, want FrameWantBody", f.Type)
	}
	c.send(FrameCancel, 0, 1)
	for n := 0; n < 1000; n++ {
		f := c.next(5 * time.Second) // the body timeout is 30 s: only the cancel ends it sooner
		if f.Type == FrameEnd {
			return
		}
	}
	t.Fatal("no FrameEnd after 1000 frames")
}

func TestWorkerEarlyHintsTrailersAndFiles(t *testing.T) {
	c := startReady(t, asgiConfig(t))
	c.request(1, "GET", "/early-hint", 0, nil)
	res := c.exchange(1, nil, nil)
	if len(res.heads) != 2 || res.heads[0] != 103 || res.heads[1] != 200 ||
		!strings.Contains(res.hints[0].Get("Link"), "style.css") || res.header.Get("Link") != "" ||
		string(res.body) != "after the hint" {
		t.Fatalf("early hint: heads %v hints %v header %v body %q", res.heads, res.hints, res.header, res.body)
	}

	c.request(2, "GET", "/trailers", 0, nil)
	res = c.exchange(2, nil, nil)
	var checksum string
	for k, vs := range res.trailers {
		if strings.EqualFold(k, http.TrailerPrefix+"X-Checksum") {
			checksum = vs[0]
		}
	}
	if res.end != nil || string(res.body) != "with trailers" || checksum != "abc123" || len(res.trailers) != 1 {
		t.Fatalf("trailers: end %v body %q trailers %v, want only the checksum", res.end, res.body, res.trailers)
	}

	c.request(3, "GET", "/pathsend", 0, nil)
	res = c.exchange(3, nil, nil)
	src, _ := os.ReadFile(filepath.Join("testdata", "worker_asgi.py"))
	if res.end != nil || !bytes.Equal(res.body, src) || res.files != 1 {
		t.Fatalf("pathsend: end %v, %d bytes in %d passed files, want the file's %d in one", res.end, len(res.body), res.files, len(src))
	}

	c.request(4, "POST", "/echo", 3, nil)
	c.send(FrameBody, 0, 4, []byte("abc"))
	c.send(FrameBodyEnd, 0, 4)
	if res = c.exchange(4, nil, nil); string(res.body) != "asgi /echo abc" {
		t.Fatalf("ASGI echo: end %v body %q", res.end, res.body)
	}
}

// wsgi.file_wrapper's file goes to Caddy as a descriptor (FrameFile),
// at the offset the app left it, not as FrameData.
func TestWorkerPassesFileWrapperFile(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	c.request(1, "GET", "/file", 0, nil)
	res := c.exchange(1, nil, nil)
	src, _ := os.ReadFile(filepath.Join("testdata", "worker_wsgi.py"))
	if res.end != nil || res.status() != 200 || !bytes.Equal(res.body, src[10:]) || res.files != 1 {
		t.Fatalf("file_wrapper: end %v status %d, %d bytes in %d passed files, want the file's %d from byte 10 in one",
			res.end, res.status(), len(res.body), res.files, len(src)-10)
	}
}

func TestWorkerShutdownDrainsThenRefuses(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	c.request(1, "GET", "/slow", 0, nil)
	// Wait until the app runs (its first chunk is flushed), then drain.
	var body []byte
	for n := 0; len(body) == 0; n++ {
		if n > 1000 {
			t.Fatal("no data after 1000 frames")
		}
		f := c.next(10 * time.Second)
		if f.Type == FrameData {
			body = append(body, f.Payload...)
		}
	}
	c.send(FrameShutdown, 0, 0)
	c.request(2, "GET", "/hi", 0, nil)
	var refused, finished bool
	for n := 0; !refused || !finished; n++ {
		if n > 1000 {
			t.Fatal("no end for both streams after 1000 frames")
		}
		f := c.next(10 * time.Second)
		switch {
		case f.Stream == 1 && f.Type == FrameData:
			body = append(body, f.Payload...)
		case f.Stream == 1 && f.Type == FrameEnd:
			if err := DecodeEnd(f.Payload); err != nil || string(body) != "start end" {
				t.Fatalf("the request in flight at shutdown: end %v body %q", err, body)
			}
			finished = true
		case f.Stream == 2 && f.Type == FrameEnd:
			if got := endStatus(DecodeEnd(f.Payload)); got != http.StatusServiceUnavailable {
				t.Fatalf("a request after shutdown: status %d, want 503", got)
			}
			refused = true
		case f.Stream == 2:
			t.Fatalf("a request after shutdown got frame type %d", f.Type)
		}
	}
	if code := c.exitCode(15 * time.Second); code != 0 {
		t.Fatalf("exit code: %d", code)
	}
}

func TestWorkerExitsAtEOF(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	c.request(1, "GET", "/hi", 0, nil)
	c.exchange(1, nil, nil)
	c.conn.Close()
	if code := c.exitCode(5 * time.Second); code != 0 {
		t.Fatalf("exit code at EOF: %d", code)
	}
}

func TestWorkerAbandonEndsStuckRequest(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	c.request(1, "GET", "/stuck", 0, nil)
	time.Sleep(300 * time.Millisecond) // the app runs (WSGI sends nothing before its body)
	c.send(FrameShutdown, 0, 0)
	time.Sleep(200 * time.Millisecond)
	c.send(FrameAbandon, 0, 0)
	start := time.Now()
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("no end for the abandoned stream after 1000 frames")
		}
		f := c.next(abandonWait)
		if f.Stream == 1 && f.Type == FrameEnd {
			if got := endStatus(DecodeEnd(f.Payload)); got != http.StatusServiceUnavailable {
				t.Fatalf("the abandoned request: status %d, want 503", got)
			}
			break
		}
	}
	if code := c.exitCode(abandonWait + 5*time.Second); code != 0 {
		t.Fatalf("exit code after abandon: %d", code)
	}
	t.Logf("exited %v after FrameAbandon", time.Since(start))
}

func TestWorkerAbandonWaitsForLifespanShutdown(t *testing.T) {
	mark := fmt.Sprintf("/tmp/caddysnake_worker_test_%d.shutdown", os.Getpid())
	os.Remove(mark)
	t.Cleanup(func() { os.Remove(mark) })
	c := startReady(t, asgiConfig(t))
	c.request(1, "GET", "/stuck", 0, nil)
	time.Sleep(300 * time.Millisecond)
	c.send(FrameShutdown, 0, 0)
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the lifespan shutdown ran with a request in flight")
	}
	c.send(FrameAbandon, 0, 0)
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("no end for the abandoned stream after 1000 frames")
		}
		f := c.next(abandonWait)
		if f.Stream == 1 && f.Type == FrameEnd {
			if got := endStatus(DecodeEnd(f.Payload)); got != http.StatusServiceUnavailable {
				t.Fatalf("the abandoned request: status %d, want 503", got)
			}
			break
		}
	}
	if code := c.exitCode(abandonWait + 2*time.Second); code != 0 {
		t.Fatalf("exit code after abandon: %d", code)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the worker exited before the app's lifespan shutdown ran: %v", err)
	}
}

// readPassed reads a FrameFile's file as Caddy would send it (size bytes
// from its offset), closes it and answers FrameFileDone.
func (c *fakeCaddy) readPassed(f Frame) []byte {
	c.t.Helper()
	defer f.File.Close()
	d := &Decoder{B: f.Payload}
	size := int64(d.U32()) | int64(d.U32())<<32
	seq := d.U32()
	b, err := io.ReadAll(io.LimitReader(f.File, size))
	if err != nil || d.Err != nil {
		c.t.Fatalf("FrameFile: %v %v", err, d.Err)
	}
	e := &Encoder{}
	e.U32(seq)
	e.U32(uint32(len(b)))
	e.U32(0)
	e.U32(fileSent)
	e.Str("")
	c.send(FrameFileDone, 0, f.Stream, e.B)
	return b
}

// An app that reads exactly CONTENT_LENGTH bytes (Django) has read its body
// to the end: the answer keeps the connection (no FlagClose), though the
// body's FrameBodyEnd has not come (Caddy sends it once it saw the end).
func TestWorkerBodyReadToContentLengthKeepsConnection(t *testing.T) {
	c := startReady(t, wsgiConfig(t, 0))
	chunks := [][]byte{bytes.Repeat([]byte("a"), 70000), bytes.Repeat([]byte("b"), 50000)}
	c.request(1, "POST", "/exact", 120000, http.Header{"Content-Length": {"120000"}})
	res := c.exchange(1, chunks, nil)
	if res.end != nil || string(res.body) != "120000" {
		t.Fatalf("/exact: end %v, body %q", res.end, res.body)
	}
	if res.endFlags&FlagClose != 0 {
		t.Errorf("the app read its whole body, yet the answer closes the connection (FlagClose)")
	}
}
