package worker

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// Files the fake worker passes (FrameFile, wire_fd.go): sent through the
// response writer's SendFile, and every descriptor closed once, whatever
// becomes of the stream.

// openFDs counts the test process's open descriptors (Caddy's side).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

func testFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestPoolFileGoesToSendFile(t *testing.T) {
	p, _ := startFake(t, 1)
	path, want := testFile(t, 300<<10) // over the credit window's half
	rc := newRecorder()
	if err := p.Serve(request("/file?"+path, nil), rc); err != nil {
		t.Fatal(err)
	}
	if rc.files != 1 || rc.Code != 200 || !bytes.Equal(rc.Body.Bytes(), want) {
		t.Fatalf("SendFile calls %d, status %d, %d bytes, want 1, 200 and the file's %d", rc.files, rc.Code, rc.Body.Len(), len(want))
	}
}

// A file shorter than the worker said (truncated after it measured it)
// aborts the response: it must not look complete.
func TestPoolShortFileAborts(t *testing.T) {
	p, _ := startFake(t, 1)
	path, _ := testFile(t, 4096)
	if err := p.Serve(request("/file-short?"+path, nil), newRecorder()); err != engine.ErrAbort {
		t.Fatalf("short file: %v, want ErrAbort", err)
	}
}

// A descriptor that is no regular file is not sent: a pipe may never end.
func TestPoolPassedPipeRefused(t *testing.T) {
	p, logs := startFake(t, 1)
	rc := newRecorder()
	if err := p.Serve(request("/file-pipe", nil), rc); err != engine.ErrAbort || rc.files != 0 {
		t.Fatalf("pipe: %v, %d SendFile calls, want ErrAbort and none", err, rc.files)
	}
	if logs.FilterMessage("python: a file the worker passed could not be sent; aborting the response").Len() != 1 {
		t.Fatalf("no log line for the refused file: %v", logs.All())
	}
}

// Many files passed, sent, cut short, refused, orphaned or come after the
// client left: the descriptor count ends where it began.
func TestPoolPassedFilesAllClosed(t *testing.T) {
	p, _ := startFake(t, 2)
	path, want := testFile(t, 64<<10)
	serve := func(target string, gone bool) (*recorder, error) {
		r := request(target, nil)
		if gone {
			done := make(chan struct{})
			close(done)
			r.Done = done
		}
		rc := newRecorder()
		return rc, p.Serve(r, rc)
	}
	round := func() {
		if rc, err := serve("/file?"+path, false); err != nil || !bytes.Equal(rc.Body.Bytes(), want) {
			t.Fatalf("file: %v, %d bytes", err, rc.Body.Len())
		}
		if _, err := serve("/file-short?"+path, false); err != engine.ErrAbort {
			t.Fatalf("short file: %v", err)
		}
		if _, err := serve("/file-pipe", false); err != engine.ErrAbort {
			t.Fatalf("pipe: %v", err)
		}
		if _, err := serve("/file-orphan?"+path, false); err != nil {
			t.Fatalf("orphan: %v", err)
		}
		if rc, err := serve("/file-cancel?"+path, true); err != engine.ErrAbort || rc.files != 0 {
			t.Fatalf("file after the client left: %v, %d SendFile calls, want ErrAbort and none", err, rc.files)
		}
	}
	round() // the first round opens what stays open (the runtime's poller)
	// No GC: an os.File's finalizer would close what leaked.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := openFDs(t)
	for range 50 {
		round()
	}
	if after := openFDs(t); after > before+2 {
		t.Fatalf("%d descriptors open after 50 rounds, %d before: passed files leak", after, before)
	}
}

// A worker that dies right after it passed a file: the descriptor is
// closed with the stream, and the worker's socket with the worker.
func TestPoolPassedFileClosedWhenWorkerDies(t *testing.T) {
	p, _ := startFake(t, 1)
	path, _ := testFile(t, 64<<10)
	waitServing := func() {
		deadline := time.Now().Add(10 * time.Second)
		for p.Serve(request("/pid", nil), newRecorder()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("the worker did not come back")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := openFDs(t)
	for range 3 {
		if err := p.Serve(request("/file-exit?"+path, nil), newRecorder()); err != engine.ErrAbort {
			t.Fatalf("worker died after passing a file: %v, want ErrAbort", err)
		}
		waitServing()
	}
	// The old worker's socket closes once it is reaped, just after its
	// replacement may have served.
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := openFDs(t); after > before {
		t.Fatalf("%d descriptors open after 3 deaths, %d before", after, before)
	}
}
