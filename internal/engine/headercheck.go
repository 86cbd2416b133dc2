package engine

import (
	"fmt"
	"strconv"
)

// Response headers from an app are checked before anything goes out:
// net/http writes names as they are and only turns CR and LF in values
// into spaces, so a NUL, another control character or a name with a space
// or colon would reach the client (or a cache in front of it) as sent. A
// response with such a header, or with headers too large, is answered 500
// instead (aborted if its headers went out already, as trailers do).

// maxResponseHeaderBytes bounds the header block of a response: names and
// values of its headers, and of its trailers, together. 1 MiB, as Go's own
// limit on a request's headers (http.DefaultMaxHeaderBytes): no client
// needs more, and an app that sends more (a header appended to in a loop)
// has a bug that would otherwise cost every client the transfer.
const maxResponseHeaderBytes = 1 << 20

// tokenChar marks the bytes of an RFC 9110 token (a field name).
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// badHeader says what is wrong with a response header, "" if nothing: the
// name must be a token, the value free of control characters but HTAB
// (RFC 9110 5.5; obs-text, bytes 0x80-0xff, is allowed as net/http does).
// A tight loop over the bytes: it runs for every header of every response.
func badHeader[S string | []byte](name, value S) string {
	if len(name) == 0 {
		return "empty header name"
	}
	for i := 0; i < len(name); i++ {
		if !tokenChar[name[i]] {
			return fmt.Sprintf("header name %s has %s, which a field name cannot have", quoteHeader(name), charName(name[i]))
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Sprintf("header %s has %s in its value", quoteHeader(name), charName(c))
		}
	}
	return ""
}

// headerBytesError is the refusal of headers over maxResponseHeaderBytes.
func headerBytesError(n int) string {
	return fmt.Sprintf("response headers take %d bytes or more, over the limit of %d (1 MiB)", n, maxResponseHeaderBytes)
}

func quoteHeader[S string | []byte](name S) string {
	s := string(name)
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

func charName(c byte) string {
	switch c {
	case '\r':
		return "a CR"
	case '\n':
		return "an LF"
	case 0:
		return "a NUL"
	}
	return fmt.Sprintf("the byte %#02x", c)
}
