package worker

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/caddysnake/caddysnake/internal/engine"
)

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteFrame(FrameBody, 0, 7, false, []byte("hel"), []byte("lo")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(FrameEnd, FlagClose, 1<<31, true); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	f, err := r.ReadFrame()
	if err != nil || f.Type != FrameBody || f.Stream != 7 || string(f.Payload) != "hello" {
		t.Fatalf("first frame %+v, %v", f, err)
	}
	f, err = r.ReadFrame()
	if err != nil || f.Type != FrameEnd || f.Flags != FlagClose || f.Stream != 1<<31 || len(f.Payload) != 0 {
		t.Fatalf("second frame %+v, %v", f, err)
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameCutShortIsAnError(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.WriteFrame(FrameData, 0, 1, true, []byte("0123456789"))
	cut := buf.Bytes()[:buf.Len()-3]
	if _, err := NewReader(bytes.NewReader(cut)).ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	in := engine.Request{
		Method: "POST", Target: "/app/x%20y?q=1", Path: "/x y", RawPath: "/app/x%20y", RawQuery: "q=1",
		ScriptName: "/app", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "example.com:8080",
		Header:        http.Header{"Content-Type": {"text/plain"}, "X-Many": {"a", "b"}},
		ContentLength: 5 << 33, RemoteAddr: "192.0.2.1:4000", ClientIP: "198.51.100.7",
		LocalAddr: stringAddr("127.0.0.1:8080"), TLS: true,
	}
	var e Encoder
	EncodeRequest(&e, &in)
	var out engine.Request
	if err := DecodeRequest(e.B, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	if err := DecodeRequest(e.B[:len(e.B)-2], &out); err == nil {
		t.Fatal("a payload cut short decoded without an error")
	}
}

func TestEndRoundTrip(t *testing.T) {
	for _, in := range []error{nil, engine.ErrAbort, &engine.Error{Status: 504, Err: errors.New("timed out")},
		errors.New("plain")} {
		var e Encoder
		EncodeEnd(&e, in)
		out := DecodeEnd(e.B)
		switch want := in.(type) {
		case nil:
			if out != nil {
				t.Errorf("nil came back as %v", out)
			}
		case *engine.Error:
			if oe, ok := out.(*engine.Error); !ok || oe.Status != want.Status || oe.Error() != want.Error() {
				t.Errorf("%v came back as %#v", in, out)
			}
		default:
			if in == engine.ErrAbort && out != engine.ErrAbort {
				t.Errorf("ErrAbort came back as %v", out)
			}
			if in != engine.ErrAbort {
				if oe, ok := out.(*engine.Error); !ok || oe.Status != 500 {
					t.Errorf("%v came back as %#v", in, out)
				}
			}
		}
	}
}
