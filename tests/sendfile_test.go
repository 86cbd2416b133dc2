package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A file the app hands to the server (wsgi.file_wrapper here) is sent by
// Caddy itself, with sendfile, in both modes: with processes N the worker
// passes the open descriptor to Caddy instead of copying the bytes
// through its socket. Seen from outside: while a client that does not
// read is sent a large file, Caddy's own process holds that file open.
func TestCaddyHoldsTheFileItSends(t *testing.T) {
	t.Parallel()
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_stuck:app", "threads 2"))
	c.get(t, "/ok", 200)
	conn := dial(t, c.Addr())
	defer conn.Close()
	fmt.Fprintf(conn, "GET /bigfile HTTP/1.1\r\nHost: %s\r\n\r\n", c.Addr())
	fdDir := fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ents, err := os.ReadDir(fdDir)
		if err != nil {
			t.Skipf("cannot list %s: %v", fdDir, err)
		}
		for _, e := range ents {
			if target, err := os.Readlink(fdDir + "/" + e.Name()); err == nil && strings.Contains(target, "caddysnake-wsgi-stuck-") {
				return // Caddy has the file open: it sends it
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Caddy's process never held the file it was sending (processes mode: %d)", processesMode)
}
