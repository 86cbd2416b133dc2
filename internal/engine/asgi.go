package engine

// #include "asgi_queues.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// How an ASGI app runs: one asyncio event loop per app, on its own OS
// thread with its own PyThreadState (caddysnake.asgi.run_loop). Go never
// calls into Python per message: it posts events into the app's inbox (C
// memory, asgi_queues.c) and wakes the loop through an eventfd, once per
// batch; the loop drains the inbox in one call. Python never blocks on Go,
// nor calls it for an HTTP request: its calls append commands to the
// request's outbox and wake one dispatcher goroutine through another
// eventfd, once per batch; the dispatcher wakes the request goroutines
// (Serve), which write to the client and report what Python waits for
// as events. A small body's send() is over once it is copied; past
// AOUTBOX_LIMIT unsent bytes, or for a large body, send awaits its
// completion event: backpressure. So a slow client stalls only its own
// coroutine, and thousands of connections need no more threads than one.

// ASGI defaults, documented on the Handler fields.
const (
	DefaultStartupTimeout  = 60 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	// asgiBodyChunk is how much of a request body one receive() gets at most:
	// big enough to keep crossings rare, small enough to bound memory per
	// request (beyond a small body of known length, read whole with the
	// request, nothing is read ahead of the app).
	asgiBodyChunk = 64 * 1024
)

var (
	asgiApps     = handleTable[ASGIApp]{tag: tagASGIApp}
	asgiRequests = handleTable[asgiRequest]{tag: tagASGIRequest}
)

// ASGIOptions says what to import and how to run it.
type ASGIOptions struct {
	Target          string // "module:attribute"
	WorkingDir      string
	DefaultDir      string // the working_dir when WorkingDir is "" (Caddy's working folder)
	Venv            string
	Lifespan        string // "on", "off" or "auto"
	Loop            string // "asyncio", "uvloop" or "auto"
	StartupTimeout  time.Duration
	ShutdownTimeout time.Duration
	WSMaxMessage    int64  // bytes; a larger incoming message closes with 1009
	WSCompression   string // WSCompression*: how WebSockets negotiate permessage-deflate
	// How long an HTTP request may run before its task is cancelled (504,
	// or an aborted response); streaming responses and WebSockets are
	// exempt once they stream. 0: no limit.
	RequestTimeout time.Duration
	// request_body_timeout: how long a body read may wait; 0: off.
	BodyTimeout time.Duration
}

