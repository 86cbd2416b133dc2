package caddysnake

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// closeCounter is an engine.App that answers 200 and counts Close calls.
type closeCounter struct{ closed atomic.Int32 }

func (a *closeCounter) Serve(_ *engine.Request, w engine.ResponseWriter) error {
	w.WriteHeader(http.StatusOK)
	return nil
}
func (a *closeCounter) Close()   { a.closed.Add(1) }
func (a *closeCounter) Abandon() {}

// A reload cleans the old handler up before its servers finished: with
// worker processes the app stays open until requests stopped coming, so
// one that arrives just after Cleanup is served; in process (and for an
// app that never served) it closes at once.
func TestCleanupOnReloadWaitsForLateRequests(t *testing.T) {
	for _, tc := range []struct {
		name      string
		processes int
		served    bool
		atOnce    bool
	}{
		{"processes, served", 2, true, false},
		{"processes, never served", 2, false, true},
		{"in process", 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &closeCounter{}
			h := &Handler{Processes: tc.processes, app: app, stop: &stopper{bound: 5 * time.Second}}
			defer func() {
				if h.stop.timer != nil {
					h.stop.timer.Stop()
				}
			}()
			if tc.served {
				h.stop.entered.Add(1)
			}
			if err := h.Cleanup(); err != nil {
				t.Fatal(err)
			}
			if got := app.closed.Load() == 1; got != tc.atOnce {
				t.Fatalf("closed at once: %v, want %v", got, tc.atOnce)
			}
			if tc.atOnce {
				return
			}
			// A late request still enters the handler while the app is open.
			time.Sleep(100 * time.Millisecond)
			h.stop.entered.Add(1)
			h.stop.inside.Add(1)
			time.Sleep(lateQuiet + 100*time.Millisecond)
			if app.closed.Load() != 0 {
				t.Fatal("the app closed while a request was inside")
			}
			h.stop.inside.Add(-1)
			deadline := time.Now().Add(2 * time.Second)
			for app.closed.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if app.closed.Load() != 1 {
				t.Fatalf("the app was closed %d times once quiet, want 1", app.closed.Load())
			}
		})
	}
}
