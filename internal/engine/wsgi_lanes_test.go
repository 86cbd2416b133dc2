package engine

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// Many jobs at once on two worker threads: each gets its own whole
// response (the job's cs_out, sent by sendWhole), none another's.
func TestLaneJobsRunWithTheirOwnResponses(t *testing.T) {
	a := loadPoolApp(t)
	p := testPool(t, a, 2, 10*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := fmt.Sprintf("/job%d", i)
			j, err := startJob(p, a, target, nil, nil)
			if err != nil {
				t.Errorf("%s: %v", target, err)
				return
			}
			rc := j.finish()
			if body := j.rec.Body.String(); rc != wsgiOK || j.rec.Code != 200 || body != "ran "+target {
				t.Errorf("%s: rc %d, status %d, body %q", target, rc, j.rec.Code, body)
			}
			if ct := j.rec.Header().Get("Content-Type"); ct != "text/plain" {
				t.Errorf("%s: Content-Type %q", target, ct)
			}
		}()
	}
	wg.Wait()
}

// A streamed response comes back as frames, in order, headers first; at
// 1 MiB it is four times the outbox limit, so the worker waits for Go to
// send between frames.
func TestLaneFramesComeBackInOrder(t *testing.T) {
	a := loadPoolApp(t)
	p := testPool(t, a, 1, 10*time.Second)
	const chunks = 64
	j, err := startJob(p, a, fmt.Sprintf("/stream?%d", chunks), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, body := j.finishWithin(t, 20*time.Second)
	if rc != wsgiOK || j.rec.Code != 200 || j.rec.Header().Get("X-Chunks") != fmt.Sprint(chunks) {
		t.Fatalf("rc %d, status %d, headers %v", rc, j.rec.Code, j.rec.Header())
	}
	var want strings.Builder
	for i := 0; i < chunks; i++ {
		fmt.Fprintf(&want, "%05d:%s\n", i, strings.Repeat("x", 16384))
	}
	if body != want.String() {
		t.Errorf("streamed body: %d bytes, want %d (or out of order)", len(body), want.Len())
	}
	// The hold job's first frame (written before it blocks) is what ends
	// its submit: news from a running job reaches Go before the job ends.
	file, release := holdFile(t)
	hold, err := startJob(p, a, "/hold?"+file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if rc, body := hold.finishWithin(t, 10*time.Second); rc != wsgiOK || !strings.HasSuffix(body, "\ndone") {
		t.Errorf("hold: rc %d, body %q", rc, body)
	}
}

// A job waiting for its request body parks its worker thread: on a pool
// of one thread, another job still runs meanwhile, and the parked one
// finishes once its body arrives.
func TestLaneParksJobWaitingForBody(t *testing.T) {
	a := loadPoolApp(t)
	p := testPool(t, a, 1, 2*time.Second)
	body, send := io.Pipe()
	echo := make(chan *testJob, 1)
	go func() {
		// Its submit returns only when it finishes (no frame before).
		j, err := startJob(p, a, "/echo", body, nil)
		if err != nil {
			t.Errorf("echo: %v", err)
		}
		echo <- j
	}()
	if _, err := send.Write([]byte("first ")); err != nil { // the app is reading now
		t.Fatal(err)
	}
	other, err := startJob(p, a, "/other", nil, nil)
	if err != nil {
		t.Fatalf("a job behind one waiting for its body: %v", err)
	}
	if rc, got := other.finishWithin(t, 5*time.Second); rc != wsgiOK || got != "ran /other" {
		t.Errorf("other: rc %d, body %q", rc, got)
	}
	select {
	case <-echo:
		t.Fatal("echo finished before its body ended")
	default:
	}
	if _, err := send.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	send.Close()
	var j *testJob
	select {
	case j = <-echo:
	case <-time.After(10 * time.Second):
		t.Fatal("echo not done 10 s after its body ended")
	}
	if j == nil {
		return
	}
	if rc, got := j.finishWithin(t, 5*time.Second); rc != wsgiOK || got != "first second" {
		t.Errorf("echo: rc %d, body %q", rc, got)
	}
}
