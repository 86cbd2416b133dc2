package tests

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"
)

// eachMode runs body for in-process serving and for `processes 2` (mode
// is what to add to the python block). Once only when CADDYSNAKE_PROCESSES
// sets the mode for the whole suite: the harness adds it then.
func eachMode(t *testing.T, body func(t *testing.T, mode ...string)) {
	t.Helper()
	if os.Getenv("CADDYSNAKE_PROCESSES") != "" {
		body(t)
		return
	}
	t.Run("in-process", func(t *testing.T) { body(t) })
	t.Run("processes-2", func(t *testing.T) { body(t, "processes 2") })
}

// with is mode and extra directives together.
func with(mode []string, extra ...string) []string {
	return append(slices.Clone(mode), extra...)
}

// wsClose is one close asgi_ws.py's /record saw.
type wsClose struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// waitRecords polls /records until ok holds, at most 5 s. With worker
// processes each has its own records; the polls reach them in turn (ties
// in the least-busy pick rotate).
func waitRecords(t *testing.T, c *caddy, ok func([]wsClose) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var closes []wsClose
		json.Unmarshal(c.get(t, "/records", 200), &closes)
		if ok(closes) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app recorded %+v", closes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
