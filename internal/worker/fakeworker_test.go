package worker

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// The pool's tests run this test binary as the worker: with fakeWorkerEnv
// set, TestMain speaks the worker's side of the frames on fd 3 instead of
// running the tests, with no CPython. What it answers depends on the
// request's path (see fakeWorker.request).

const fakeWorkerEnv = "CADDYSNAKE_TEST_FAKE_WORKER"

// failFileEnv names a file whose presence makes the fake fail to load.
const failFileEnv = "CADDYSNAKE_TEST_FAIL_FILE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeWorkerEnv) != "" {
		os.Exit(runFakeWorker())
	}
	os.Exit(m.Run())
}

type fakeStream struct {
	path   string
	file   string // /file-cancel's
	echo   bool
	ended  bool // FrameBodyEnd seen
	wanted bool // a FrameWantBody is outstanding
}

type fakeWorker struct {
	w       *Writer
	streams map[uint32]*fakeStream
}

func runFakeWorker() int {
	f := os.NewFile(3, "worker")
	conn, err := net.FileConn(f) // a *net.UnixConn: it passes files
	if err != nil {
		return 5
	}
	f.Close()
	fw := &fakeWorker{w: NewWriter(conn), streams: map[uint32]*fakeStream{}}
	cfg, err := DecodeConfig(os.Getenv(ConfigEnv))
	if err != nil {
		_ = fw.w.WriteFrame(FrameLoadFail, 0, 0, true, []byte(err.Error()))
		return 1
	}
	if f := os.Getenv(failFileEnv); f != "" {
		if _, err := os.Stat(f); err == nil {
			_ = fw.w.WriteFrame(FrameLoadFail, 0, 0, true, []byte("python: cannot load: told to fail"))
			return 1
		}
	}
	target := cfg.WSGI.Target
	ready, _ := json.Marshal(map[string]any{"module_wsgi": target})
	_ = fw.w.WriteFrame(FrameReady, 0, 0, true, ready)
	rd := NewReader(conn)
	draining := false
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return 0 // Caddy is gone
		}
		switch f.Type {
		case FrameShutdown:
			draining = true
		case FrameAbandon:
			return 0
		case FrameRequest:
			var r engine.Request
			if err := DecodeRequest(f.Payload, &r); err != nil {
				return 2
			}
			fw.request(f.Stream, &r)
		case FrameBody:
			if s := fw.streams[f.Stream]; s != nil {
				s.wanted = false
				fw.data(f.Stream, f.Payload)
				fw.want(f.Stream, s)
			}
		case FrameBodyEnd:
			if s := fw.streams[f.Stream]; s != nil && s.echo {
				s.ended = true
				if f.Flags&FlagError != 0 {
					d := &Decoder{B: f.Payload}
					kind, msg := d.U32(), d.Str()
					fw.end(f.Stream, &engine.Error{Status: 400 + int(kind), Err: fmt.Errorf("%s", msg)})
				} else {
					fw.end(f.Stream, nil)
				}
				delete(fw.streams, f.Stream)
			}
		case FrameCancel:
			if s := fw.streams[f.Stream]; s != nil && s.path == "/file-cancel" {
				// A file that comes after Caddy gave up: it must close it.
				fw.head(f.Stream, 200, http.Header{})
				fw.file(f.Stream, s.file, 0)
			}
			if fw.streams[f.Stream] != nil {
				fw.end(f.Stream, engine.ErrAbort)
				delete(fw.streams, f.Stream)
			}
		}
		if draining && len(fw.streams) == 0 {
			return 0
		}
	}
}

func (fw *fakeWorker) head(id uint32, status int, h http.Header) {
	var e Encoder
	e.U32(uint32(status))
	EncodeHeader(&e, h)
	_ = fw.w.WriteFrame(FrameHead, 0, id, true, e.B)
}

func (fw *fakeWorker) data(id uint32, p []byte) {
	_ = fw.w.WriteFrame(FrameData, 0, id, true, p)
}

func (fw *fakeWorker) end(id uint32, err error) {
	var e Encoder
	EncodeEnd(&e, err)
	_ = fw.w.WriteFrame(FrameEnd, 0, id, true, e.B)
}

func (fw *fakeWorker) want(id uint32, s *fakeStream) {
	if !s.ended && !s.wanted {
		s.wanted = true
		_ = fw.w.WriteFrame(FrameWantBody, 0, id, true)
	}
}

