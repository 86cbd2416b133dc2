package caddysnake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddysnake/caddysnake/internal/engine"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the python apps' view under Caddy's admin endpoint:
//
//	GET  /python/apps                 the apps, their workers, threads and requests in flight
//	POST /python/apps/<app>/restart   replace an app's worker processes gracefully
//
// <app> is the module:attribute target (URL-escaped if need be).
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.python",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/python/apps", Handler: caddy.AdminHandlerFunc(serveApps)},
		{Pattern: "/python/apps/", Handler: caddy.AdminHandlerFunc(serveAppAction)},
	}
}

// appView is one app in GET /python/apps.
type appView struct {
	App       string `json:"app"`
	Server    string `json:"server,omitempty"` // Caddy's server name (srv0, ...)
	Interface string `json:"interface"`        // wsgi or asgi
	// Mode: "in-process" (Caddy's own process) or "processes".
	Mode         string `json:"mode"`
	Interpreters int    `json:"interpreters"` // per process; 0: the main one
	// RequestsServed: requests answered (by this config's handler).
	RequestsServed uint64 `json:"requests_served"`
	InFlight       int64  `json:"requests_in_flight"`
	WebSockets     int64  `json:"open_websockets"`
	// In process: the WSGI threads (busy ones with their request) and
	// the requests queued for one; ASGI: its requests in flight.
	Threads  []threadView  `json:"threads,omitempty"`
	Queued   []requestView `json:"queued,omitempty"`
	Requests []requestView `json:"requests,omitempty"`
	Workers  []workerView  `json:"workers,omitempty"`
}

type workerView struct {
	Pid            int   `json:"pid"`
	Ready          bool  `json:"ready"`
	Recycling      bool  `json:"recycling,omitempty"`
	RequestsServed int64 `json:"requests_served"`
	InFlight       int64 `json:"requests_in_flight"`
	// WSGI: the worker's threads as Caddy infers them (its requests in
	// flight, oldest first, fill its threads; the rest wait in it).
	Threads  []threadView  `json:"threads,omitempty"`
	Queued   []requestView `json:"queued,omitempty"`
	Requests []requestView `json:"requests,omitempty"` // ASGI
}

type threadView struct {
	State string `json:"state"` // busy or idle
	*requestView
}

type requestView struct {
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Since  time.Time `json:"since"` // arrival at Caddy
	// Running: when a thread took it (in process, WSGI); For: how long
	// since arrival, as text.
	Running *time.Time `json:"running_since,omitempty"`
	For     string     `json:"for"`
}

func viewOf(t *engine.Inflight, now time.Time) *requestView {
	v := &requestView{Method: t.Method, Path: t.Path, Since: t.Since, For: now.Sub(t.Since).Round(time.Millisecond).String()}
	if ns := t.Started.Load(); ns != 0 {
		r := time.Unix(0, ns)
		v.Running = &r
	}
	return v
}

func serveApps(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use GET", r.Method)}
	}
	views := []appView{}
	for _, h := range liveHandlers() {
		views = append(views, h.view(time.Now()))
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(views)
}

// view describes h as GET /python/apps does.
func (h *Handler) view(now time.Time) appView {
	st := h.stats
	v := appView{App: h.appName(), Server: h.serverName, Interface: "wsgi", Mode: "in-process", Interpreters: h.Interpreters,
		InFlight: st.InFlight.Load(), WebSockets: st.WebSockets.Load()}
	asgi := h.ModuleASGI != ""
	if asgi {
		v.Interface = "asgi"
	}
	for i := range st.Requests {
		v.RequestsServed += st.Requests[i].Load()
	}
	th := st.Probe() // first: it marks the running requests
	listed := st.Listed()
	sort.Slice(listed, func(i, j int) bool { return listed[i].Since.Before(listed[j].Since) })
	if p := h.pool(); p != nil {
		v.Mode = "processes"
		perWorker := max(p.Threads(), 0) * max(h.Interpreters, 1)
		for _, wi := range p.Workers() {
			wv := workerView{Pid: wi.Pid, Ready: wi.Ready, Recycling: wi.Recycling, RequestsServed: wi.Served, InFlight: wi.InFlight}
			var mine []*engine.Inflight
			for _, t := range listed {
				if t.Pid.Load() == int64(wi.Pid) {
					mine = append(mine, t)
				}
			}
			if asgi {
				for _, t := range mine {
					wv.Requests = append(wv.Requests, *viewOf(t, now))
				}
			} else {
				wv.Threads, wv.Queued = threadsOf(mine, perWorker, now, true)
			}
			v.Workers = append(v.Workers, wv)
		}
		return v
	}
	if asgi {
		for _, t := range listed {
			v.Requests = append(v.Requests, *viewOf(t, now))
		}
		return v
	}
	v.Threads, v.Queued = threadsOf(listed, th.Total, now, false)
	return v
}

// threadsOf lays out n threads: busy ones with their requests, then idle
// ones; requests that no thread runs are queued. byOrder: the requests'
// state is unknown here (a worker's), so the oldest fill the threads.
func threadsOf(reqs []*engine.Inflight, n int, now time.Time, byOrder bool) ([]threadView, []requestView) {
	var threads []threadView
	var queued []requestView
	for _, t := range reqs {
		running := t.Started.Load() != 0
		if byOrder {
			running = len(threads) < n
		}
		if running && len(threads) < n {
			threads = append(threads, threadView{State: "busy", requestView: viewOf(t, now)})
		} else {
			queued = append(queued, *viewOf(t, now))
		}
	}
	for len(threads) < n {
		threads = append(threads, threadView{State: "idle"})
	}
	return threads, queued
}

// serveAppAction serves POST /python/apps/<app>/restart.
func serveAppAction(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/python/apps/")
	name, action, ok := strings.Cut(rest, "/")
	if !ok || action != "restart" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown path %s: use GET /python/apps or POST /python/apps/<app>/restart", r.URL.Path)}
	}
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use POST", r.Method)}
	}
	if n, err := url.PathUnescape(name); err == nil {
		name = n
	}
	var found, inProcess int
	var pids []int
	for _, h := range liveHandlers() {
		if h.appName() != name {
			continue
		}
		found++
		if p := h.pool(); p != nil {
			pids = append(pids, p.Restart()...)
		} else {
			inProcess++
		}
	}
	switch {
	case found == 0:
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no python app %q: GET /python/apps lists them", name)}
	case len(pids) == 0 && inProcess > 0:
		return caddy.APIError{HTTPStatus: http.StatusNotImplemented, Err: fmt.Errorf(
			"python app %q is served in Caddy's own process, where CPython cannot unload an app's modules: "+
				"restart applies to worker processes (set processes 1 or more); to load new code in process, "+
				"serve it from sub-interpreters (interpreters 1 or more) and run caddy reload --force", name)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"app": name, "restarting_pids": pids})
}
