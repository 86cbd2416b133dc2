package engine

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Jobs queued while the only worker thread is busy run in the order they
// were submitted.
func TestPoolRunsQueuedJobsInOrder(t *testing.T) {
	a := loadPoolApp(t)
	p := testPool(t, a, 1, 20*time.Second)
	serveOne(t, p, a, "/ran") // forget earlier tests' paths
	file, release := holdFile(t)
	hold, err := startJob(p, a, "/hold?"+file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := startJob(p, a, fmt.Sprintf("/job%d", i), nil, nil)
			if err != nil {
				errs <- err
				return
			}
			j.finish()
		}()
		// Submitted one after the other: the worker is held, so each
		// waits in the queue.
		time.Sleep(40 * time.Millisecond)
	}
	release()
	hold.finishWithin(t, 10*time.Second)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := serveOne(t, p, a, "/ran")
	want := "/hold,/job0,/job1,/job2,/job3,/job4"
	if got != want {
		t.Errorf("jobs ran in the order %s, want %s", got, want)
	}
}

// A job no worker took within max_wait gets ErrBusy and never runs; one
// whose client left while queued gets errClientGone, before max_wait.
func TestPoolMaxWaitAndCancel(t *testing.T) {
	a := loadPoolApp(t)
	p := testPool(t, a, 1, 300*time.Millisecond)
	serveOne(t, p, a, "/ran")
	file, release := holdFile(t)
	hold, err := startJob(p, a, "/hold?"+file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := startJob(p, a, "/busy", nil, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("queued past max_wait: %v, want ErrBusy", err)
	} else if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("ErrBusy after %v, before max_wait", waited)
	}
	cancel := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { close(cancel) })
	start = time.Now()
	if _, err := startJob(p, a, "/cancelled", nil, cancel); !errors.Is(err, errClientGone) {
		t.Errorf("client left while queued: %v, want errClientGone", err)
	} else if waited := time.Since(start); waited >= 300*time.Millisecond {
		t.Errorf("cancel answered after %v, not before max_wait", waited)
	}
	release()
	hold.finishWithin(t, 10*time.Second)
	if got := serveOne(t, p, a, "/ran"); got != "/hold" {
		t.Errorf("ran %s: a refused job ran", got)
	}
}

// close refuses new jobs at once, lets the running and the queued ones
// finish, and reports the pool gone only after that.
func TestPoolCloseDrains(t *testing.T) {
	a := loadPoolApp(t)
	p, err := newPool(a.interp, a.obj, 1, 20*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	file, release := holdFile(t)
	hold, err := startJob(p, a, "/hold?"+file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan *testJob, 1)
	go func() {
		j, err := startJob(p, a, "/queued", nil, nil)
		if err != nil {
			t.Errorf("queued job: %v", err)
		}
		queued <- j
	}()
	time.Sleep(200 * time.Millisecond) // let it reach the queue
	closed := make(chan bool, 1)
	if !p.enter() {
		t.Fatal("open pool refused enter")
	}
	p.close(func(leaked bool) { closed <- leaked })
	if p.enter() {
		t.Error("closing pool admitted a request")
		p.leave()
	}
	if _, err := startJob(p, a, "/late", nil, nil); !errors.Is(err, ErrStopped) {
		t.Errorf("submit after close: %v, want ErrStopped", err)
	}
	select {
	case <-closed:
		t.Fatal("pool gone while a job still runs")
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if rc, body := hold.finishWithin(t, 10*time.Second); rc != wsgiOK || hold.rec.Code != 200 || !strings.HasSuffix(body, "\ndone") {
		t.Errorf("running job across close: rc %d, status %d, body %q", rc, hold.rec.Code, body)
	}
	var q *testJob
	select {
	case q = <-queued:
	case <-time.After(10 * time.Second):
		t.Fatal("queued job never started after close")
	}
	if q != nil {
		if rc, body := q.finishWithin(t, 10*time.Second); rc != wsgiOK || body != "ran /queued" {
			t.Errorf("queued job across close: rc %d, body %q", rc, body)
		}
	}
	select {
	case <-closed:
		t.Fatal("pool gone while a request is still inside its gate")
	case <-time.After(100 * time.Millisecond):
	}
	p.leave()
	select {
	case leaked := <-closed:
		if leaked {
			t.Error("close reported a thread left behind")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pool not gone 10 s after its last job")
	}
}

// Blocked jobs get worker threads up to `threads`, each its own thread;
// one more waits for max_wait.
func TestPoolRunsUpToThreadsAtOnce(t *testing.T) {
	a := loadPoolApp(t)
	const threads = 3
	p := testPool(t, a, threads, time.Second)
	file, release := holdFile(t)
	defer release()
	jobs := make(chan *testJob, threads)
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := startJob(p, a, fmt.Sprintf("/hold%d?%s", i, file), nil, nil)
			if err != nil {
				t.Errorf("hold %d: %v", i, err)
				return
			}
			jobs <- j
		}()
	}
	wg.Wait() // each submit returned: all of them run at once
	close(jobs)
	if _, err := startJob(p, a, "/extra", nil, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("job beyond threads: %v, want ErrBusy", err)
	}
	release()
	idents := map[string]bool{}
	for j := range jobs {
		_, body := j.finishWithin(t, 10*time.Second)
		ident, _, _ := strings.Cut(body, "\n")
		idents[ident] = true
	}
	if len(idents) != threads {
		t.Errorf("%d held jobs ran on %d distinct threads: %v", threads, len(idents), idents)
	}
}

// A slot put back is reused by the next get, under a new handle: the old
// handle (kept by a thread the app started, say) finds nothing.
func TestPoolSlotReuseAndStaleHandle(t *testing.T) {
	a := loadPoolApp(t)
	p := testPool(t, a, 1, time.Second)
	wk := p.get()
	wk.seq.Add(1)
	old := wk.handle()
	if slotOf(old) != wk {
		t.Fatal("slotOf does not find a live slot")
	}
	p.put(wk)
	again := p.get()
	defer p.put(again)
	if again != wk {
		t.Fatalf("get after put made a new slot")
	}
	again.seq.Add(1) // the next request
	if slotOf(old) != nil {
		t.Errorf("a stale handle found the slot's next request")
	}
	if slotOf(again.handle()) != again {
		t.Errorf("the slot's new handle finds nothing")
	}
	if !strings.HasPrefix(serveOne(t, p, a, "/x"), "ran /x") {
		t.Error("pool does not serve after slot reuse")
	}
}
