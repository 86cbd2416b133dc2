package nethttp

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/caddysnake/caddysnake/internal/engine"
	"github.com/coder/websocket"
)

// RFC 6455 conformance that coder/websocket leaves to its user: UTF-8 of
// text messages and close reasons (section 8.1: fail the connection, 1007)
// and the subprotocol the app picks (4.2.2: one the client offered).

// compressionMode is coder/websocket's mode for a ws_compression setting
// (engine.CheckWSCompression checked it). Context takeover costs about
// 1.2 MB of compressor (compress/flate) per connection.
func compressionMode(s string) websocket.CompressionMode {
	switch s {
	case engine.WSCompressionOff:
		return websocket.CompressionDisabled
	case engine.WSCompressionContextTakeover:
		return websocket.CompressionContextTakeover
	}
	return websocket.CompressionNoContextTakeover
}

// utf8Stream validates UTF-8 arriving in pieces: a message's bytes as the
// frames come, so a bad byte fails the connection at once (Autobahn 6.4.x:
// "fail fast"), not when the last fragment arrives.
type utf8Stream struct {
	need   int  // continuation bytes still expected by the current sequence
	lo, hi byte // the range the next continuation byte must fall in
}

// step takes one byte; false if no valid UTF-8 can contain it here
// (RFC 3629 section 4: no overlongs, surrogates or code points past U+10FFFF).
func (u *utf8Stream) step(b byte) bool {
	if u.need > 0 {
		if b < u.lo || b > u.hi {
			return false
		}
		u.need--
		u.lo, u.hi = 0x80, 0xBF
		return true
	}
	switch {
	case b < 0x80:
	case b >= 0xC2 && b <= 0xDF:
		u.need, u.lo, u.hi = 1, 0x80, 0xBF
	case b == 0xE0:
		u.need, u.lo, u.hi = 2, 0xA0, 0xBF
	case b == 0xED:
		u.need, u.lo, u.hi = 2, 0x80, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		u.need, u.lo, u.hi = 2, 0x80, 0xBF
	case b == 0xF0:
		u.need, u.lo, u.hi = 3, 0x90, 0xBF
	case b >= 0xF1 && b <= 0xF3:
		u.need, u.lo, u.hi = 3, 0x80, 0xBF
	case b == 0xF4:
		u.need, u.lo, u.hi = 3, 0x80, 0x8F
	default:
		return false
	}
	return true
}

// write takes the next piece; false as soon as the stream cannot be UTF-8.
// The bulk goes through utf8.Valid; only a sequence split across pieces is
// walked byte by byte.
func (u *utf8Stream) write(p []byte) bool {
	for u.need > 0 && len(p) > 0 {
		if !u.step(p[0]) {
			return false
		}
		p = p[1:]
	}
	// Leave out a trailing sequence that may still be completed.
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if p[i] >= 0xC0 {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
		if p[i] < 0x80 {
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	for _, b := range p[cut:] {
		if !u.step(b) {
			return false
		}
	}
	return true
}

// complete: the stream did not stop inside a sequence.
func (u *utf8Stream) complete() bool { return u.need == 0 }

// errInvalidUTF8 ends a read whose text message is not UTF-8.
var errInvalidUTF8 = errors.New("text message is not valid UTF-8")

// readMessage reads one message, checking a text message's UTF-8 as it
// arrives. On invalid UTF-8 it fails the connection with 1007 and returns
// errInvalidUTF8.
func readMessage(ctx context.Context, conn *websocket.Conn) (websocket.MessageType, []byte, error) {
	typ, r, err := conn.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	var check utf8Stream
	text := typ == websocket.MessageText
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		if text && !check.write(buf[len(buf):len(buf)+n]) {
			conn.Close(websocket.StatusInvalidFramePayloadData, "invalid UTF-8")
			return 0, nil, errInvalidUTF8
		}
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, err
		}
	}
	if text && !check.complete() {
		conn.Close(websocket.StatusInvalidFramePayloadData, "invalid UTF-8")
		return 0, nil, errInvalidUTF8
	}
	return typ, buf, nil
}

