package engine

import (
	"strings"
	"testing"
)

func TestBadHeader(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"Content-Type", "text/plain; charset=utf-8", ""},
		{"X-Tab", "a\tb", ""},
		{"X-Latin", "caf\xe9", ""},
		{"x!#$%&'*+-.^_`|~09", "", ""},
		{"", "v", "empty header name"},
		{"X Bad", "v", "byte 0x20"},
		{"X-Bad:", "v", "byte 0x3a"},
		{"X-Bad\r", "v", "a CR"},
		{"X-Bad", "a\x00b", "a NUL in its value"},
		{"X-Bad", "a\r\nX-Injected: 1", "a CR in its value"},
		{"X-Bad", "a\nb", "an LF in its value"},
		{"X-Bad", "a\x01b", "byte 0x01"},
		{"X-Bad", "a\x7fb", "byte 0x7f"},
	} {
		got := badHeader(tc.name, tc.value)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("badHeader(%q, %q) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
		if gotB := badHeader([]byte(tc.name), []byte(tc.value)); gotB != got {
			t.Errorf("badHeader of bytes %q != of strings %q", gotB, got)
		}
	}
}
