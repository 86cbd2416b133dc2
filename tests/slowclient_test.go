package tests

import (
	"testing"
	"time"
)

// A client that stops reading blocks the thread writing its response inside
// go_write. That thread must not hold the GIL while it waits, or every other
// thread of the app would stall behind one slow client.
func TestSlowClientDoesNotStallOtherRequests(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slowclient:app", "threads 2"))
	c.get(t, "/small", 200)

	stuck := dial(t, c.Addr())
	defer stuck.Close()
	if _, err := stuck.Write([]byte("GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Never read from stuck: give its thread time to fill the socket buffers.
	time.Sleep(500 * time.Millisecond)

	for i := 0; i < 20; i++ {
		start := time.Now()
		body := c.get(t, "/small", 200)
		if string(body) != "ok" {
			t.Fatalf("request %d: body %q", i, body)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("request %d took %v while another thread was blocked writing to a slow client: is the GIL held across go_write?", i, d)
		}
	}
}
