package engine

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func drainedNow(g *userGate) bool {
	select {
	case <-g.drained:
		return true
	default:
		return false
	}
}

// A gate admits users until shut, and says drained only once the last user
// admitted before shut has left: the C object it guards is freed then.
func TestUserGateDrainsAfterLastUser(t *testing.T) {
	g := newUserGate()
	if !g.enter() || !g.enter() {
		t.Fatal("an open gate refused a user")
	}
	if !g.shut() {
		t.Fatal("first shut reported the gate shut already")
	}
	if g.shut() {
		t.Error("second shut reported it shut the gate")
	}
	if g.enter() {
		t.Error("a shut gate admitted a user")
	}
	if drainedNow(&g) {
		t.Fatal("drained with two users inside")
	}
	g.leave()
	if drainedNow(&g) {
		t.Fatal("drained with one user inside")
	}
	g.leave()
	if !drainedNow(&g) {
		t.Fatal("not drained after the last user left")
	}
}

func TestUserGateShutWhileEmptyIsDrained(t *testing.T) {
	g := newUserGate()
	g.enter()
	g.leave() // a user came and went before shut: no early drained
	if drainedNow(&g) {
		t.Fatal("drained before shut")
	}
	g.shut()
	if !drainedNow(&g) {
		t.Fatal("an empty gate is not drained at shut")
	}
}

// Users racing shut: drained must never close while an admitted user is
// still inside (the refused ones never count).
func TestUserGateRacingShut(t *testing.T) {
	for round := 0; round < 50; round++ {
		g := newUserGate()
		var inside atomic.Int64
		var bad atomic.Bool
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for k := 0; k < 100; k++ {
					if !g.enter() {
						return
					}
					inside.Add(1)
					if drainedNow(&g) {
						bad.Store(true)
					}
					inside.Add(-1)
					g.leave()
				}
			}()
		}
		close(start)
		g.shut()
		select {
		case <-g.drained:
		case <-time.After(5 * time.Second):
			t.Fatal("never drained")
		}
		if n := inside.Load(); n != 0 {
			t.Fatalf("round %d: drained with %d users inside", round, n)
		}
		wg.Wait()
		if bad.Load() {
			t.Fatalf("round %d: a user inside saw the gate drained", round)
		}
	}
}
