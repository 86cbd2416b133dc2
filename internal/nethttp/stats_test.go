package nethttp

import (
	"errors"
	"fmt"
	"testing"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// countEnd counts each outcome once, in its class and in its own counter:
// a worker's busy 503 arrives as text only, and must count as busy too.
func TestCountEnd(t *testing.T) {
	var s engine.Stats
	outcomes := []struct {
		sent int
		err  error
	}{
		{0, &engine.Error{Status: 503, Err: fmt.Errorf("queued: %w", engine.ErrBusy)}},
		{0, &engine.Error{Status: 503, Err: errors.New(engine.ErrBusy.Error())}}, // from a worker process
		{0, &engine.Error{Status: 503, Err: engine.ErrStopped}},                  // not busy
		{0, &engine.Error{Status: 504, Err: errors.New("request_timeout")}},
		{0, &engine.Error{Status: 408, Err: errors.New("request_body_timeout")}},
		{200, engine.ErrAbort}, // aborted mid-response: its status went out
		{0, errors.New("no status")},
		{101, nil},
		{0, nil}, // nothing sent, no error: no class
	}
	for _, o := range outcomes {
		s.InFlight.Add(1)
		countEnd(&s, nil, o.sent, o.err)
	}
	got := fmt.Sprint(s.Busy.Load(), s.Timeouts.Load(), s.BodyTimeouts.Load(), s.InFlight.Load(),
		s.Requests[0].Load(), s.Requests[1].Load(), s.Requests[2].Load(), s.Requests[4].Load(), s.Requests[5].Load())
	// busy timeouts bodyTimeouts inFlight | other 1xx 2xx 4xx 5xx
	if want := "2 1 1 0 1 1 1 1 5"; got != want {
		t.Errorf("counts %s, want %s", got, want)
	}
}
