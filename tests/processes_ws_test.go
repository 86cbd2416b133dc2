package tests

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A worker that dies with a WebSocket open closes it with 1011 (not a bare
// drop), and the app keeps serving WebSockets.
func TestProcessesWebSocketWorkerDies(t *testing.T) {
	c := startCaddy(t, procSite(t, true))
	conn, _ := wsDial(t, wsURL(c, "/ws"), nil)
	defer conn.CloseNow()
	if got := wsEcho(t, conn, websocket.MessageText, []byte("hi")); string(got) != "hi" {
		t.Fatalf("echo %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, []byte("exit")); err != nil {
		t.Fatal(err)
	}
	_, _, err := conn.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusInternalError {
		t.Fatalf("read after the worker died: %v (close %d), want 1011", err, code)
	}
	again, _ := wsDial(t, wsURL(c, "/ws"), nil)
	defer again.CloseNow()
	if got := wsEcho(t, again, websocket.MessageText, []byte("still")); string(got) != "still" {
		t.Fatalf("echo after the death %q", got)
	}
}
