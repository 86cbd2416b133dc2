package tests

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// WebSocket over HTTP/2 (RFC 8441): with GODEBUG=http2xconnect=1 Go's
// HTTP/2 server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, and an
// extended CONNECT with :protocol websocket reaches the ASGI app as a
// WebSocket; the frames travel on the stream.
func TestWebSocketOverHTTP2(t *testing.T) {
	eachMode(t, func(t *testing.T, mode ...string) {
		c := startCaddy(t, `https://127.0.0.1:{{PORT}} {
	tls internal
	python {
		module_asgi "asgi_ws:app"
		working_dir {{APPS}}
		`+strings.Join(mode, "\n")+`
	}
}
`, siteOpts{tls: true, env: []string{"GODEBUG=http2xconnect=1"}})
		tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		getOnceCertReady(t, client, "https://"+c.Addr()+"/records").Body.Close()

		open := func(t *testing.T, path string) (*rawWS, *io.PipeWriter) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			t.Cleanup(cancel)
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+c.Addr()+path, pr)
			req.Header.Set(":protocol", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Protocol", "chat")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("extended CONNECT: %v", err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
				t.Fatalf("extended CONNECT answered %s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "chat" || resp.Header.Get("X-Ws-App") != "asgi_ws" {
				t.Fatalf("Sec-WebSocket-Protocol %q, X-Ws-App %q", got, resp.Header.Get("X-Ws-App"))
			}
			if resp.Header.Get("Sec-WebSocket-Accept") != "" || resp.Header.Get("Upgrade") != "" {
				t.Fatalf("HTTP/1.1 upgrade headers in an HTTP/2 answer: %v", resp.Header)
			}
			return &rawWS{t: t, w: pw, br: bufio.NewReader(resp.Body), resp: resp}, pw
		}

		t.Run("echo", func(t *testing.T) {
			ws, _ := open(t, "/echo")
			for _, msg := range []string{"over h2", "again"} {
				ws.frame(true, 0x1, []byte(msg))
				op, p, err := ws.read(10 * time.Second)
				if err != nil || op != 0x1 || string(p) != msg {
					t.Fatalf("echo: op %d %q %v, want %q", op, p, err, msg)
				}
			}
		})

		t.Run("close handshake", func(t *testing.T) {
			ws, _ := open(t, "/echo")
			ws.frame(true, 0x1, []byte("close"))
			if code := ws.closeCode(10 * time.Second); code != 4001 {
				t.Fatalf("close code %d, want the app's 4001", code)
			}
		})

		t.Run("invalid UTF-8 fails with 1007", func(t *testing.T) {
			ws, _ := open(t, "/echo")
			ws.frame(true, 0x1, []byte{0xff})
			if code := ws.closeCode(10 * time.Second); code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
		})
	})
}
