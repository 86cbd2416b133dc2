package engine

import "net/http"

// cStrings lays strings out back to back for C: one byte buffer and the end
// offset of each string. It holds no Go pointers, so C may read it during a
// call (WSGI's submit and ASGI's post copy it into C memory); and the
// buffers are reused from request to request.
type cStrings struct {
	buf  []byte
	ends []int32
}

func (c *cStrings) reset() {
	c.buf, c.ends = c.buf[:0], c.ends[:0]
}

func (c *cStrings) add(s string) {
	c.buf = append(c.buf, s...)
	c.ends = append(c.ends, int32(len(c.buf)))
}

// addLower appends s ASCII-lower-cased (ASGI header names).
func (c *cStrings) addLower(s string) {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		c.buf = append(c.buf, b)
	}
	c.ends = append(c.ends, int32(len(c.buf)))
}

// addHeaders appends a name, value pair per header value; lower asks for
// lower-cased names.
func (c *cStrings) addHeaders(h http.Header, lower bool) {
	for name, values := range h {
		for _, v := range values {
			if lower {
				c.addLower(name)
			} else {
				c.add(name)
			}
			c.add(v)
		}
	}
}
