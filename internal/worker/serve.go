package worker

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The worker's side: `caddy python-worker` loads the app with engine.Load
// and serves the requests Caddy sends over its end of the socket pair, one
// goroutine per stream, until Caddy says stop (FrameShutdown, FrameAbandon)
// or the socket reaches EOF (Caddy is gone).

// abandonWait bounds how long a worker told to abandon its requests waits
// for them, and for the app's shutdown, before it exits: within the 5 s
// after which Caddy kills it.
const abandonWait = 4 * time.Second

// workerExiting is what the engine asks through engine.Host (set once per
// process) once a worker drains: its process is on its way out, so an ASGI
// app's Close waits for the lifespan shutdown instead of returning at once
// as on a reload.
var (
	workerExiting atomic.Bool
	hostOnce      sync.Once
)

// ExitLoadFailed is a worker's exit code when the app did not load: Caddy
// logs why (FrameLoadFail), so the worker exits without a word.
const ExitLoadFailed = 3

// Run loads the app cfg describes and serves conn (the worker's end of the
// socket pair) until Caddy says stop or goes away; it returns the worker's
// exit code: 0 after a drain or EOF, ExitLoadFailed if the app did not
// load, 1 if Caddy could not be told it did.
func Run(conn io.ReadWriteCloser, cfg engine.Config, logger *zap.Logger) int {
	hostOnce.Do(func() {
		engine.Host(workerExiting.Load, func() *zap.Logger { return logger })
		engine.DieByFatalSignals() // Caddy then logs the signal (proc.go)
	})
	s := &workerConn{
		rd:      NewReader(conn),
		wr:      NewCoalescingWriter(conn),
		logger:  logger,
		streams: make(map[uint32]*reqStream),
		idle:    make(chan struct{}, 1),
		// A WSGI app refuses (503) a request not yet queued once it
		// closes; one the worker took before the drain may not have
		// reached the queue, so its drain waits for them first.
		idleBeforeClose: cfg.WSGI != nil,
	}
	// A thread written off (stuck in C past request_timeout) is lost to
	// this process for good: ask Caddy for a replacement (recycle.go).
	engine.OnThreadLost(func() {
		_ = s.wr.WriteFrame(FrameRecycle, 0, 0, true, []byte("a thread stuck past request_timeout was written off"))
	})
	memFields, err := ApplyMemoryLimit()
	if err != nil {
		_ = s.wr.WriteFrame(FrameLoadFail, 0, 0, false, []byte(err.Error()))
		s.wr.Stop()
		logger.Error("python worker: no memory_limit", zap.Error(err))
		return 1
	}
	app, fields, err := engine.Load(cfg, logger)
	if err != nil {
		_ = s.wr.WriteFrame(FrameLoadFail, 0, 0, false, []byte(err.Error()))
		s.wr.Stop()
		// Caddy logs the error it gets in FrameLoadFail (start-up,
		// restart, recycle, watch reload): logged here too, the
		// traceback would appear twice.
		logger.Debug("python worker: the app did not load", zap.Error(err))
		return ExitLoadFailed
	}
	s.app = app
	fields = append(append(fields, memFields...), memoryUsedField()...)
	if err := s.wr.WriteFrame(FrameReady, 0, 0, true, readyPayload(fields)); err != nil {
		logger.Error("python worker: cannot tell Caddy the app is ready", zap.Error(err))
		return 1
	}
	code := s.loop()
	s.wr.Stop() // what the last streams wrote goes out before the exit
	return code
}

