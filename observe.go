package caddysnake

import (
	"sync"

	"github.com/caddysnake/caddysnake/internal/engine"
	"github.com/caddysnake/caddysnake/internal/worker"
	"github.com/prometheus/client_golang/prometheus"
)

// Observability: each python handler keeps an engine.Stats (atomic adds
// on the request path, nothing more); the metrics below and the admin API
// (admin.go) read them when asked. Handlers register here once
// provisioned and leave on Cleanup, so after a reload only the new
// config's apps are reported.

// live is every provisioned handler, for the admin API.
var live struct {
	sync.Mutex
	handlers []*Handler
}

// appName is the app's label in metrics and its name in the admin API:
// the module:attribute target.
func (h *Handler) appName() string {
	if h.ModuleASGI != "" {
		return h.ModuleASGI
	}
	return h.ModuleWSGI
}

// pool is the worker pool serving the app, nil in process (processes 0).
func (h *Handler) pool() *worker.Pool {
	p, _ := h.app.(*worker.Pool)
	return p
}

// observe registers h (provisioned, serving) with the admin API and with
// the metrics of its config's registry.
func (h *Handler) observe(reg *prometheus.Registry) error {
	live.Lock()
	live.handlers = append(live.handlers, h)
	live.Unlock()
	if reg == nil {
		return nil
	}
	h.metricsReg = reg
	return addToCollector(reg, h)
}

// unobserve undoes observe (Cleanup).
func (h *Handler) unobserve() {
	live.Lock()
	for i, o := range live.handlers {
		if o == h {
			live.handlers = append(live.handlers[:i], live.handlers[i+1:]...)
			break
		}
	}
	live.Unlock()
	if h.metricsReg != nil {
		removeFromCollector(h.metricsReg, h)
	}
}

// liveHandlers is a copy of live.handlers.
func liveHandlers() []*Handler {
	live.Lock()
	defer live.Unlock()
	return append([]*Handler(nil), live.handlers...)
}

// collectors: one per Caddy metrics registry (each config load has its
// own), holding that config's handlers. One collector for all apps, not
// one per app, so that two handlers of one app in one server (two routes)
// add up instead of colliding as duplicate registrations; it is unregistered with its
// last handler, so a reload never registers twice.
var collectors = struct {
	sync.Mutex
	m map[*prometheus.Registry]*appCollector
}{m: map[*prometheus.Registry]*appCollector{}}

func addToCollector(reg *prometheus.Registry, h *Handler) error {
	collectors.Lock()
	defer collectors.Unlock()
	c := collectors.m[reg]
	if c == nil {
		c = &appCollector{handlers: map[*Handler]struct{}{}}
		if err := reg.Register(c); err != nil {
			return err
		}
		collectors.m[reg] = c
	}
	c.mu.Lock()
	c.handlers[h] = struct{}{}
	c.mu.Unlock()
	return nil
}

func removeFromCollector(reg *prometheus.Registry, h *Handler) {
	collectors.Lock()
	defer collectors.Unlock()
	c := collectors.m[reg]
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.handlers, h)
	empty := len(c.handlers) == 0
	c.mu.Unlock()
	if empty {
		reg.Unregister(c)
		delete(collectors.m, reg)
	}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("caddysnake_"+name, help, append([]string{"app", "server"}, labels...), nil)
}

var (
	descThreads      = desc("total_threads", "WSGI worker threads (in process mode: threads per worker times ready workers).")
	descBusyThreads  = desc("busy_threads", "WSGI worker threads running a request (in process mode: requests at workers, up to their threads).")
	descQueueDepth   = desc("queue_depth", "Requests waiting for a WSGI worker thread (in Caddy's process; 0 in process mode).")
	descQueueWait    = desc("queue_wait_seconds", "How long requests waited for a WSGI worker thread (in Caddy's process).")
	descRequests     = desc("requests_total", "Requests answered, by status class (1xx..5xx; other: aborted before a status).", "class")
	descInFlight     = desc("requests_in_flight", "Requests queued or running.")
	descBusy         = desc("busy_rejections_total", "Requests answered 503 because no thread took them within max_wait.")
	descTimeouts     = desc("timeouts_total", "Requests answered 504 (request_timeout) or 408 (request_body_timeout).", "kind")
	descInterpreters = desc("interpreters", "Python interpreters serving the app (the main one or sub-interpreters; times workers in process mode).")
	descWorkers      = desc("total_workers", "Worker processes serving the app (processes N; 0 in process).")
	descRestarts     = desc("worker_restarts_total", "Worker processes started in place of another (after a crash, recycling, an admin restart).")
	descCrashes      = desc("worker_crashes_total", "Worker processes that died unasked.")
	descWebSockets   = desc("open_websockets", "WebSocket connections open.")
)

