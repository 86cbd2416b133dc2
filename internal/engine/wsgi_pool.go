package engine

// #include "wsgi_lanes.h"
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Defaults of the worker threads and the queue, documented on the Handler
// fields.
const (
	// DefaultThreads: under the GIL only one thread runs Python at a time, so
	// more than one request in Python exists to overlap waiting (database,
	// upstream HTTP, slow clients); 16 covers typical I/O-bound apps.
	DefaultThreads = 16
	// DefaultMaxWait bounds how long a request queues for a worker thread
	// before it gets 503: long enough to ride out a burst, short enough that
	// an overloaded app sheds load instead of piling up connections.
	DefaultMaxWait = 30 * time.Second
)

var (
	// ErrBusy: no worker thread took the request within max_wait.
	ErrBusy = errors.New("python: all threads are busy (raise threads or max_wait)")
	// ErrStopped: the app is being replaced or shut down.
	ErrStopped = errors.New("python: app is shutting down")
)

// pool runs an app's WSGI requests on its Python worker threads (wsgi_lanes.c,
// which says why Python does not run on the serving goroutine's thread):
// `threads` goroutines each lend their OS thread to caddysnake_lane_work for
// the pool's life. A request goroutine lays its request out in a slot
// (handle, C job, reply channel), queues it and waits;
// one dispatcher goroutine, woken through an eventfd in Go's netpoller,
// hands finished jobs back. Each worker thread keeps its own PyThreadState,
// so thread-local Python state works as on any threaded server.
type pool struct {
	lane     *C.cs_lane
	interp   *interpreter // the app's: frees the lane on its owner thread
	doneFile *os.File     // the eventfd the lane writes when jobs finish
	maxWait  time.Duration
	timeout  time.Duration // request_timeout; 0: off (wsgi_timeouts.go)

	threads      sync.WaitGroup // the worker threads
	dispatchDone chan struct{}
	gate         userGate // requests using the lane

	freeMu sync.Mutex
	free   []*slot // idle request slots, reused
	closed bool    // under freeMu: put frees instead of keeping

	watch watchState // wsgi_timeouts.go

	probing probing // wsgi_stats.go
	stats   *Stats  // nil: none
}

func newPool(it *interpreter, app *C.PyObject, threads int, maxWait, timeout time.Duration) (*pool, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	lane := C.caddysnake_lane_new(it.ci, app, C.int(fd), C.int(threads))
	if lane == nil {
		unix.Close(fd)
		return nil, errors.New("python: out of memory for a request queue")
	}
	// A non-blocking fd: os.NewFile hands it to the netpoller, so the
	// dispatcher's Read parks a goroutine, not a thread.
	p := &pool{lane: lane, interp: it, doneFile: os.NewFile(uintptr(fd), "wsgi-done"),
		maxWait: maxWait, timeout: timeout, dispatchDone: make(chan struct{}), gate: newUserGate()}
	p.spawn(threads)
	go p.dispatch()
	p.startWatch()
	return p, nil
}

// spawn starts n worker threads: `threads` at first, and later the ones
// the lane asks for (a thread written off, or every thread waiting on a
// request body). p.threads counts them until they leave, or until they are
// written off (collect counts those out: close must not wait for them).
func (p *pool) spawn(n int) {
	for i := 0; i < n; i++ {
		p.threads.Add(1)
		go func() {
			// No LockOSThread needed: the call never returns before stop, and
			// C's calls back into Go run on this same thread.
			if C.caddysnake_lane_work(p.lane) == 0 {
				p.threads.Done()
			}
		}()
	}
}

// dispatch wakes the goroutines of jobs with news (frames to send, or the
// end), as many as there are per wake-up, until the eventfd is closed (by
// close, once no worker thread is left).
func (p *pool) dispatch() {
	defer close(p.dispatchDone)
	dispatchNews(p.doneFile, func(out *C.uintptr_t, max C.int) C.int {
		return C.caddysnake_lane_take_done(p.lane, out, max)
	}, func(h uintptr) {
		if s := slotOf(h); s != nil {
			nudge(s.news)
		}
	})
}

