package caddysnake

// #include "caddysnake.h"
// #include <stdlib.h>
import "C"

import (
	"errors"
	"fmt"
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
// calls into Python per message: it appends events to the app's queue and
// wakes the loop through an eventfd, once per batch; the loop drains the
// queue in one call. Python never blocks on Go either: its calls only queue
// work for the request's goroutine (ServeHTTP), which writes to the client
// and reports completion as another event. So a slow client stalls only its
// own coroutine (send awaits the completion: backpressure), and thousands of
// connections need no more threads than one.

// Event kinds, shared with caddysnake.c (event_object) and asgi.py.
const (
	evRequest    = 0 // a new HTTP request: its scope parts
	evBody       = 1 // a request body chunk, answering one asgi_receive
	evDisconnect = 2 // the client went away (or its body was malformed)
	evSendDone   = 3 // a body, pathsend or trailers send finished (flag: ok)
	evShutdown   = 4
	evWSConnect  = 10 // a new WebSocket connection: its scope parts
	evWSMessage  = 11 // a message (flag: text)
	evWSClose    = 12 // the client closed (flag: code, data: reason)
)

// Result codes of asgi_finish.
const (
	asgiComplete         = 0
	asgiFailedBeforeSend = 1
	asgiFailedAfterSend  = 2
	asgiClientGone       = 3
)

// ASGI defaults, documented on the Handler fields.
const (
	DefaultStartupTimeout  = 60 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	// asgiBodyChunk is how much of a request body one receive() gets at most:
	// big enough to keep crossings rare, small enough to bound memory per
	// request (nothing is read ahead of the app).
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
	Venv            string
	Lifespan        string // "on", "off" or "auto"
	Loop            string // "asyncio", "uvloop" or "auto"
	StartupTimeout  time.Duration
	ShutdownTimeout time.Duration
	WSMaxMessage    int64 // bytes; a larger incoming message closes with 1009
}

// ASGIApp is one imported ASGI app and the event loop that runs it.
type ASGIApp struct {
	target  string
	interp  *interpreter
	opts    ASGIOptions
	obj     *C.PyObject
	handle  uintptr
	wakeFd  int // the eventfd the loop waits on; -1 once closed (guarded by mu after start)
	logger  *zap.Logger
	closing atomic.Bool

	mu       sync.Mutex
	queue    []asgiEvent
	signaled bool // the eventfd was written and the loop has not drained yet

	// drainPin pins the Go memory the last drained batch points C to; the
	// loop copies it before it drains again, so the next drain unpins it.
	// Only the loop thread touches it.
	drainPin runtime.Pinner

	ready     chan error // lifespan startup outcome, once
	readyOnce sync.Once
	loopDone  chan struct{}
}

type asgiEvent struct {
	kind   int
	handle uintptr
	req    *asgiRequest // evRequest: whose strings to hand over
	data   []byte       // evBody: pinned by the request
	flag   bool
	code   int // evWSClose
}

// LoadASGI imports the app into it, starts its event loop thread and waits
// for the lifespan startup to finish. The app owns it from then on: Close
// (or a failed load) ends a sub-interpreter.
func LoadASGI(it *interpreter, opts ASGIOptions, logger *zap.Logger) (*ASGIApp, error) {
	obj, err := it.loadApp(opts.Target, opts.WorkingDir, opts.Venv)
	if err != nil {
		it.end()
		return nil, err
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		it.release(obj)
		it.end()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	a := &ASGIApp{target: opts.Target, interp: it, opts: opts, obj: obj, wakeFd: fd, logger: logger,
		ready: make(chan error, 1), loopDone: make(chan struct{})}
	a.handle = asgiApps.add(a)
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
	lifespan, loop := C.CString(a.opts.Lifespan), C.CString(a.opts.Loop)
	defer freeAll(lifespan, loop)
	cerr := C.caddysnake_asgi_run(a.interp.ci, ts, a.obj, C.uintptr_t(a.handle), C.int(a.wakeFd), lifespan, loop,
		C.double(a.opts.StartupTimeout.Seconds()), C.double(a.opts.ShutdownTimeout.Seconds()))
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

// Close runs the lifespan shutdown, stops the loop and drops the app.
// Requests still in flight are cancelled by the loop on its way out.
func (a *ASGIApp) Close() {
	if a.closing.Swap(true) {
		return
	}
	a.post(asgiEvent{kind: evShutdown})
	select {
	case <-a.loopDone:
	case <-time.After(a.opts.ShutdownTimeout + 5*time.Second):
		a.logger.Error("ASGI event loop did not stop; leaving it running", zap.String("module_asgi", a.target))
		return
	}
	asgiApps.remove(a.handle)
	a.mu.Lock()
	unix.Close(a.wakeFd)
	a.wakeFd = -1
	a.queue = nil
	a.mu.Unlock()
	a.interp.release(a.obj)
	a.interp.end()
}

// post queues an event for the loop, waking it if it may be asleep. After
// Close nobody reads events any more, and they are dropped.
//
// The wake-up write happens under mu, as does closing the eventfd in Close:
// requests of a replaced app still post as they finish, and a write to the
// closed fd number could land in whatever the kernel reused it for; a client
// socket accepted meanwhile once received the 8 bytes of the counter.
func (a *ASGIApp) post(ev asgiEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wakeFd < 0 {
		return
	}
	a.queue = append(a.queue, ev)
	if a.signaled {
		return
	}
	a.signaled = true
	one := [8]byte{1} // eventfd takes a native-endian uint64: 1 on little-endian
	if _, err := unix.Write(a.wakeFd, one[:]); err != nil && err != unix.EAGAIN {
		a.logger.Error("waking the ASGI loop failed", zap.Error(err))
	}
}

// go_asgi_drain moves up to n queued events into evs for the loop.
//
//export go_asgi_drain
func go_asgi_drain(h C.uintptr_t, evs *C.cs_event, n C.int) C.int {
	a := asgiApps.get(uintptr(h))
	if a == nil {
		return 0
	}
	out := unsafe.Slice(evs, int(n))
	a.drainPin.Unpin()
	a.mu.Lock()
	k := min(len(a.queue), int(n))
	for i, ev := range a.queue[:k] {
		o := &out[i]
		*o = C.cs_event{kind: C.int(ev.kind), req: C.uintptr_t(ev.handle)}
		if ev.flag {
			o.flag = 1
		}
		switch ev.kind {
		case evRequest, evWSConnect:
			a.drainPin.Pin(&ev.req.strs.buf[0])
			a.drainPin.Pin(&ev.req.strs.ends[0])
			o.data = (*C.char)(unsafe.Pointer(&ev.req.strs.buf[0]))
			o.len = C.size_t(len(ev.req.strs.buf))
			o.ends = (*C.int32_t)(unsafe.Pointer(&ev.req.strs.ends[0]))
			o.n = C.int(len(ev.req.strs.ends))
		case evBody, evWSMessage, evWSClose:
			if len(ev.data) > 0 {
				a.drainPin.Pin(&ev.data[0])
				o.data = (*C.char)(unsafe.Pointer(&ev.data[0]))
				o.len = C.size_t(len(ev.data))
			}
			if ev.kind == evWSClose {
				o.flag = C.int(ev.code)
			}
		}
	}
	rest := copy(a.queue, a.queue[k:])
	clear(a.queue[rest:])
	a.queue = a.queue[:rest]
	if rest == 0 {
		a.signaled = false
	}
	a.mu.Unlock()
	return C.int(k)
}

// go_asgi_ready reports the lifespan startup outcome.
//
//export go_asgi_ready
func go_asgi_ready(h C.uintptr_t, ok C.int, msg *C.char, n C.size_t) {
	if a := asgiApps.get(uintptr(h)); a != nil {
		var err error
		if ok == 0 {
			err = fmt.Errorf("lifespan startup failed: %s", C.GoStringN(msg, C.int(n)))
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
