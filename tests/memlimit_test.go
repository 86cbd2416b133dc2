package tests

import (
	"strings"
	"testing"
	"time"
)

// memory_limit: a hard cap on a worker's address space (RLIMIT_AS). The
// sites say processes themselves: the setting is for worker processes.

// An allocation past the cap is a MemoryError, so a 500 for that request;
// the worker serves the next one.
func TestMemoryLimitAllocationFailsThatRequestOnly(t *testing.T) {
	if asanRun() {
		// ASan maps terabytes of shadow (the worker's base is measured
		// past it) and aborts on a failed allocation rather than return
		// NULL (allocator_may_return_null=0): no MemoryError to see.
		t.Skip("AddressSanitizer build: a failed allocation aborts the worker")
	}
	for _, asgi := range []bool{false, true} {
		t.Run(map[bool]string{false: "WSGI", true: "ASGI"}[asgi], func(t *testing.T) {
			t.Parallel()
			memoryErrorIs500(t, asgi)
		})
	}
}

func memoryErrorIs500(t *testing.T, asgi bool) {
	site := pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app", "processes 1", "memory_limit 1GiB")
	if asgi {
		site = asgiSite(t, "asgi_procs:app", "processes 1", "memory_limit 1GiB")
	}
	c := startCaddy(t, site)
	pid := string(c.get(t, "/pid", 200))
	status, body, err := c.fetch("GET", "/alloc2g", nil)
	if err != nil || status != 500 {
		t.Fatalf("2 GiB under memory_limit 1GiB: %d %v %q, want 500", status, err, body)
	}
	if !c.waitLog(5*time.Second, "MemoryError") {
		t.Errorf("no MemoryError in the log:\n%s", tail(c.Log(), 4000))
	}
	if got := string(c.get(t, "/pid", 200)); got != pid {
		t.Errorf("served by worker %s after the MemoryError, want the same worker %s", got, pid)
	}
	ready := logLine(t, c, "python app ready")
	if used, _ := ready["memory_limit_used"].(float64); used <= 0 || used >= 1<<30 {
		t.Errorf("python app ready: memory_limit_used %v, want a size under the limit (line: %v)", ready["memory_limit_used"], ready)
	}
}

// A limit too small for the worker to start fails the start with a
// sentence that says so (caddy validate starts the workers too).
func TestMemoryLimitTooSmallToStart(t *testing.T) {
	t.Parallel()
	out, err := validate(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_procs:app", "processes 1", "memory_limit 8MiB"))
	if err == nil {
		t.Fatalf("memory_limit 8MiB validated:\n%s", out)
	}
	if !strings.Contains(out, "memory_limit 8MiB is too small to start the worker") || !strings.Contains(out, "MiB of address space") {
		t.Fatalf("validate output lacks the too-small sentence:\n%s", tail(out, 4000))
	}
}
