package tests

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// RFC 6455 conformance the Autobahn cases check (tests/autobahn runs them
// all); these pin the behaviours the server adds to coder/websocket, with a
// raw client that writes frames byte by byte.

// rawWS is a client connection past the handshake.
type rawWS struct {
	t        *testing.T
	w        io.Writer
	br       *bufio.Reader
	resp     *http.Response
	deadline func(time.Time) // of reads; nil: none (an HTTP/2 stream)
	rsv1     bool            // of the last frame read: compressed (RFC 7692)
}

func rawWSDial(t *testing.T, c *caddy, path string, headers ...string) *rawWS {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
		path, c.Addr(), base64.StdEncoding.EncodeToString(key), strings.Join(headers, ""))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	ws := &rawWS{t: t, w: conn, br: br, deadline: func(d time.Time) { conn.SetReadDeadline(d) }}
	if err == nil {
		ws.resp = resp // else nil: no answer
	}
	return ws
}

// frame writes one masked frame.
func (ws *rawWS) frame(fin bool, opcode byte, payload []byte) {
	ws.t.Helper()
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	hdr = append(hdr, key...)
	masked := make([]byte, len(payload))
	for i := range payload {
		masked[i] = payload[i] ^ key[i%4]
	}
	if _, err := ws.w.Write(append(hdr, masked...)); err != nil {
		ws.t.Fatalf("write frame: %v", err)
	}
}