// file passes path's file for stream id with its size plus extra (a file
// shorter than it claims).
func (fw *fakeWorker) file(id uint32, path string, extra int64) {
	f, err := os.Open(path)
	if err != nil {
		fw.end(id, &engine.Error{Status: 500, Err: err})
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	_ = fw.w.WriteFile(id, 1, f, st.Size()+extra)
}

// request answers by path:
//
//	/pid        200, the worker's pid
//	/echo       200, the body echoed as it arrives, chunk by chunk
//	/exit       the process exits (3) before answering
//	/exit-mid   200 and some bytes, then the process exits
//	/hints      103 with a Link, then 200
//	/trailers   200, a body, then a trailer
//	/whole      201 and a body in one FrameWhole, asking to close
//	/hang       nothing until cancelled or shut down
//	/sleep?ms   200 after ms milliseconds (the worker does nothing else)
//	/recycle-me FrameRecycle (as a worker that lost a thread), then 200
//	/file?p     200, the file p passed to Caddy (FrameFile), then the end
//	/file-short?p  the same, claiming 1000 bytes more than p has
//	/file-pipe  200, a pipe passed as a file (Caddy must refuse it)
//	/file-orphan?p  p passed for a stream that does not exist, then 200
//	/file-cancel?p  nothing until cancelled; then p passed all the same
//	/file-exit?p   200, p passed, then the process exits
func (fw *fakeWorker) request(id uint32, r *engine.Request) {
	switch r.Path {
	case "/file", "/file-short":
		fw.head(id, 200, http.Header{})
		fw.file(id, r.RawQuery, map[bool]int64{true: 1000}[r.Path == "/file-short"])
		fw.end(id, nil)
	case "/file-pipe":
		pr, pw, _ := os.Pipe()
		fw.head(id, 200, http.Header{})
		_ = fw.w.WriteFile(id, 1, pr, 10)
		pr.Close()
		pw.Close()
		fw.end(id, nil)
	case "/file-orphan":
		fw.file(id+1000, r.RawQuery, 0)
		fw.head(id, 200, http.Header{})
		fw.end(id, nil)
	case "/file-cancel":
		fw.streams[id] = &fakeStream{path: r.Path, file: r.RawQuery, ended: true}
	case "/file-exit":
		fw.head(id, 200, http.Header{})
		fw.file(id, r.RawQuery, 0)
		os.Exit(6)
	case "/pid":
		fw.head(id, 200, http.Header{"Content-Type": {"text/plain"}})
		fw.data(id, []byte(strconv.Itoa(os.Getpid())))
		fw.end(id, nil)
	case "/echo":
		s := &fakeStream{path: r.Path, echo: true}
		fw.streams[id] = s
		fw.head(id, 200, http.Header{"X-Echo": {"1"}})
		fw.want(id, s)
	case "/exit":
		os.Exit(3)
	case "/exit-mid":
		fw.head(id, 200, http.Header{})
		fw.data(id, []byte("partial"))
		_ = fw.w.Flush()
		os.Exit(4)
	case "/hints":
		fw.head(id, 103, http.Header{"Link": {"</a.css>; rel=preload"}})
		fw.head(id, 200, http.Header{"Content-Type": {"text/plain"}})
		fw.data(id, []byte("hinted"))
		fw.end(id, nil)
	case "/trailers":
		fw.head(id, 200, http.Header{"Trailer": {"X-Sum"}})
		fw.data(id, []byte("body"))
		var e Encoder
		EncodeHeader(&e, http.Header{"X-Sum": {"42"}})
		_ = fw.w.WriteFrame(FrameTrailers, 0, id, true, e.B)
		fw.end(id, nil)
	case "/whole":
		var e Encoder
		e.U32(201)
		EncodeHeader(&e, http.Header{"X-Whole": {"1"}})
		e.Str("all at once")
		_ = fw.w.WriteFrame(FrameWhole, FlagClose, id, true, e.B)
	case "/hang":
		fw.streams[id] = &fakeStream{path: r.Path, ended: true}
	case "/sleep":
		ms, _ := strconv.Atoi(r.RawQuery)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fw.head(id, 200, http.Header{})
		fw.end(id, nil)
	case "/recycle-me":
		_ = fw.w.WriteFrame(FrameRecycle, 0, 0, true, []byte("told to"))
		fw.head(id, 200, http.Header{})
		fw.end(id, nil)
	default:
		fw.end(id, &engine.Error{Status: 404, Err: fmt.Errorf("no %s", r.Path)})
	}
}
