package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// The engine's entry point: App.Serve takes a Request and answers through a
// ResponseWriter, both filled in by a transport (internal/nethttp drives
// them from net/http). Nothing here needs net/http's server: a transport
// that receives requests already laid out (worker processes) implements
// the same two types. net/http's plain types (http.Header, status codes)
// are used as the vocabulary.

// Request is one request as the engine reads it.
type Request struct {
	Method string
	// Target is the request-target as received (for logs).
	Target string
	// Path is the decoded path the app sees (PATH_INFO): what follows the
	// mount prefix ScriptName. RawPath is the escaped path as received,
	// prefix included (ASGI raw_path).
	Path, RawPath string
	RawQuery      string
	// ScriptName is the mount prefix the server stripped before the
	// engine (Caddy's handle_path, uri strip_prefix); "" if none.
	ScriptName string
	// Proto is "HTTP/1.1" and the like, ProtoMajor and ProtoMinor its
	// numbers (HTTP/2: 2, 0).
	Proto                  string
	ProtoMajor, ProtoMinor int
	Host                   string
	Header                 http.Header
	// ContentLength is the body's length; -1: unknown (chunked, HTTP/2
	// without the field); 0: no body.
	ContentLength int64
	// RemoteAddr is the peer ("ip:port"); ClientIP the client as the server
	// resolved it behind trusted proxies ("": the peer).
	RemoteAddr, ClientIP string
	// LocalAddr is the listener's address, for the server port when Host
	// has none (it may be nil otherwise).
	LocalAddr net.Addr
	TLS       bool
	// Body is the request body; nil: none.
	Body io.ReadCloser
	// Done is closed when the client is gone (or the request is over).
	Done <-chan struct{}
	// Track, if set, is the request as the admin view lists it (a WSGI
	// pool's probe marks it running once a thread took it).
	Track *Inflight
}

// ResponseWriter answers a Request: net/http's three methods plus what the
// bridge needs of the connection under it. Its methods may be called from
// another goroutine than Serve's (a body reader, the timeout watcher) for
// the deadlines; the rest stays on Serve's goroutine or under its lock.
type ResponseWriter interface {
	Header() http.Header
	WriteHeader(status int)
	Write(p []byte) (int, error)
	// Flush sends what was written so far to the client.
	Flush() error
	// SendFile sends n bytes of f from its offset, letting the kernel copy
	// them (sendfile) where the connection allows it.
	SendFile(f *os.File, n int64) (int64, error)
	// SetReadDeadline bounds the body's reads (a zero t clears it); a
	// deadline in the past cuts a read in progress. SetWriteDeadline, the
	// same for writes.
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// EnableFullDuplex lets the body be read while the response is written
	// (HTTP/1 otherwise consumes the body when the response starts).
	EnableFullDuplex() error
	// CloseAfterResponse has the connection closed once the response is
	// written (what follows a body not read to its end cannot be parsed);
	// false if only a Connection: close header could be set.
	CloseAfterResponse() bool
	// AcceptWebSocket answers a WebSocket handshake (the headers set so
	// far go with it) and returns the connection.
	AcceptWebSocket(opts WebSocketOptions) (WebSocket, error)
}

// WebSocketOptions says how AcceptWebSocket negotiates.
type WebSocketOptions struct {
	Subprotocol string // the app's choice; "": none
	Compression string // the ws_compression setting (WSCompression*)
	MaxMessage  int64  // the largest incoming message
}

// WSCompression values (the ws_compression setting).
const (
	// Each message compressed on its own, with compressors pooled across
	// connections: an idle connection holds no compression state.
	WSCompressionOn  = "on"
	WSCompressionOff = "off"
	// The compression context kept across messages, as the client allows:
	// better ratios on repetitive traffic, but about 1.2 MB of compressor
	// per connection for as long as it is open.
	WSCompressionContextTakeover = "context_takeover"
)

// CheckWSCompression says whether s is a ws_compression value ("": on).
func CheckWSCompression(s string) error {
	switch s {
	case "", WSCompressionOn, WSCompressionOff, WSCompressionContextTakeover:
		return nil
	}
	return fmt.Errorf("ws_compression: expected on, off or context_takeover, got %q", s)
}

// WebSocket is an accepted WebSocket; its protocol (framing, UTF-8 and
// close checks, compression) is the transport's. ReadMessage is called on
// a goroutine of its own, the rest on Serve's.
type WebSocket interface {
	// ReadMessage returns the next message; once the connection ends, a
	// *CloseError with the close code (1006: none was received).
	ReadMessage(ctx context.Context) (text bool, data []byte, err error)
	WriteMessage(ctx context.Context, text bool, data []byte) error
	// Close sends a close frame with code and reason and waits a little
	// for the client's; CloseNow drops the connection.
	Close(code int, reason string) error
	CloseNow() error
}

// CloseError ends a WebSocket: the close code and reason received (or
// 1006 and "" when the connection ended without a close frame).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed: %d %s", e.Code, e.Reason)
}

// CloseOf is how a WebSocket read's err ended the connection: the close
// code and reason of a *CloseError, else 1006 (no close frame) and "".
func CloseOf(err error) (code int, reason string) {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	return WSAbnormalClosure, ""
}

// WebSocket close codes the engine sends (RFC 6455 7.4.1).
const (
	WSNormalClosure   = 1000
	WSGoingAway       = 1001
	WSAbnormalClosure = 1006
	WSInternalError   = 1011
)

// ErrSubprotocolNotOffered: AcceptWebSocket refused the app's subprotocol,
// which the client did not offer; the handshake was dropped.
var ErrSubprotocolNotOffered = errors.New("websocket subprotocol not offered by the client")

// serverAddr is SERVER_NAME and SERVER_PORT: the host the client asked for,
// and the port from Host or, when Host has none, the listener's.
func (r *Request) serverAddr(scheme string) (string, string) {
	if host, port, err := net.SplitHostPort(r.Host); err == nil {
		return host, port
	}
	host := strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]")
	if r.LocalAddr != nil {
		if _, port, err := net.SplitHostPort(r.LocalAddr.String()); err == nil {
			return host, port
		}
	}
	if scheme == "https" {
		return host, "443"
	}
	return host, "80"
}

// remoteAddr is the client as the server sees it: its client IP honours
// trusted_proxies; the port is known only when that IP is the direct peer.
func (r *Request) remoteAddr() (string, string) {
	ip := r.ClientIP
	peerHost, peerPort, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peerHost, peerPort = r.RemoteAddr, ""
	}
	if ip == "" || ip == peerHost {
		return peerHost, peerPort
	}
	return ip, ""
}
