package engine

import (
	"sync"
	"sync/atomic"
)

// userGate admits the Go calls on a C object that is freed on close: a WSGI
// app's lane, an ASGI app's queues. Requests of a replaced app still finish
// after close, so the object may go only once the last of them left.
type userGate struct {
	users       atomic.Int64
	closing     atomic.Bool
	drained     chan struct{} // closed once closing and nobody inside
	drainedOnce sync.Once
}

func newUserGate() userGate { return userGate{drained: make(chan struct{})} }

// enter admits one user (false once closing); leave must follow.
func (g *userGate) enter() bool {
	g.users.Add(1)
	if g.closing.Load() {
		g.leave()
		return false
	}
	return true
}

func (g *userGate) leave() {
	if g.users.Add(-1) == 0 && g.closing.Load() {
		g.drainedOnce.Do(func() { close(g.drained) })
	}
}

// shut stops admitting users; false if it was shut already. Users inside
// stay until they leave: wait for drained before freeing.
func (g *userGate) shut() bool {
	if g.closing.Swap(true) {
		return false
	}
	g.users.Add(1) // leave's check, for the case that nobody is inside
	g.leave()
	return true
}
