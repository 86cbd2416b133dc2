package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats are one app's counters, for metrics and the admin view. The
// engine, the net/http adapter and the worker pool only add to them
// (atomics, nothing else on the request path); whoever reports them (the
// Caddy module: Prometheus, the admin API) reads them when asked. A nil
// *Stats is valid and counts nothing.
type Stats struct {
	// Requests by status class: [1] 1xx ... [5] 5xx, [0] anything else.
	Requests [6]atomic.Uint64
	// Busy: 503s because no thread took the request within max_wait.
	// Timeouts and BodyTimeouts: answers 504 (request_timeout) and 408
	// (request_body_timeout).
	Busy, Timeouts, BodyTimeouts atomic.Uint64

	// WSGI in this process: how long requests waited for a thread (the
	// threads themselves: Probe).
	QueueWait Histogram

	// Open WebSockets; requests in flight (queued or running).
	WebSockets, InFlight atomic.Int64

	// Worker processes (processes N): started again after a crash or
	// replaced (recycling, an admin restart), and died unasked.
	Restarts, Crashes atomic.Uint64

	inflight [trackSlots]atomic.Pointer[Inflight]
	next     atomic.Uint32

	probersMu sync.Mutex
	probers   map[prober]struct{}
}

// prober is a WSGI pool: it counts its threads when asked (wsgi_stats.go).
type prober interface {
	probe(now time.Time) (threads, busy, queued int)
}

func (s *Stats) addProber(p prober) {
	s.probersMu.Lock()
	defer s.probersMu.Unlock()
	if s.probers == nil {
		s.probers = map[prober]struct{}{}
	}
	s.probers[p] = struct{}{}
}

func (s *Stats) removeProber(p prober) {
	s.probersMu.Lock()
	defer s.probersMu.Unlock()
	delete(s.probers, p)
}

// Threads is a snapshot of an app's WSGI threads in this process.
type Threads struct {
	// Total: worker threads; Busy: running a request; Queued: requests
	// waiting for one.
	Total, Busy, Queued int
}

// Probe counts the app's WSGI threads now, and marks the requests that
// run as started (Inflight.Started) for the admin view.
func (s *Stats) Probe() Threads {
	s.probersMu.Lock()
	ps := make([]prober, 0, len(s.probers))
	for p := range s.probers {
		ps = append(ps, p)
	}
	s.probersMu.Unlock()
	var t Threads
	now := time.Now()
	for _, p := range ps {
		n, b, q := p.probe(now)
		t.Total += n
		t.Busy += b
		t.Queued += q
	}
	return t
}

// Inflight is one request in flight, as the admin view lists it. Its
// strings are set once before it is published and never change.
type Inflight struct {
	Method, Path string
	Since        time.Time
	// Started is when a thread took it (unix ns; 0: still queued, or not
	// known in this process). Pid is the worker process it went to (0: in
	// Caddy's process).
	Started atomic.Int64
	Pid     atomic.Int64
	slot    uint32 // its place in Stats.inflight
}

// Start marks t as running now (an ASGI request runs at once); t may be
// nil.
func (t *Inflight) Start() {
	if t != nil {
		t.Started.Store(time.Now().UnixNano())
	}
}

// trackSlots bounds the requests the admin view lists; beyond that they
// are still counted (InFlight), not listed.
const trackSlots = 512

// Begin counts a request in flight and, room permitting, lists it. End
// must follow with what Begin returned (nil when unlisted).
func (s *Stats) Begin(method, path string) *Inflight {
	if s == nil {
		return nil
	}
	s.InFlight.Add(1)
	t := &Inflight{Method: method, Path: path, Since: time.Now()}
	start := s.next.Add(1)
	for k := uint32(0); k < 8; k++ { // a few probes: a full table is rare, and then unlisted is fine
		if i := (start + k) % trackSlots; s.inflight[i].CompareAndSwap(nil, t) {
			t.slot = i
			return t
		}
	}
	return nil
}

// End counts the request's answer (status 0: none was given) and unlists it.
func (s *Stats) End(t *Inflight, status int) {
	if s == nil {
		return
	}
	s.InFlight.Add(-1)
	if c := status / 100; c >= 1 && c <= 5 {
		s.Requests[c].Add(1)
	} else {
		s.Requests[0].Add(1)
	}
	if t != nil {
		s.inflight[t.slot].CompareAndSwap(t, nil)
	}
}

// Listed returns the requests in flight that are listed, in no order.
func (s *Stats) Listed() []*Inflight {
	var out []*Inflight
	for i := range s.inflight {
		if t := s.inflight[i].Load(); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// QueueWaitBuckets are the upper bounds (seconds) of QueueWait's buckets.
var QueueWaitBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Histogram is a Prometheus-style histogram over QueueWaitBuckets kept
// in atomics: counts per bucket (not cumulative), their sum in ns.
type Histogram struct {
	buckets [len(QueueWaitBuckets) + 1]atomic.Uint64
	sumNs   atomic.Int64
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(QueueWaitBuckets) && sec > QueueWaitBuckets[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(int64(d))
}

// Snapshot returns the cumulative counts per upper bound, the total count
// and the sum in seconds.
func (h *Histogram) Snapshot() (cumulative map[float64]uint64, count uint64, sum float64) {
	cumulative = make(map[float64]uint64, len(QueueWaitBuckets))
	for i, b := range QueueWaitBuckets {
		count += h.buckets[i].Load()
		cumulative[b] = count
	}
	count += h.buckets[len(QueueWaitBuckets)].Load()
	return cumulative, count, time.Duration(h.sumNs.Load()).Seconds()
}
