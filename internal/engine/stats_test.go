package engine

import (
	"sync"
	"testing"
	"time"
)

func TestStatsCountsClassesAndUnlists(t *testing.T) {
	var s Stats
	a := s.Begin("GET", "/a")
	b := s.Begin("POST", "/b")
	if got := len(s.Listed()); got != 2 || s.InFlight.Load() != 2 {
		t.Fatalf("listed %d, in flight %d; want 2, 2", got, s.InFlight.Load())
	}
	s.End(a, 200)
	s.End(b, 503)
	s.End(nil, 0) // an unlisted request with no status (its Begin was elsewhere)
	s.InFlight.Add(1)
	if got := s.Listed(); len(got) != 0 {
		t.Errorf("still listed after End: %v", got)
	}
	if s.Requests[2].Load() != 1 || s.Requests[5].Load() != 1 || s.Requests[0].Load() != 1 {
		t.Errorf("classes: 2xx %d 5xx %d other %d; want 1 each", s.Requests[2].Load(), s.Requests[5].Load(), s.Requests[0].Load())
	}
	var nilStats *Stats
	nilStats.End(nilStats.Begin("GET", "/"), 200) // counts nothing, does not panic
}

// More requests in flight than the table lists are still counted, and
// every listed one is unlisted by its End.
func TestStatsTableFullAndConcurrent(t *testing.T) {
	var s Stats
	var wg sync.WaitGroup
	start := make(chan struct{})
	ends := make(chan func(), 2*trackSlots)
	for range 2 * trackSlots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t := s.Begin("GET", "/")
			ends <- func() { s.End(t, 204) }
		}()
	}
	close(start)
	wg.Wait()
	close(ends)
	if s.InFlight.Load() != 2*trackSlots {
		t.Errorf("in flight %d, want %d", s.InFlight.Load(), 2*trackSlots)
	}
	if n := len(s.Listed()); n == 0 || n > trackSlots {
		t.Errorf("listed %d, want 1..%d", n, trackSlots)
	}
	for end := range ends {
		end()
	}
	if n := len(s.Listed()); n != 0 || s.InFlight.Load() != 0 || s.Requests[2].Load() != 2*trackSlots {
		t.Errorf("after all ended: listed %d, in flight %d, 2xx %d", n, s.InFlight.Load(), s.Requests[2].Load())
	}
}

func TestHistogramCumulative(t *testing.T) {
	var h Histogram
	h.Observe(200 * time.Microsecond) // first bucket
	h.Observe(30 * time.Millisecond)  // le 0.05
	h.Observe(time.Minute)            // +Inf only
	cum, count, sum := h.Snapshot()
	if count != 3 || cum[0.0005] != 1 || cum[0.025] != 1 || cum[0.05] != 2 || cum[30] != 2 {
		t.Errorf("count %d, cumulative %v", count, cum)
	}
	if want := (time.Minute + 30*time.Millisecond + 200*time.Microsecond).Seconds(); sum < want-1e-9 || sum > want+1e-9 {
		t.Errorf("sum %v, want %v", sum, want)
	}
}
