package worker

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// A WebSocket through the worker's loop, Caddy's part played frame by
// frame: the accept and its answer, a message in two pieces echoed (and
// credited), the client's close, then the connection dropped and the end.
func TestWorkerWebSocketFrames(t *testing.T) {
	c := startReady(t, asgiConfig(t))
	h := http.Header{}
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Version", "13")
	h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	h.Set("Sec-WebSocket-Protocol", "chat")
	c.request(1, http.MethodGet, "/ws", 0, h)
	c.send(FrameBodyEnd, 0, 1)

	f := c.next(10 * time.Second)
	if f.Type != FrameWSAccept || f.Stream != 1 {
		t.Fatalf("frame %d on stream %d, want FrameWSAccept", f.Type, f.Stream)
	}
	d := &Decoder{B: f.Payload}
	sub, _ := d.Str(), d.Str()
	hi, lo := d.U32(), d.U32()
	accHeader := DecodeHeader(d)
	if d.Err != nil || sub != "chat" || accHeader.Get("X-Ws") != "yes" || int64(hi)<<32|int64(lo) != engine.DefaultWSMaxMessage {
		t.Fatalf("accept: subprotocol %q, header %v, max %d, %v", sub, accHeader, int64(hi)<<32|int64(lo), d.Err)
	}
	var e Encoder
	e.U32(wsAccepted)
	e.Str("")
	c.send(FrameWSAccepted, 0, 1, e.B)
	c.send(FrameWSMessage, FlagText|FlagMore, 1, []byte("hel"))
	c.send(FrameWSMessage, FlagText, 1, []byte("lo"))

	credited, echoed := 0, ""
	for credited == 0 || echoed == "" {
		f := c.next(10 * time.Second)
		switch f.Type {
		case FrameWSCredit:
			d := &Decoder{B: f.Payload}
			credited += int(d.U32())
		case FrameWSSend:
			d := &Decoder{B: f.Payload}
			seq := d.U32()
			if f.Flags&FlagText == 0 || f.Flags&FlagMore != 0 {
				t.Fatalf("echo flags %#x", f.Flags)
			}
			echoed = string(d.B)
			var done Encoder
			done.U32(seq)
			done.U32(1)
			c.send(FrameWSDone, 0, 1, done.B)
		default:
			t.Fatalf("frame %d while echoing", f.Type)
		}
	}
	if credited != 1 || echoed != "hello" {
		t.Fatalf("credited %d, echoed %q; want 1 and the two pieces as one message", credited, echoed)
	}

	var end Encoder
	end.U32(1000)
	end.Str("bye")
	c.send(FrameWSEnd, 0, 1, end.B)
	dropped := false
	for {
		f := c.next(10 * time.Second)
		switch f.Type {
		case FrameWSClose:
			d := &Decoder{B: f.Payload}
			seq, code := d.U32(), d.U32()
			if f.Flags&FlagNow != 0 {
				dropped = true
				continue
			}
			t.Errorf("close %d sent after the client's close", code)
			var done Encoder
			done.U32(seq)
			done.U32(1)
			c.send(FrameWSDone, 0, 1, done.B)
		case FrameEnd:
			if err := DecodeEnd(f.Payload); err != nil || !dropped {
				t.Fatalf("end %v, connection dropped %v; want nil after the drop", err, dropped)
			}
			return
		default:
			t.Fatalf("frame %d after the client's close", f.Type)
		}
	}
}