// enter admits a request to the lane (false once the pool is closing); it
// must leave when it is done with the lane, its slot put back. A request
// may still call into the lane while close has stopped the threads: close
// frees the lane only after the last one left.
func (p *pool) enter() bool { return p.gate.enter() }

func (p *pool) leave() { p.gate.leave() }

// get takes an idle slot or makes one.
func (p *pool) get() *slot {
	p.freeMu.Lock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		p.freeMu.Unlock()
		return s
	}
	p.freeMu.Unlock()
	return newSlot(p)
}

// put gives a slot back once its request is over; a pool that is closed
// frees it. Beyond maxIdleSlots (a burst is over) it is freed too.
func (p *pool) put(s *slot) {
	p.freeMu.Lock()
	if !p.closed && len(p.free) < maxIdleSlots {
		p.free = append(p.free, s)
		p.freeMu.Unlock()
		return
	}
	if !p.closed {
		// Under freeMu, so close cannot free the lane meanwhile.
		C.caddysnake_lane_forget(p.lane, s.job)
	}
	p.freeMu.Unlock()
	s.unregister()
}

// maxIdleSlots bounds the slots kept between bursts (each keeps the C
// buffers its requests grew: up to 32 KiB of response, 64 KiB of body).
const maxIdleSlots = 256

// submit queues the request laid out in s (n strings, and bodyLen bytes of
// body in the job's buffer, or -1 for none) and waits until it runs; a
// request still queued after maxWait gets ErrBusy, and one whose client
// left while queued errClientGone (it never ran). Then the caller takes the
// job's output (wsgiRequest.collect).
func (p *pool) submit(s *slot, n int, bodyLen int, cancel <-chan struct{}) error {
	if p.gate.closing.Load() {
		return ErrStopped
	}
	spawn := C.caddysnake_lane_submit(p.lane, s.job, C.uintptr_t(s.handle()),
		(*C.char)(unsafe.Pointer(&s.strs.buf[0])), (*C.int32_t)(unsafe.Pointer(&s.strs.ends[0])), C.int(n),
		C.int64_t(bodyLen))
	if spawn < 0 {
		return ErrStopped // or out of memory, which a retry will not cure either
	}
	p.spawn(int(spawn))
	t := time.NewTimer(p.maxWait)
	defer t.Stop()
	var err error
	for err == nil {
		select {
		case <-s.news:
			if C.caddysnake_lane_started(p.lane, s.job) == 0 {
				continue // a stale wake-up from the slot's previous request
			}
			nudge(s.news) // put the wake-up back for collect
			return nil
		case <-t.C:
			err = ErrBusy
		case <-cancel:
			err = errClientGone
		case <-p.watch.abandon:
			err = ErrStopped
		}
	}
	if C.caddysnake_lane_cancel(p.lane, s.job) == 1 {
		return err
	}
	return nil // it runs: collect its output
}

// close stops admitting requests and calls after(false) once the queue is
// done and every worker thread has left Python, without waiting for that: a
// long streaming response must not hold up a config reload. If a thread
// written off (wsgi_timeouts.go) has not come back by then, the lane, its
// eventfd and the interpreter must stay: after(true) is called instead,
// and they are left behind.
func (p *pool) close(after func(leaked bool)) {
	if !p.gate.shut() {
		return
	}
	p.unobserve()
	C.caddysnake_lane_stop(p.lane)
	go func() {
		p.threads.Wait()
		// Every job is over or written off now, so lost only goes down.
		leaked := C.caddysnake_lane_lost(p.lane) > 0
		if !leaked {
			p.doneFile.Close() // the dispatcher takes what is left, then returns
			<-p.dispatchDone
		}
		<-p.gate.drained
		p.stopWatch()
		p.probing.mu.Lock() // no probe reads the lane any more
		p.probing.closed = true
		p.probing.mu.Unlock()
		p.freeMu.Lock()
		free := p.free
		p.free, p.closed = nil, true
		p.freeMu.Unlock()
		if !leaked {
			p.interp.do(func() { C.caddysnake_lane_free(p.lane) }) // drops kept bodies under the GIL
		}
		for _, w := range free {
			w.unregister()
		}
		after(leaked)
	}()
}

