package worker

import (
	"errors"
	"net"
	"net/http"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// EncodeRequest lays out r's head (everything but Body and Done) for a
// FrameRequest.
func EncodeRequest(e *Encoder, r *engine.Request) {
	e.Str(r.Method)
	e.Str(r.Target)
	e.Str(r.Path)
	e.Str(r.RawPath)
	e.Str(r.RawQuery)
	e.Str(r.ScriptName)
	e.Str(r.Proto)
	e.U32(uint32(r.ProtoMajor))
	e.U32(uint32(r.ProtoMinor))
	e.Str(r.Host)
	e.U32(uint32(r.ContentLength >> 32))
	e.U32(uint32(r.ContentLength))
	e.Str(r.RemoteAddr)
	e.Str(r.ClientIP)
	local := ""
	if r.LocalAddr != nil {
		local = r.LocalAddr.String()
	}
	e.Str(local)
	tls := uint32(0)
	if r.TLS {
		tls = 1
	}
	e.U32(tls)
	EncodeHeader(e, r.Header)
}

// DecodeRequest fills r from a FrameRequest's payload (Body and Done are
// the caller's).
func DecodeRequest(p []byte, r *engine.Request) error {
	d := &Decoder{B: p}
	r.Method = d.Str()
	r.Target = d.Str()
	r.Path = d.Str()
	r.RawPath = d.Str()
	r.RawQuery = d.Str()
	r.ScriptName = d.Str()
	r.Proto = d.Str()
	r.ProtoMajor = int(d.U32())
	r.ProtoMinor = int(d.U32())
	r.Host = d.Str()
	hi := d.U32()
	r.ContentLength = int64(uint64(hi)<<32 | uint64(d.U32()))
	r.RemoteAddr = d.Str()
	r.ClientIP = d.Str()
	if local := d.Str(); local != "" {
		r.LocalAddr = stringAddr(local)
	} else {
		r.LocalAddr = nil
	}
	r.TLS = d.U32() != 0
	r.Header = DecodeHeader(d)
	return d.Err
}

// EncodeHeader lays out h as a count, then name, value pairs (one pair per
// value).
func EncodeHeader(e *Encoder, h http.Header) {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	e.U32(uint32(n))
	for k, vs := range h {
		for _, v := range vs {
			e.Str(k)
			e.Str(v)
		}
	}
}

// DecodeHeader reads what EncodeHeader wrote. Names keep their case as
// sent (they were canonical on the sending side already).
func DecodeHeader(d *Decoder) http.Header {
	n := d.U32()
	if d.Err != nil || n > uint32(len(d.B)/8) {
		d.Err = errors.New("worker wire: header count over the payload")
		return nil
	}
	h := make(http.Header, n)
	for i := uint32(0); i < n && d.Err == nil; i++ {
		k := d.Str()
		h[k] = append(h[k], d.Str())
	}
	return h
}

// stringAddr is a net.Addr known only by its string.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

var _ net.Addr = stringAddr("")

// The result a FrameEnd carries.
const (
	EndOK    = 0 // the response is whole
	EndAbort = 1 // abort it (engine.ErrAbort)
	EndError = 2 // answer status with message instead (nothing was sent)
)

// EncodeEnd lays out Serve's result for a FrameEnd.
func EncodeEnd(e *Encoder, err error) {
	var ee *engine.Error
	switch {
	case err == nil:
		e.U32(EndOK)
		e.U32(0)
		e.Str("")
	case err == engine.ErrAbort:
		e.U32(EndAbort)
		e.U32(0)
		e.Str("")
	case errors.As(err, &ee):
		e.U32(EndError)
		e.U32(uint32(ee.Status))
		e.Str(ee.Error())
	default:
		e.U32(EndError)
		e.U32(http.StatusInternalServerError)
		e.Str(err.Error())
	}
}

// DecodeEnd turns a FrameEnd's payload back into Serve's result.
func DecodeEnd(p []byte) error {
	d := &Decoder{B: p}
	kind, status, msg := d.U32(), d.U32(), d.Str()
	if d.Err != nil {
		return d.Err
	}
	switch kind {
	case EndOK:
		return nil
	case EndAbort:
		return engine.ErrAbort
	}
	return &engine.Error{Status: int(status), Err: errors.New(msg)}
}
