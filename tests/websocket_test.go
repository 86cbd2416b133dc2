package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func wsURL(c *caddy, path string) string { return "ws://" + c.Addr() + path }

func wsDial(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(32 << 20)
	return conn, resp
}

func wsEcho(t *testing.T, conn *websocket.Conn, typ websocket.MessageType, msg []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotTyp, got, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if gotTyp != typ {
		t.Fatalf("echo came back as %v, sent %v", gotTyp, typ)
	}
	return got
}

func TestWebSocketRawApp(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", with(mode, "ws_max_message 2MiB")...))

		t.Run("accept with subprotocol and headers, echo text and bytes", func(t *testing.T) {
			conn, resp := wsDial(t, wsURL(c, "/echo"), &websocket.DialOptions{Subprotocols: []string{"chat", "other"}})
			defer conn.CloseNow()
			if conn.Subprotocol() != "chat" || resp.Header.Get("X-Ws-App") != "asgi_ws" {
				t.Fatalf("subprotocol %q, X-Ws-App %q", conn.Subprotocol(), resp.Header.Get("X-Ws-App"))
			}
			if got := wsEcho(t, conn, websocket.MessageText, []byte("héllo")); string(got) != "héllo" {
				t.Fatalf("text echo %q", got)
			}
			bin := []byte{0, 1, 2, 255}
			if got := wsEcho(t, conn, websocket.MessageBinary, bin); !bytes.Equal(got, bin) {
				t.Fatalf("bytes echo %v", got)
			}
			big := bytes.Repeat([]byte("x"), 1<<20)
			if got := wsEcho(t, conn, websocket.MessageBinary, big); !bytes.Equal(got, big) {
				t.Fatalf("1 MiB echo came back as %d bytes", len(got))
			}
		})

		t.Run("app close reaches the client with code and reason", func(t *testing.T) {
			conn, _ := wsDial(t, wsURL(c, "/echo"), nil)
			defer conn.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn.Write(ctx, websocket.MessageText, []byte("close"))
			_, _, err := conn.Read(ctx)
			var ce websocket.CloseError
			if !errorsAs(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
				t.Fatalf("read after close: %v, want close 4001 bye", err)
			}
		})

		t.Run("message over ws_max_message closes with 1009", func(t *testing.T) {
			conn, _ := wsDial(t, wsURL(c, "/echo"), nil)
			defer conn.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn.Write(ctx, websocket.MessageBinary, bytes.Repeat([]byte("y"), 3<<20))
			_, _, err := conn.Read(ctx)
			if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
				t.Fatalf("after an oversized message: %v (close %d), want 1009", err, code)
			}
		})

		t.Run("client close code reaches the app", func(t *testing.T) {
			conn, _ := wsDial(t, wsURL(c, "/record"), nil)
			conn.Close(4002, "client-bye")
			waitRecords(t, c, func(closes []wsClose) bool {
				return len(closes) == 1 && closes[0].Code == 4002 && closes[0].Reason == "client-bye"
			})
		})

		t.Run("a client that vanishes reaches the app as 1006", func(t *testing.T) {
			conn, _ := wsDial(t, wsURL(c, "/record"), nil)
			conn.CloseNow()
			waitRecords(t, c, func(closes []wsClose) bool {
				return len(closes) > 0 && closes[len(closes)-1].Code == 1006
			})
		})

		for _, tc := range []struct {
			path   string
			status int
			body   string
		}{
			{"/reject", 403, ""},
			{"/deny", 418, "no websockets for you"},
			{"/fail", 500, ""},
		} {
			t.Run("handshake refused: "+tc.path, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				conn, resp, err := websocket.Dial(ctx, wsURL(c, tc.path), nil)
				if err == nil {
					conn.CloseNow()
					t.Fatal("handshake succeeded")
				}
				if resp == nil || resp.StatusCode != tc.status {
					t.Fatalf("response %v (%v), want status %d", resp, err, tc.status)
				}
				if tc.body != "" {
					b, _ := io.ReadAll(resp.Body)
					if string(b) != tc.body || resp.Header.Get("X-Denied") != "yes" {
						t.Fatalf("denial body %q header %q", b, resp.Header.Get("X-Denied"))
					}
				}
			})
		}
		if !c.waitLog(5*time.Second, "ws boom before accept", "Traceback") {
			t.Error("the exception before accept was not logged with its traceback")
		}
	})
}