var errClientGone = errors.New("python: client went away while queued")

// slot is a Go-side request slot (a thread, in C, runs the request): C's
// job and the callbacks reach it through its handle.
// The handle carries a sequence number beside the slot index, so a stale
// handle (kept by a thread the app started) cannot touch a later request.
type slot struct {
	index uint32
	seq   atomic.Uint32 // bumped per request
	cur   atomic.Pointer[wsgiRequest]
	strs  cStrings      // the request laid out for C, reused (wsgi.go)
	job   *C.cs_job     // the lane's copy of it, and the response
	news  chan struct{} // cap 1: the job has frames or finished (dispatch)
	pool  *pool         // whose free list it goes back to

	timing // wsgi_timeouts.go

	track atomic.Pointer[Inflight] // the request's, while it runs (wsgi_stats.go)
}

// Room in a job's cs_out: a response larger than this, or with more
// headers, is written as frames instead (a bytes body of 16 to 256 KiB
// takes no room: Go sends it from the object, wsgi_bridge.c's send_whole;
// its headers still must fit).
const (
	wholeResponseBytes   = 32 << 10
	wholeResponseStrings = 2*63 + 1
)

const slotBits = 24

func (s *slot) handle() uintptr {
	return uintptr(s.seq.Load())<<slotBits | uintptr(s.index)
}

// slots maps handles' indexes to slots. Lookups happen on every callback, so
// the table is an immutable slice swapped on (rare) registration. Not
// handles.go's table: that one locks per lookup and adds and removes per
// request; a slot outlives its requests (seq renews its handle).
var slots struct {
	mu    sync.Mutex
	table atomic.Pointer[[]*slot]
	free  []uint32
}

func newSlot(p *pool) *slot {
	s := &slot{job: C.caddysnake_job_new(wholeResponseBytes, wholeResponseStrings), news: make(chan struct{}, 1), pool: p}
	if s.job == nil {
		panic("python: out of memory for a request slot")
	}
	slots.mu.Lock()
	defer slots.mu.Unlock()
	old := slots.table.Load()
	var table []*slot
	if old != nil {
		table = *old
	}
	if n := len(slots.free); n > 0 {
		s.index = slots.free[n-1]
		slots.free = slots.free[:n-1]
	} else {
		s.index = uint32(len(table)) + 1 // slot 0 is "no request"
	}
	next := make([]*slot, max(len(table), int(s.index)+1))
	copy(next, table)
	next[s.index] = s
	slots.table.Store(&next)
	return s
}

func (s *slot) unregister() {
	s.jobMu.Lock() // a late timeout interrupt may be about to read the job
	C.caddysnake_job_free(s.job)
	s.job = nil
	s.jobMu.Unlock()
	slots.mu.Lock()
	defer slots.mu.Unlock()
	table := *slots.table.Load()
	next := make([]*slot, len(table))
	copy(next, table)
	next[s.index] = nil
	slots.table.Store(&next)
	slots.free = append(slots.free, s.index)
}

// slotOf finds the slot of a handle, or nil if it is unknown or stale.
func slotOf(h uintptr) *slot {
	slot := uint32(h & (1<<slotBits - 1))
	tp := slots.table.Load()
	if tp == nil || int(slot) >= len(*tp) {
		return nil
	}
	s := (*tp)[slot]
	if s == nil || uint32(h>>slotBits) != s.seq.Load() {
		return nil
	}
	return s
}

// requestOf finds the request a C callback is about, or nil if the handle is
// stale or unknown.
func requestOf(h uintptr) *wsgiRequest {
	if s := slotOf(h); s != nil {
		return s.cur.Load()
	}
	return nil
}
