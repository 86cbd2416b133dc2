package tests

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestMalformedRequestsAre4xxAndServerKeepsServing(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_echo:app"))
	host := "Host: " + c.Addr() + "\r\n"

	normal := func(t *testing.T) {
		t.Helper()
		c.alive(t)
		out, err := rawExchange(t, c.Addr(),
			"POST /read HTTP/1.1\r\n"+host+"Content-Length: 5\r\nConnection: close\r\n\r\nhello", false, 10*time.Second)
		if statusOf(out) != 200 {
			t.Errorf("a normal request after the malformed one: %q (err %v), want 200", out, err)
		}
	}

	cases := []struct {
		name      string
		req       string
		halfClose bool
		// allowClose: the server may also just close the connection.
		allowClose bool
	}{
		{
			name: "bad Content-Length",
			req:  "POST /read HTTP/1.1\r\n" + host + "Content-Length: abc\r\n\r\nhello",
		},
		{
			name: "invalid chunk-size line",
			req: "POST /read HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				"zz\r\nhello\r\n0\r\n\r\n",
		},
		{
			name: "chunk announces 100 bytes, sends 10, then half-close",
			req: "POST /read HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
				"64\r\n0123456789",
			halfClose:  true,
			allowClose: true,
		},
		{
			name: "Content-Length 100, sends 10, then half-close",
			req: "POST /read HTTP/1.1\r\n" + host + "Content-Length: 100\r\n\r\n" +
				"0123456789",
			halfClose:  true,
			allowClose: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := rawExchange(t, c.Addr(), tc.req, tc.halfClose, 10*time.Second)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no answer and no close within 10s (got %q)", out)
			}
			status := statusOf(out)
			switch {
			case status >= 400 && status < 500:
				t.Logf("answered %d", status)
			case status == 0 && tc.allowClose:
				t.Logf("connection closed without a response (%v)", err)
			default:
				t.Errorf("got status %d (response %.300q, err %v), want 4xx", status, out, err)
			}
			normal(t)
		})
	}
}