// read returns the server's next frame (servers do not mask).
func (ws *rawWS) read(timeout time.Duration) (opcode byte, payload []byte, err error) {
	if ws.deadline != nil {
		ws.deadline(time.Now().Add(timeout))
	}
	var h [2]byte
	if _, err = io.ReadFull(ws.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int64(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		if _, err = io.ReadFull(ws.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err = io.ReadFull(ws.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(ws.br, payload)
	ws.rsv1 = h[0]&0x40 != 0
	return h[0] & 0x0F, payload, err
}

// closeCode reads frames until the server's close frame and returns its code.
func (ws *rawWS) closeCode(timeout time.Duration) int {
	ws.t.Helper()
	deadline := time.Now().Add(timeout)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		op, p, err := ws.read(time.Until(deadline))
		if err != nil {
			ws.t.Fatalf("no close frame from the server: %v", err)
		}
		if op == 0x8 {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
	ws.t.Fatalf("no close frame within %v", timeout)
	return 0
}

func closePayload(code int, reason []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func TestWebSocketInvalidUTF8(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))

		t.Run("text message with invalid UTF-8 fails the connection with 1007", func(t *testing.T) {
			ws := rawWSDial(t, c, "/echo")
			ws.frame(true, 0x1, []byte("valid, then \xed\xa0\x80 a surrogate"))
			if code := ws.closeCode(5 * time.Second); code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
		})

		t.Run("fragmented: fails on the bad fragment, before the message ends", func(t *testing.T) {
			ws := rawWSDial(t, c, "/echo")
			ws.frame(false, 0x1, []byte("κόσμε"))
			ws.frame(false, 0x0, []byte{0xF4, 0x90, 0x80, 0x80}) // past U+10FFFF
			// No final fragment: the server must not wait for one.
			if code := ws.closeCode(3 * time.Second); code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
		})

		t.Run("a sequence split across fragments is valid", func(t *testing.T) {
			ws := rawWSDial(t, c, "/echo")
			ws.frame(false, 0x1, []byte("a\xce"))
			ws.frame(false, 0x0, []byte("\xba\xe1"))
			ws.frame(true, 0x0, []byte("\xbd\xb9z"))
			op, p, err := ws.read(5 * time.Second)
			if err != nil || op != 0x1 || string(p) != "aκόz" {
				t.Fatalf("echo: op %d %q %v", op, p, err)
			}
		})

		t.Run("message ending inside a sequence fails with 1007", func(t *testing.T) {
			ws := rawWSDial(t, c, "/echo")
			ws.frame(true, 0x1, []byte("abc\xe2\x82"))
			if code := ws.closeCode(5 * time.Second); code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
		})

		t.Run("close reason with invalid UTF-8 is answered with 1007, not echoed", func(t *testing.T) {
			ws := rawWSDial(t, c, "/record")
			ws.frame(true, 0x8, closePayload(1000, []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")))
			if code := ws.closeCode(5 * time.Second); code != 1002 && code != 1007 {
				t.Fatalf("close code %d, want 1002 or 1007", code)
			}
		})

		t.Run("binary messages are not checked", func(t *testing.T) {
			ws := rawWSDial(t, c, "/echo")
			ws.frame(true, 0x2, []byte{0xff, 0xfe, 0xed, 0xa0, 0x80})
			op, p, err := ws.read(5 * time.Second)
			if err != nil || op != 0x2 || len(p) != 5 {
				t.Fatalf("echo: op %d %x %v", op, p, err)
			}
		})

		// The app was told: its disconnect carried 1007 (the /record session).
		waitRecords(t, c, func(closes []wsClose) bool { return len(closes) == 1 && closes[0].Code == 1007 })
	})
}

func TestWebSocketCompression(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		dial := func(t *testing.T, c *caddy) (*websocket.Conn, *http.Response) {
			return wsDial(t, wsURL(c, "/echo"), &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
		}
		t.Run("negotiated by default, messages echo", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
			conn, resp := dial(t, c)
			defer conn.CloseNow()
			// The default keeps no context: no compressor held per connection.
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") ||
				!strings.Contains(ext, "server_no_context_takeover") || !strings.Contains(ext, "client_no_context_takeover") {
				t.Fatalf("Sec-WebSocket-Extensions %q, want permessage-deflate without context takeover", ext)
			}
			for _, msg := range []string{"", "hi", strings.Repeat("compress me ", 1000)} {
				if got := wsEcho(t, conn, websocket.MessageText, []byte(msg)); string(got) != msg {
					t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
				}
			}
		})
		t.Run("client_no_context_takeover is honoured", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
			ws := rawWSDial(t, c, "/echo", "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits\r\n")
			if ws.resp == nil || ws.resp.StatusCode != 101 {
				t.Fatalf("handshake: %v", ws.resp)
			}
			if ext := ws.resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "client_no_context_takeover") {
				t.Fatalf("Sec-WebSocket-Extensions %q", ext)
			}
		})
		t.Run("server_max_window_bits below 15 is taken and kept to", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
			ws := rawWSDial(t, c, "/echo", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9; client_max_window_bits\r\n")
			if ws.resp == nil || ws.resp.StatusCode != 101 {
				t.Fatalf("handshake: %v", ws.resp)
			}
			if ext := ws.resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "server_max_window_bits=9") {
				t.Fatalf("Sec-WebSocket-Extensions %q, want the offer's server_max_window_bits=9 echoed", ext)
			}
			msg := strings.Repeat("a window of 512 bytes ", 100)
			for i := 0; i < 2; i++ {
				ws.frame(true, 0x1, []byte(msg))
				op, p, err := ws.read(5 * time.Second)
				if err != nil || op != 0x1 || !ws.rsv1 {
					t.Fatalf("echo: op %d, compressed %v, %v", op, ws.rsv1, err)
				}
				got, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p),
					bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
				if err != nil || string(got) != msg {
					t.Fatalf("inflated echo: %d bytes, %v", len(got), err)
				}
			}
		})
		t.Run("ws_compression context_takeover", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_ws:app", with(mode, "ws_compression context_takeover")...))
			conn, resp := dial(t, c)
			defer conn.CloseNow()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "permessage-deflate" {
				t.Fatalf("Sec-WebSocket-Extensions %q, want plain permessage-deflate", ext)
			}
			for i := 0; i < 3; i++ {
				msg := strings.Repeat("same again ", 50)
				if got := wsEcho(t, conn, websocket.MessageText, []byte(msg)); string(got) != msg {
					t.Fatalf("echo %d: %d bytes", i, len(got))
				}
			}
		})
		t.Run("ws_compression off", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_ws:app", with(mode, "ws_compression off")...))
			conn, resp := dial(t, c)
			defer conn.CloseNow()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
				t.Fatalf("Sec-WebSocket-Extensions %q with ws_compression off", ext)
			}
			if got := wsEcho(t, conn, websocket.MessageText, []byte("plain")); string(got) != "plain" {
				t.Fatalf("echo %q", got)
			}
		})
		t.Run("bad value fails validation", func(t *testing.T) {
			out, err := validate(t, asgiSite(t, "asgi_ws:app", with(mode, "ws_compression maybe")...))
			if err == nil || !strings.Contains(out, "ws_compression") {
				t.Fatalf("validate passed or did not name ws_compression: %v\n%s", err, out)
			}
		})
	})
}

func TestWebSocketUnofferedSubprotocolIsRefused(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, wsURL(c, "/unoffered"), &websocket.DialOptions{Subprotocols: []string{"amqp", "wamp"}})
		if err == nil {
			conn.CloseNow()
			t.Fatalf("handshake succeeded (status %d, subprotocol %q); the app chose xmpp, which was not offered",
				resp.StatusCode, conn.Subprotocol())
		}
		if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("the server switched protocols: %v", err)
		}
		if !c.waitLog(5*time.Second, "did not offer", `"subprotocol":"xmpp"`) {
			t.Fatalf("no log line naming the subprotocol:\n%s", c.Log())
		}
		// The server keeps serving WebSockets.
		ok, _ := wsDial(t, wsURL(c, "/echo"), nil)
		defer ok.CloseNow()
		if got := wsEcho(t, ok, websocket.MessageText, []byte("still here")); string(got) != "still here" {
			t.Fatalf("echo %q", got)
		}
	})
}