// readyPayload lays out the start-up fields engine.Load returned as one
// JSON object, for Caddy's "python app ready" log line.
func readyPayload(fields []zap.Field) []byte {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	b, err := json.Marshal(enc.Fields)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// workerConn is one worker's connection to Caddy.
type workerConn struct {
	app    engine.App
	rd     *Reader
	wr     *Writer
	logger *zap.Logger

	mu       sync.Mutex
	streams  map[uint32]*reqStream
	draining bool
	closed   chan struct{} // beginClose's: app.Close returned
	// idleBeforeClose: app.Close only once the streams taken are over.
	idleBeforeClose bool
	// idle gets a token whenever the last stream ends while draining.
	idle chan struct{}
}

// loop reads frames until the connection ends or a drain is over.
func (s *workerConn) loop() int {
	frames := make(chan error, 1)
	stop := make(chan int, 1)
	go func() { frames <- s.readFrames(stop) }()
	select {
	case err := <-frames:
		if err != io.EOF {
			s.logger.Error("python worker: reading from Caddy failed; exiting", zap.Error(err))
		}
		// Caddy is gone (parent death): nobody can be answered any
		// more, and the process exits without waiting for the app.
		return 0
	case code := <-stop:
		return code
	}
}

// readFrames dispatches frames until the socket fails; a drain that is
// over is sent on stop. The loop itself never blocks on a stream: credit
// and body chunks must get through while the streams' goroutines wait.
func (s *workerConn) readFrames(stop chan<- int) error {
	for {
		f, err := s.rd.ReadFrame()
		if err != nil {
			return err
		}
		if f.Stream == 0 {
			s.control(f, stop)
			continue
		}
		if f.Type == FrameRequest {
			s.start(f)
			continue
		}
		s.mu.Lock()
		st := s.streams[f.Stream]
		s.mu.Unlock()
		if st == nil {
			continue // the stream ended already: late credit, a late cancel
		}
		switch f.Type {
		case FrameBody:
			if st.body != nil {
				st.body.push(f.Payload)
			}
		case FrameBodyEnd:
			// Also sent for a request without a body: nothing to end.
			if st.body != nil {
				st.body.end(f.Flags, f.Payload)
			}
		case FrameCancel:
			st.cancel()
		case FrameWSAccepted, FrameWSMessage, FrameWSEnd, FrameWSDone:
			if ws := st.ws.Load(); ws != nil {
				ws.fromCaddy(f)
			}
		case FrameFileDone:
			st.fileDone(f.Payload)
		case FrameCredit:
			d := &Decoder{B: f.Payload}
			if n := d.U32(); d.Err == nil {
				st.credit(int(n))
			}
		}
	}
}

// control handles stream 0: shut down (drain) or abandon.
func (s *workerConn) control(f Frame, stop chan<- int) {
	switch f.Type {
	case FrameShutdown:
		closed := s.beginClose()
		go func() {
			<-closed
			s.waitIdle(0)
			s.stopWith(stop, 0)
		}()
	case FrameAbandon:
		go func() {
			bound := time.Now().Add(abandonWait)
			s.app.Abandon()
			// The drain goes on if it began (as in process, the lifespan
			// shutdown runs after the abandon), else it begins now.
			closed := s.beginClose()
			idle := s.waitIdle(time.Until(bound))
			timer := time.NewTimer(max(time.Until(bound), time.Millisecond))
			defer timer.Stop()
			select {
			case <-closed:
			case <-timer.C:
				idle = false
			}
			if !idle {
				s.logger.Warn("python worker: requests or the app's shutdown still running after abandon; exiting anyway")
			}
			s.stopWith(stop, 0)
		}()
	}
}

// beginClose refuses new streams and closes the app once (app.Close on a
// goroutine: it waits for the requests in flight); the channel is closed
// when Close returned.
func (s *workerConn) beginClose() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.draining = true
		workerExiting.Store(true)
		s.closed = make(chan struct{})
		go func(done chan struct{}) {
			if s.idleBeforeClose {
				s.waitIdle(0)
			}
			s.app.Close()
			close(done)
		}(s.closed)
	}
	return s.closed
}

// stopWith ends the loop with code, unless it is ending already.
func (s *workerConn) stopWith(stop chan<- int, code int) {
	select {
	case stop <- code:
	default:
	}
}

// waitIdle waits until no stream is in flight (draining must be set), at
// most bound (0: no bound); false if the bound passed first.
func (s *workerConn) waitIdle(bound time.Duration) bool {
	var timeout <-chan time.Time
	if bound > 0 {
		t := time.NewTimer(bound)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		n := len(s.streams)
		s.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-s.idle:
		case <-timeout:
			return false
		}
	}
}

// start begins a stream for a FrameRequest: its goroutine runs the app.
// A request that arrives once a drain began is refused (503): the worker
// is on its way out and Caddy sends new requests elsewhere.
func (s *workerConn) start(f Frame) {
	st := newReqStream(s, f.Stream)
	if err := DecodeRequest(f.Payload, &st.req); err != nil {
		s.logger.Error("python worker: a request Caddy sent cannot be decoded", zap.Error(err))
		st.finish(&engine.Error{Status: http.StatusBadGateway, Err: err})
		return
	}
	st.prepare()
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		st.finish(&engine.Error{Status: http.StatusServiceUnavailable, Err: errors.New("python worker: shutting down")})
		return
	}
	s.streams[f.Stream] = st
	s.mu.Unlock()
	go st.serve()
}

// ended drops a stream that sent its FrameEnd.
func (s *workerConn) ended(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	last := s.draining && len(s.streams) == 0
	s.mu.Unlock()
	if last {
		nudge(s.idle)
	}
}