// offeredSubprotocol reports whether the client's Sec-WebSocket-Protocol
// offered sub (compared as coder/websocket does).
func offeredSubprotocol(r *http.Request, sub string) bool {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), sub) {
				return true
			}
		}
	}
	return false
}

// refuseSubprotocol drops the handshake of an app that picked a
// subprotocol the client never offered: RFC 6455 4.1 has the client fail
// such a connection, so it must not be upgraded. The connection is closed
// without a response, as Daphne does (what Falcon's server tests accept);
// the engine logs why.
func (rw *responseWriter) refuseSubprotocol(sub string) {
	if conn, _, err := rw.ctl.Hijack(); err == nil {
		conn.Close()
		return
	}
	// No hijacking (not HTTP/1): a 500, the next best refusal.
	rw.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(rw.w, "websocket subprotocol %q was not offered by the client\n", sub)
}

// closeCheckWriter hands coder/websocket a connection whose incoming close
// frames are checked first: the library echoes a close frame's code and
// reason without looking at the reason's UTF-8 (Autobahn 7.5.1). A close
// whose reason is not UTF-8 reaches it as a close with 1007 and no reason,
// which it echoes, failing the connection as RFC 6455 8.1 asks.
type closeCheckWriter struct {
	http.ResponseWriter
	deflate bool // compress every outgoing message here (smallWindowDeflate)
}

func (w closeCheckWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w closeCheckWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Bytes the server had read ahead go through the check too.
	ahead, _ := brw.Reader.Peek(brw.Reader.Buffered())
	fc := &closeCheckConn{Conn: conn, src: io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), conn)}
	if !w.deflate {
		return fc, bufio.NewReadWriter(bufio.NewReader(fc), brw.Writer), nil
	}
	if err := brw.Writer.Flush(); err != nil {
		return nil, nil, err
	}
	out := &smallWindowDeflate{Conn: fc}
	return out, bufio.NewReadWriter(bufio.NewReader(fc), bufio.NewWriter(out)), nil
}

// closeCheckConn walks the client's frame headers (RFC 6455 5.2) as the
// bytes go by: data payloads pass straight through; a close frame is held
// until whole, checked, and rewritten if its reason is not UTF-8.
type closeCheckConn struct {
	net.Conn
	src   io.Reader
	buf   []byte // read from src, not yet parsed or returned
	store []byte // buf's storage while it fits
	ready int    // buf[:ready] may be returned
	skip  int64  // payload bytes of the current frame still to pass through
	err   error  // from src, returned once buf is drained
}

func (c *closeCheckConn) Read(p []byte) (int, error) {
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[:c.ready])
			c.buf = c.buf[n:]
			c.ready -= n
			return n, nil
		}
		if c.skip > 0 && len(c.buf) == 0 {
			if c.err != nil {
				return 0, c.err
			}
			if int64(len(p)) > c.skip {
				p = p[:c.skip]
			}
			n, err := c.src.Read(p)
			c.skip -= int64(n)
			return n, err
		}
		if c.parse() {
			continue
		}
		if c.err != nil {
			return 0, c.err
		}
		if len(c.buf) == 0 {
			if c.store == nil {
				c.store = make([]byte, 4096)
			}
			c.buf = c.store[:0] // reused: what Read returns is copied out
		} else if cap(c.buf)-len(c.buf) < 512 {
			c.buf = append(make([]byte, 0, 2*cap(c.buf)+4096), c.buf...) // a close frame held whole
		}
		n, err := c.src.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		c.err = err
	}
}