// A thousand open WebSockets at once, each echoing its own index, on one
// event loop: no thread per connection.
func TestWebSocketThousandConcurrent(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
		const n = 1000
		conns := make([]*websocket.Conn, n)
		for i := range conns {
			conns[i], _ = wsDial(t, wsURL(c, "/echo"), nil)
			defer conns[i].CloseNow()
		}
		threads := c.threads(t)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, conn := range conns {
			wg.Add(1)
			go func(i int, conn *websocket.Conn) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				msg := fmt.Sprintf("message %d", i)
				for k := 0; k < 3; k++ {
					if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
						errs <- err
						return
					}
					if _, got, err := conn.Read(ctx); err != nil || string(got) != msg {
						errs <- fmt.Errorf("conn %d: got %q, %v", i, got, err)
						return
					}
				}
			}(i, conn)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("%d open WebSockets echoed 3 messages each in %v; caddy has %d threads", n, time.Since(start), threads)
		if threads > 200 {
			t.Errorf("%d threads with %d open WebSockets: connections must not need threads", threads, n)
		}
	})
}

func TestWebSocketFrameworks(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		requireVenv(t)
		t.Run("FastAPI", func(t *testing.T) {
			requireVenvPackage(t, "fastapi")
			c := startCaddy(t, asgiSite(t, "asgi_fastapi:app", mode...))
			conn, _ := wsDial(t, wsURL(c, "/ws"), nil)
			defer conn.CloseNow()
			if got := wsEcho(t, conn, websocket.MessageText, []byte(`{"n":1}`)); string(got) != `{"got":{"n":1}}` {
				t.Fatalf("got %s", got)
			}
		})
		t.Run("Starlette", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_starlette_ws:app", mode...))
			if b := c.get(t, "/hello", 200); !strings.Contains(string(b), `"framework":"starlette"`) {
				t.Fatalf("hello: %s", b)
			}
			conn, _ := wsDial(t, wsURL(c, "/ws"), nil)
			defer conn.CloseNow()
			if got := wsEcho(t, conn, websocket.MessageText, []byte("hi")); string(got) != "starlette: hi" {
				t.Fatalf("got %s", got)
			}
		})
		t.Run("Django Channels", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_channels:app", mode...))
			if b := c.get(t, "/hello", 200); !strings.Contains(string(b), `"framework": "django"`) {
				t.Fatalf("hello: %s", b)
			}
			conn, _ := wsDial(t, wsURL(c, "/ws"), nil)
			defer conn.CloseNow()
			if got := wsEcho(t, conn, websocket.MessageText, []byte("hi")); string(got) != "channels: hi" {
				t.Fatalf("got %s", got)
			}
		})
		t.Run("python-socketio", func(t *testing.T) {
			c := startCaddy(t, asgiSite(t, "asgi_socketio:app", mode...))
			conn, _ := wsDial(t, wsURL(c, "/socket.io/?EIO=4&transport=websocket"), nil)
			defer conn.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			read := func() string {
				_, b, err := conn.Read(ctx)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return string(b)
			}
			// Engine.IO v4: "0" opens the session, "40" joins the default
			// namespace, "42" carries an event.
			if open := read(); !strings.HasPrefix(open, "0{") {
				t.Fatalf("open packet %q", open)
			}
			conn.Write(ctx, websocket.MessageText, []byte("40"))
			if joined := read(); !strings.HasPrefix(joined, "40") {
				t.Fatalf("namespace packet %q", joined)
			}
			conn.Write(ctx, websocket.MessageText, []byte(`42["ping","hi"]`))
			if ev := read(); ev != `42["pong",{"echo":"hi"}]` {
				t.Fatalf("event %q", ev)
			}
		})
	})
}

func TestWebSocketSessionsDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 WebSocket sessions; skipped with -short")
	}
	c := startCaddy(t, asgiSite(t, "asgi_ws:app"))
	session := func() {
		conn, _ := wsDial(t, wsURL(c, "/echo"), nil)
		wsEcho(t, conn, websocket.MessageText, []byte("ping"))
		conn.Close(websocket.StatusNormalClosure, "")
	}
	sessions := func(n int) {
		var wg sync.WaitGroup
		work := make(chan struct{})
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					session()
				}
			}()
		}
		for i := 0; i < n; i++ {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
	}
	sessions(500)
	p0, rss0 := probe(t, c)
	start := time.Now()
	sessions(5000)
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // let the last sessions' tasks end
	p1, rss1 := probe(t, c)
	t.Logf("5000 WebSocket sessions in %v", elapsed.Round(time.Millisecond))
	t.Logf("python allocated blocks: %d -> %d (%+d); gc objects %d -> %d; RSS %.1f -> %.1f MiB",
		p0.Blocks, p1.Blocks, p1.Blocks-p0.Blocks, p0.GC, p1.GC, float64(rss0)/(1<<20), float64(rss1)/(1<<20))
	if d := p1.Blocks - p0.Blocks; d >= 2000 {
		t.Errorf("Python allocated blocks grew by %d over 5000 sessions (want < 2000)", d)
	}
	if d := rss1 - rss0; d >= 20<<20 && !asanRun() {
		t.Errorf("RSS grew by %.1f MiB over 5000 sessions (want < 20 MiB)", float64(d)/(1<<20))
	}
}

// A reload replaces the app: its open WebSockets are closed by the old
// app's shutdown (not left dangling), the reload does not wait out the
// shutdown timeout, and the new app serves new connections.
func TestWebSocketReloadClosesOpenConnections(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
		var conns []*websocket.Conn
		for i := 0; i < 5; i++ {
			conn, _ := wsDial(t, wsURL(c, "/echo"), nil)
			defer conn.CloseNow()
			wsEcho(t, conn, websocket.MessageText, []byte("before reload"))
			conns = append(conns, conn)
		}
		start := time.Now()
		c.reload(t, asgiSite(t, "asgi_ws:app", with(mode, "shutdown_timeout 20s")...))
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("reload with open WebSockets took %v", d)
		}
		for i, conn := range conns {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _, err := conn.Read(ctx)
			cancel()
			if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
				t.Errorf("connection %d: read after reload gave %v, want close 1001 (going away)", i, err)
			}
		}
		conn, _ := wsDial(t, wsURL(c, "/echo"), nil)
		defer conn.CloseNow()
		if got := wsEcho(t, conn, websocket.MessageText, []byte("after reload")); string(got) != "after reload" {
			t.Fatalf("new app echoed %q", got)
		}
	})
}

// The server answers pings itself (RFC 6455 5.5.2), without the app: the
// reader goroutine is in Read while it has credits.
func TestWebSocketPingIsAnsweredByTheServer(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
		conn, _ := wsDial(t, wsURL(c, "/record"), nil) // accepts, then only waits
		defer conn.CloseNow()
		ctx := conn.CloseRead(context.Background()) // our side reads, for the pongs
		for i := 0; i < 3; i++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
		}
	})
}

// A client that floods an app which reads nothing is held back: the
// server reads a bounded number of messages ahead (the credit window),
// then the client's writes wait in its socket.
func TestWebSocketFloodIsHeldBack(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, asgiSite(t, "asgi_ws:app", mode...))
		conn, _ := wsDial(t, wsURL(c, "/hold"), nil) // reads nothing for 5 s
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		msg := bytes.Repeat([]byte("f"), 1<<20)
		sent := 0
		for ; sent < 200; sent++ {
			if conn.Write(ctx, websocket.MessageBinary, msg) != nil {
				break
			}
		}
		t.Logf("%d messages of 1 MiB written before the writes stalled", sent)
		if sent >= 100 {
			t.Fatalf("%d MiB written to an app that reads nothing: no back-pressure", sent)
		}
	})
}