// ASGIApp is one imported ASGI app and the event loop that runs it.
type ASGIApp struct {
	target   string
	origin   string // the folder the app's module came from
	interp   *interpreter
	opts     ASGIOptions
	obj      *C.PyObject
	handle   uintptr
	queues   *C.cs_aapp // the inbox and the requests' outboxes
	wakeFd   int        // the eventfd the loop waits on
	newsFile *os.File   // the eventfd the loop writes when requests have commands
	logger   *zap.Logger
	closing  atomic.Bool

	// Go calls on queues (posts, outboxes) happen between enter and leave;
	// queues is freed once it is closed and the last of them left.
	gate         userGate
	dispatchDone chan struct{}

	ready     chan error // lifespan startup outcome, once
	readyOnce sync.Once
	loopDone  chan struct{}

	inflight      atomic.Int64  // requests between Serve's start and end
	abandoning    atomic.Bool   // Abandon was called
	abandonCalled chan struct{} // closed by Abandon
	// Closed asgiAbandonGrace after Abandon: requests the loop did not end
	// by then (it is stuck, or a task ignores its cancellation and the loop
	// cannot answer) stop waiting for it.
	abandoned chan struct{}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// asgiAbandonGrace: how long Go waits, after Abandon, for the loop to end
// the requests it cancelled (CANCEL_GRACE in caddysnake/asgi/exchange.py, 3 s, plus slack).
const asgiAbandonGrace = 5 * time.Second

type asgiEvent struct {
	kind   int
	handle uintptr
	req    *asgiRequest // evRequest: whose strings to hand over
	data   []byte       // evBody, evWSMessage, evWSClose: copied by the post
	// evRequest: the whole body (bodyLen bytes, -1: none) in C memory the
	// post takes over.
	body    *C.char
	bodyLen int
	flag    bool
	code    int // evWSClose
}

// LoadASGI imports the app into it, starts its event loop thread and waits
// for the lifespan startup to finish. The app owns it from then on: Close
// (or a failed load) ends a sub-interpreter.
func LoadASGI(it *interpreter, opts ASGIOptions, logger *zap.Logger) (*ASGIApp, error) {
	obj, origin, err := it.loadApp(appSource{target: opts.Target, workingDir: opts.WorkingDir,
		defaultDir: opts.DefaultDir, venv: opts.Venv, iface: "asgi"})
	if err != nil {
		it.end()
		return nil, err
	}
	a := &ASGIApp{target: opts.Target, interp: it, opts: opts, obj: obj, logger: logger, origin: origin,
		ready: make(chan error, 1), loopDone: make(chan struct{}), dispatchDone: make(chan struct{}),
		gate: newUserGate(), abandonCalled: make(chan struct{}), abandoned: make(chan struct{})}
	if err := a.openQueues(); err != nil {
		it.release(obj)
		it.end()
		return nil, err
	}
	a.handle = asgiApps.add(a)
	go a.dispatch()
	go a.loopThread()
	select {
	case err = <-a.ready:
	case <-time.After(opts.StartupTimeout + 5*time.Second):
		err = fmt.Errorf("the event loop did not start within %v", opts.StartupTimeout)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *ASGIApp) loopThread() {
	// The loop's thread state is bound to this OS thread for the loop's life.
	runtime.LockOSThread()
	defer close(a.loopDone)
	ts := C.caddysnake_thread_new(a.interp.ci)
	lifespan, loop, venv := C.CString(a.opts.Lifespan), C.CString(a.opts.Loop), C.CString(a.opts.Venv)
	defer freeAll(lifespan, loop, venv)
	cerr := C.caddysnake_asgi_run(a.interp.ci, ts, a.obj, a.queues, C.uintptr_t(a.handle), C.int(a.wakeFd),
		lifespan, loop, venv, C.double(a.opts.StartupTimeout.Seconds()), C.double(a.opts.ShutdownTimeout.Seconds()),
		C.double(a.opts.RequestTimeout.Seconds()))
	C.caddysnake_thread_free(ts)
	if cerr != nil {
		msg := C.GoString(cerr)
		C.free(unsafe.Pointer(cerr))
		a.logger.Error("ASGI event loop failed", zap.String("error", msg))
		a.signalReady(errors.New(msg))
	}
	a.signalReady(errors.New("the event loop exited before startup finished"))
}

func (a *ASGIApp) signalReady(err error) {
	a.readyOnce.Do(func() { a.ready <- err })
}

// openQueues makes the app's queues and their two eventfds.
func (a *ASGIApp) openQueues() error {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	news, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(wake)
		return fmt.Errorf("eventfd: %w", err)
	}
	q := C.caddysnake_aapp_new(C.int(wake), C.int(news))
	if q == nil {
		unix.Close(wake)
		unix.Close(news)
		return errors.New("python: out of memory for an ASGI app's queues")
	}
	// Non-blocking: os.NewFile hands it to the netpoller, so the
	// dispatcher's Read parks a goroutine, not a thread.
	a.queues, a.wakeFd, a.newsFile = q, wake, os.NewFile(uintptr(news), "asgi-news")
	return nil
}

// dispatch wakes the goroutines of requests with new commands, as many as
// there are per wake-up, until the news eventfd is closed.
func (a *ASGIApp) dispatch() {
	defer close(a.dispatchDone)
	dispatchNews(a.newsFile, func(out *C.uintptr_t, max C.int) C.int {
		if !a.enter() {
			return 0 // closed: the queues may be gone
		}
		defer a.leave()
		return C.caddysnake_aapp_take_ready(a.queues, out, max)
	}, func(h uintptr) {
		if req := asgiRequests.get(h); req != nil {
			req.wake()
		}
	})
}

// enter admits a Go call on the queues (false once they are closed); leave
// must follow when it is done.
func (a *ASGIApp) enter() bool { return a.gate.enter() }

func (a *ASGIApp) leave() { a.gate.leave() }

// Close drains the app (on reload and stop): the requests in flight finish
// as the app writes them, WebSockets are told the server is going away,
// then the lifespan shutdown runs, the loop stops and the app is dropped.
// The drain has no bound of its own: the handler calls Abandon when
// Caddy's grace_period (or the stop bound) has passed. With requests in
// flight, Close returns at once on a reload (the new config serves
// meanwhile); at process exit it waits, so the lifespan shutdown runs
// before the process ends.
func (a *ASGIApp) Close() {
	if a.closing.Swap(true) {
		return
	}
	a.post(asgiEvent{kind: evShutdown})
	drained := a.inflight.Load() == 0
	if !drained && !processExiting() {
		go a.stopped(drained)
		return
	}
	a.stopped(drained)
}

// processExiting says whether the process is on its way out (the Caddy
// module sets it to caddy.Exiting): Close then waits for the app to stop.
var processExiting = func() bool { return false }

// Abandon ends the drain: the loop cancels every request still running
// (503 if nothing was sent, else an aborted response), and Go stops
// waiting for those it has not ended asgiAbandonGrace later.
func (a *ASGIApp) Abandon() {
	if a.abandoning.Swap(true) {
		return
	}
	close(a.abandonCalled)
	a.post(asgiEvent{kind: evAbandon})
	time.AfterFunc(asgiAbandonGrace, func() { close(a.abandoned) })
}

// stopped waits for the loop to end, then frees the app. While requests
// drain the wait is theirs (Abandon bounds it); after that, a loop that
// does not end within the lifespan shutdown's bound is left running.
func (a *ASGIApp) stopped(drained bool) {
	bound := a.opts.ShutdownTimeout + asgiAbandonGrace + 5*time.Second
	drainOver := a.abandonCalled
	if drained {
		drainOver = closedChan
	}
	select {
	case <-a.loopDone:
	case <-drainOver:
		select {
		case <-a.loopDone:
		case <-time.After(bound):
			a.logger.Error("ASGI event loop did not stop; leaving it running", zap.String("module_asgi", a.target))
			return
		}
	}
	asgiApps.remove(a.handle)
	// Requests of this app may still post as they finish: once closed, the
	// queues drop their events and write neither eventfd, which may then be
	// closed (a write to a closed fd number could land in whatever the kernel
	// reused it for). The queues themselves go when the last user left.
	a.gate.shut()
	C.caddysnake_aapp_close(a.queues)
	unix.Close(a.wakeFd)
	a.newsFile.Close()
	<-a.dispatchDone
	go func() {
		<-a.gate.drained
		C.caddysnake_aapp_free(a.queues)
	}()
	a.interp.release(a.obj)
	a.interp.end()
}

// post queues an event for the loop, waking it if it may be asleep. After
// Close nobody reads events any more, and they are dropped. A request
// event carries its whole body in body/bodyLen, if Go read it ahead.
func (a *ASGIApp) post(ev asgiEvent) {
	if !a.enter() {
		C.free(unsafe.Pointer(ev.body))
		return
	}
	defer a.leave()
	var data *C.char
	if len(ev.data) > 0 {
		data = (*C.char)(unsafe.Pointer(&ev.data[0]))
	}
	// The C side copies everything but a request's body, which it takes
	// over. It fails only once closed, or out of memory: the request then
	// waits for its client to leave or the app to stop.
	switch ev.kind {
	case evRequest, evWSConnect:
		s := &ev.req.strs
		bodyLen := C.int64_t(-1)
		if ev.body != nil {
			bodyLen = C.int64_t(ev.bodyLen)
		}
		C.caddysnake_aapp_post_request(a.queues, C.int(ev.kind), C.uintptr_t(ev.handle),
			(*C.char)(unsafe.Pointer(&s.buf[0])), C.size_t(len(s.buf)),
			(*C.int32_t)(unsafe.Pointer(&s.ends[0])), C.int(len(s.ends)), ev.body, bodyLen)
		return
	}
	flag := 0
	if ev.flag {
		flag = 1
	}
	if ev.kind == evWSClose {
		flag = ev.code
	}
	C.caddysnake_aapp_post(a.queues, C.int(ev.kind), C.uintptr_t(ev.handle), data, C.size_t(len(ev.data)), nil, 0,
		C.int(flag))
}

// go_asgi_ready reports the lifespan startup outcome.
//
//export go_asgi_ready
func go_asgi_ready(h C.uintptr_t, ok C.int, msg *C.char, n C.size_t) {
	if a := asgiApps.get(uintptr(h)); a != nil {
		var err error
		if ok == 0 {
			// The message says what failed (server.py prefixes the
			// lifespan's own failures): a loop that could not start is
			// no lifespan failure.
			err = errors.New(C.GoStringN(msg, C.int(n)))
		}
		a.signalReady(err)
	}
}

// go_asgi_stopped reports the lifespan shutdown outcome.
//
//export go_asgi_stopped
func go_asgi_stopped(h C.uintptr_t, ok C.int, msg *C.char, n C.size_t) {
	if a := asgiApps.get(uintptr(h)); a != nil && ok == 0 {
		a.logger.Error("ASGI lifespan shutdown failed", zap.String("module_asgi", a.target),
			zap.String("error", C.GoStringN(msg, C.int(n))))
	}
}