// parse moves what it can of buf into ready; false if it needs more bytes.
func (c *closeCheckConn) parse() bool {
	rest := c.buf[c.ready:]
	if c.skip > 0 {
		n := min(c.skip, int64(len(rest)))
		if n == 0 {
			return false
		}
		c.ready += int(n)
		c.skip -= n
		return true
	}
	if len(rest) < 2 {
		return false
	}
	opcode, masked, length := rest[0]&0x0F, rest[1]&0x80 != 0, int64(rest[1]&0x7F)
	hlen := 2
	switch length {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if masked {
		hlen += 4
	}
	if len(rest) < hlen {
		return false
	}
	switch length {
	case 126:
		length = int64(rest[2])<<8 | int64(rest[3])
	case 127:
		length = 0
		for _, b := range rest[2:10] {
			length = length<<8 | int64(b)
		}
		if length < 0 { // the library rejects it; pass it on
			length = 0
		}
	}
	if opcode != 0x8 || length > 125 || length < 3 || !masked {
		c.ready += hlen
		c.skip = length
		return true
	}
	if int64(len(rest)) < int64(hlen)+length {
		return false
	}
	key := rest[hlen-4 : hlen]
	payload := rest[hlen : hlen+int(length)]
	reason := make([]byte, len(payload)-2)
	for i := range reason {
		reason[i] = payload[i+2] ^ key[(i+2)%4]
	}
	if !utf8.Valid(reason) {
		// A close with code 1007 and no reason, masked with the same key.
		payload[0] = byte(websocket.StatusInvalidFramePayloadData>>8) ^ key[0]
		payload[1] = byte(websocket.StatusInvalidFramePayloadData&0xFF) ^ key[1]
		rest[1] = 0x80 | 2
		c.buf = append(c.buf[:c.ready+hlen+2], rest[hlen+int(length):]...)
		c.ready += hlen + 2
		return true
	}
	c.ready += hlen + int(length)
	return true
}

// acceptWriter is the ResponseWriter and request websocket.Accept gets:
// incoming close frames checked first. With permessage-deflate negotiated, every message is
// compressed, however small, as Python's websockets (uvicorn) does: some
// clients (kosoku's Autobahn driver) mishandle an uncompressed message in a
// compressed session, and for small messages the cost measured is small
// (bench/README.md).
// Over HTTP/2 it is the stream's adapter (ws_h2.go).
func (rw *responseWriter) acceptWriter(opts *websocket.AcceptOptions) (http.ResponseWriter, *http.Request) {
	opts.CompressionThreshold = -1 // never below: all messages compressed
	w, r := rw.w, rw.r
	if r.ProtoMajor == 2 {
		w, r = h2Accept(w, r)
	}
	if opts.CompressionMode != websocket.CompressionDisabled {
		if bits := takeSmallWindowOffer(r); bits != 0 {
			opts.CompressionThreshold = math.MaxInt // the library sends plain frames ...
			w = windowBitsWriter{ResponseWriter: w, bits: bits}
			return closeCheckWriter{ResponseWriter: w, deflate: true}, r // ... compressed on the way out
		}
	}
	return closeCheckWriter{ResponseWriter: w}, r
}

// takeSmallWindowOffer: coder/websocket declines a permessage-deflate offer
// with server_max_window_bits below 15 (Go's compress/flate always uses a
// 32 KiB window; Autobahn 13.3, 13.5). When the first offer the library
// could take but for that parameter has it, the parameter is removed from
// the request (the library then takes that offer) and its value returned,
// to be echoed in the response (RFC 7692 7.1.2.1) and kept to by
// compressing without back-references (smallWindowDeflate). 0: nothing to
// do, the library negotiates as usual.
func takeSmallWindowOffer(r *http.Request) int {
	var offers []string
	for _, v := range r.Header.Values("Sec-WebSocket-Extensions") {
		offers = append(offers, strings.Split(v, ",")...)
	}
	for _, offer := range offers {
		params := strings.Split(offer, ";")
		if strings.TrimSpace(params[0]) != "permessage-deflate" {
			continue
		}
		kept := []string{"permessage-deflate"}
		ok, window := true, 0
		for _, p := range params[1:] {
			p = strings.TrimSpace(p)
			name, val, hasVal := strings.Cut(p, "=")
			switch strings.TrimSpace(name) {
			case "server_max_window_bits":
				n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
				ok = ok && err == nil && n >= 8 && n <= 15 && window == 0
				window = n
				if n == 15 {
					kept = append(kept, p) // the library takes 15 itself
				}
			case "client_no_context_takeover", "server_no_context_takeover":
				ok = ok && !hasVal
				kept = append(kept, p)
			case "client_max_window_bits":
				kept = append(kept, p) // any window inflates with ours
			default:
				ok = false
			}
		}
		if !ok {
			continue // the library would decline it too
		}
		if window == 0 || window == 15 {
			return 0
		}
		r.Header.Set("Sec-WebSocket-Extensions", strings.Join(kept, "; "))
		return window
	}
	return 0
}

// windowBitsWriter adds server_max_window_bits to the 101's
// Sec-WebSocket-Extensions; Unwrap leads coder/websocket to the Hijacker.
type windowBitsWriter struct {
	http.ResponseWriter
	bits int
}

func (w windowBitsWriter) WriteHeader(code int) {
	if ext := w.Header().Get("Sec-WebSocket-Extensions"); code == http.StatusSwitchingProtocols && ext != "" {
		w.Header().Set("Sec-WebSocket-Extensions", ext+"; server_max_window_bits="+strconv.Itoa(w.bits))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w windowBitsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// smallWindowDeflate compresses the whole data frames coder/websocket
// writes uncompressed (its threshold is set past any message) on a
// connection whose client limited the server's window: Huffman coding
// only, so no back-reference reaches past any window, and RSV1 set (RFC
// 7692 7.2.1: the flushed block without its trailing 00 00 ff ff). Control
// frames and anything else pass as they are. It buffers a frame until it
// is whole; the library writes each message as one frame and flushes it.
type smallWindowDeflate struct {
	net.Conn
	pending []byte
	out     bytes.Buffer
	fw      *flate.Writer
}

func (d *smallWindowDeflate) Write(p []byte) (int, error) {
	d.pending = append(d.pending, p...)
	for {
		b := d.pending
		if len(b) < 2 {
			break
		}
		hlen, n := 2, int64(b[1]&0x7F)
		switch n {
		case 126:
			hlen = 4
		case 127:
			hlen = 10
		}
		if b[1]&0x80 != 0 {
			hlen += 4 // servers do not mask; for completeness
		}
		if len(b) < hlen {
			break
		}
		switch n {
		case 126:
			n = int64(binary.BigEndian.Uint16(b[2:4]))
		case 127:
			n = int64(binary.BigEndian.Uint64(b[2:10]))
		}
		if int64(len(b)-hlen) < n {
			break
		}
		frame := b[:hlen+int(n)]
		fin, rsv1, opcode := b[0]&0x80 != 0, b[0]&0x40 != 0, b[0]&0x0F
		var err error
		if fin && !rsv1 && (opcode == 0x1 || opcode == 0x2) && b[1]&0x80 == 0 {
			err = d.writeCompressed(b[0], frame[hlen:])
		} else {
			_, err = d.Conn.Write(frame)
		}
		d.pending = b[len(frame):]
		if err != nil {
			return len(p), err
		}
	}
	if len(d.pending) == 0 {
		d.pending = nil // let a large frame's buffer go
	}
	return len(p), nil
}

func (d *smallWindowDeflate) writeCompressed(b0 byte, payload []byte) error {
	d.out.Reset()
	if d.fw == nil {
		d.fw, _ = flate.NewWriter(&d.out, flate.HuffmanOnly)
	} else {
		d.fw.Reset(&d.out)
	}
	d.fw.Write(payload)
	d.fw.Flush()
	body := bytes.TrimSuffix(d.out.Bytes(), []byte{0x00, 0x00, 0xff, 0xff})
	hdr := []byte{b0 | 0x40}
	switch n := len(body); {
	case n < 126:
		hdr = append(hdr, byte(n))
	case n < 1<<16:
		hdr = append(hdr, 126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	_, err := d.Conn.Write(append(hdr, body...))
	return err
}