var classes = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// appCollector reports its handlers' Stats at scrape time.
type appCollector struct {
	mu       sync.Mutex
	handlers map[*Handler]struct{}
}

func (c *appCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descThreads, descBusyThreads, descQueueDepth, descQueueWait, descRequests,
		descInFlight, descBusy, descTimeouts, descInterpreters, descWorkers, descRestarts, descCrashes, descWebSockets} {
		ch <- d
	}
}

// appSample is one app's figures, summed over its handlers.
type appSample struct {
	threads, busyThreads, queued, inFlight, interpreters, workers, websockets float64
	requests                                                                  [6]float64
	busy, timeouts, bodyTimeouts, restarts, crashes                           float64
	waitBuckets                                                               map[float64]uint64
	waitCount                                                                 uint64
	waitSum                                                                   float64
}

func (c *appCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	hs := make([]*Handler, 0, len(c.handlers))
	for h := range c.handlers {
		hs = append(hs, h)
	}
	c.mu.Unlock()
	type key struct{ app, server string }
	samples := map[key]*appSample{}
	for _, h := range hs {
		k := key{h.appName(), h.serverName}
		s := samples[k]
		if s == nil {
			s = &appSample{waitBuckets: map[float64]uint64{}}
			for _, b := range engine.QueueWaitBuckets {
				s.waitBuckets[b] = 0 // the same series in process mode
			}
			samples[k] = s
		}
		h.sample(s)
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for k, s := range samples {
		m := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, t, v, append([]string{k.app, k.server}, labels...)...)
		}
		m(descThreads, gauge, s.threads)
		m(descBusyThreads, gauge, s.busyThreads)
		m(descQueueDepth, gauge, s.queued)
		ch <- prometheus.MustNewConstHistogram(descQueueWait, s.waitCount, s.waitSum, s.waitBuckets, k.app, k.server)
		for i, v := range s.requests {
			m(descRequests, counter, v, classes[i])
		}
		m(descInFlight, gauge, s.inFlight)
		m(descBusy, counter, s.busy)
		m(descTimeouts, counter, s.timeouts, "request_timeout")
		m(descTimeouts, counter, s.bodyTimeouts, "request_body_timeout")
		m(descInterpreters, gauge, s.interpreters)
		m(descWorkers, gauge, s.workers)
		m(descRestarts, counter, s.restarts)
		m(descCrashes, counter, s.crashes)
		m(descWebSockets, gauge, s.websockets)
	}
}

// sample adds h's figures to s.
func (h *Handler) sample(s *appSample) {
	st := h.stats
	for i := range s.requests {
		s.requests[i] += float64(st.Requests[i].Load())
	}
	s.busy += float64(st.Busy.Load())
	s.timeouts += float64(st.Timeouts.Load())
	s.bodyTimeouts += float64(st.BodyTimeouts.Load())
	s.inFlight += float64(st.InFlight.Load())
	s.websockets += float64(st.WebSockets.Load())
	s.restarts += float64(st.Restarts.Load())
	s.crashes += float64(st.Crashes.Load())
	interps := float64(max(h.Interpreters, 1))
	if p := h.pool(); p != nil {
		// The workers' own threads and queues stay in them: here, what
		// Caddy sees of them (see README, Metrics).
		ready, atWorkers := 0.0, 0.0
		for _, w := range p.Workers() {
			if w.Ready {
				ready++
			}
			atWorkers += float64(w.InFlight)
		}
		threads := float64(p.Threads()) * interps * ready
		s.workers += ready
		s.interpreters += interps * ready
		s.threads += threads
		s.busyThreads += min(atWorkers, threads)
		return
	}
	s.interpreters += interps
	th := st.Probe()
	s.threads += float64(th.Total)
	s.busyThreads += float64(th.Busy)
	s.queued += float64(th.Queued)
	buckets, count, sum := st.QueueWait.Snapshot()
	for b, n := range buckets {
		s.waitBuckets[b] += n
	}
	s.waitCount += count
	s.waitSum += sum
}
