package caddysnake

// #include "caddysnake.h"
import "C"

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the request slots, documented on the Handler fields.
const (
	// DefaultThreads: under the GIL only one thread runs Python at a time, so
	// more than one request in Python exists to overlap waiting (database,
	// upstream HTTP, slow clients); 16 covers typical I/O-bound apps.
	DefaultThreads = 16
	// DefaultMaxWait bounds how long a request queues for a free slot
	// before it gets 503: long enough to ride out a burst, short enough that
	// an overloaded app sheds load instead of piling up connections.
	DefaultMaxWait = 30 * time.Second
)

var (
	// ErrBusy: every slot stayed busy for max_wait.
	ErrBusy = errors.New("python: all threads are busy (raise threads or max_wait)")
	// ErrStopped: the app is being replaced or shut down.
	ErrStopped = errors.New("python: app is shutting down")
)

// pool bounds how many requests of one app run Python at once (`threads`).
//
// Python runs on the OS thread of the goroutine that serves the request: no
// hand-off to a dedicated thread and back. An earlier design kept a pool of
// locked OS threads fed through a channel; waking a locked thread and then
// the handler goroutine again cost two OS context switches and about 30% of
// the CPU of a hello-world request (pprof: startlockedm, notesleep, futex).
// Each OS thread keeps its own PyThreadState for the main interpreter
// (caddysnake.c), so thread-local Python state works as it does on any
// threaded server.
//
// The slots are workers in a buffered channel: taking one is the admission,
// and Go's channel wait queue is FIFO, so the waiting requests are the queue.
type pool struct {
	idle    chan *worker
	size    int
	stop    chan struct{}
	stopped atomic.Bool
	maxWait time.Duration
}

func newPool(threads int, maxWait time.Duration) *pool {
	p := &pool{idle: make(chan *worker, threads), size: threads, stop: make(chan struct{}), maxWait: maxWait}
	for i := 0; i < threads; i++ {
		p.idle <- newWorker()
	}
	return p
}

// acquire takes a free slot, waiting up to maxWait for one; the caller runs
// the request and gives the slot back with put.
func (p *pool) acquire(cancel <-chan struct{}) (*worker, error) {
	if p.stopped.Load() {
		return nil, ErrStopped
	}
	select {
	case w := <-p.idle: // a slot was free: the common, timer-free path
		return w, nil
	default:
	}
	t := time.NewTimer(p.maxWait)
	defer t.Stop()
	select {
	case w := <-p.idle:
		return w, nil
	case <-t.C:
		return nil, ErrBusy
	case <-cancel:
		return nil, errClientGone
	case <-p.stop:
		return nil, ErrStopped
	}
}

func (p *pool) put(w *worker) { p.idle <- w }

// close stops admitting requests and calls after() once every slot is back,
// without waiting for that: a long streaming response must not hold up a
// config reload.
func (p *pool) close(after func()) {
	if p.stopped.Swap(true) {
		return
	}
	close(p.stop)
	go func() {
		for i := 0; i < p.size; i++ {
			(<-p.idle).unregister()
		}
		after()
	}()
}

var errClientGone = errors.New("python: client went away while queued")

// worker is a request slot that callbacks from C reach through its handle.
// The handle carries a sequence number beside the slot index, so a stale
// handle (kept by a thread the app started) cannot touch a later request.
type worker struct {
	slot uint32
	seq  atomic.Uint32 // bumped per request
	cur  atomic.Pointer[wsgiRequest]
	strs cStrings  // the request laid out for C, reused (wsgi.go)
	out  *C.cs_out // a whole response copied out by C, reused (wsgi.go)
}

// Room in a worker's cs_out: a response larger than this, or with more
// headers, is written through go_write instead.
const (
	wholeResponseBytes   = 32 << 10
	wholeResponseStrings = 2*63 + 1
)

const slotBits = 24

func (w *worker) handle() uintptr {
	return uintptr(w.seq.Load())<<slotBits | uintptr(w.slot)
}

// workers maps slots to workers. Lookups happen on every callback, so the
// table is an immutable slice swapped on (rare) registration.
var workers struct {
	mu    sync.Mutex
	table atomic.Pointer[[]*worker]
	free  []uint32
}

func newWorker() *worker {
	w := &worker{out: C.caddysnake_out_new(wholeResponseBytes, wholeResponseStrings)}
	if w.out == nil {
		panic("python: out of memory for a response buffer")
	}
	workers.mu.Lock()
	defer workers.mu.Unlock()
	old := workers.table.Load()
	var table []*worker
	if old != nil {
		table = *old
	}
	if n := len(workers.free); n > 0 {
		w.slot = workers.free[n-1]
		workers.free = workers.free[:n-1]
	} else {
		w.slot = uint32(len(table)) + 1 // slot 0 is "no request"
	}
	next := make([]*worker, max(len(table), int(w.slot)+1))
	copy(next, table)
	next[w.slot] = w
	workers.table.Store(&next)
	return w
}

func (w *worker) unregister() {
	C.caddysnake_out_free(w.out)
	w.out = nil
	workers.mu.Lock()
	defer workers.mu.Unlock()
	table := *workers.table.Load()
	next := make([]*worker, len(table))
	copy(next, table)
	next[w.slot] = nil
	workers.table.Store(&next)
	workers.free = append(workers.free, w.slot)
}

// requestOf finds the request a C callback is about, or nil if the handle is
// stale or unknown.
func requestOf(h uintptr) *wsgiRequest {
	slot := uint32(h & (1<<slotBits - 1))
	tp := workers.table.Load()
	if tp == nil || int(slot) >= len(*tp) {
		return nil
	}
	w := (*tp)[slot]
	if w == nil || uint32(h>>slotBits) != w.seq.Load() {
		return nil
	}
	return w.cur.Load()
}
