package worker

import (
	"sync"
	"time"
)

// waitDeadline is a ResponseWriter's read or write deadline in the worker: a
// channel closed once it passes, which a wait for a body chunk or for
// credit selects on. A deadline in the past cuts a wait in progress, as
// the engine expects of a connection's (net.Pipe's pipeDeadline does the
// same).
type waitDeadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	passed chan struct{}
}

func newWaitDeadline() *waitDeadline { return &waitDeadline{passed: make(chan struct{})} }

// set arms the deadline at t (zero: none).
func (d *waitDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.passed // the timer fired: wait for it to have closed passed
	}
	d.timer = nil
	closed := isClosed(d.passed)
	if t.IsZero() {
		if closed {
			d.passed = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.passed = make(chan struct{})
		}
		ch := d.passed
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.passed)
	}
}

// wait returns the channel closed when the deadline passes.
func (d *waitDeadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

// stop drops the timer, if any (the stream is over).
func (d *waitDeadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
