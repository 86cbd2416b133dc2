package tests

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// adminApp is what the tests read of GET /python/apps.
type adminApp struct {
	App            string `json:"app"`
	Mode           string `json:"mode"`
	RequestsServed int    `json:"requests_served"`
	Threads        []struct {
		State  string `json:"state"`
		Method string `json:"method"`
		Path   string `json:"path"`
		Since  string `json:"since"`
	} `json:"threads"`
	Workers []struct {
		Pid     int  `json:"pid"`
		Ready   bool `json:"ready"`
		Threads []struct {
			State  string `json:"state"`
			Method string `json:"method"`
			Path   string `json:"path"`
		} `json:"threads"`
	} `json:"workers"`
}

func (c *caddy) adminApps(t *testing.T) []adminApp {
	t.Helper()
	status, b := c.admin(t, "GET", "/python/apps")
	if status != 200 {
		t.Fatalf("GET /python/apps: %d %s", status, b)
	}
	var apps []adminApp
	if err := json.Unmarshal(b, &apps); err != nil {
		t.Fatalf("GET /python/apps: %v\n%s", err, b)
	}
	return apps
}

// busyPaths lists "METHOD path" of the busy threads the admin view shows.
func busyPaths(a adminApp) []string {
	var out []string
	for _, th := range a.Threads {
		if th.State == "busy" {
			out = append(out, th.Method+" "+th.Path)
		}
	}
	for _, w := range a.Workers {
		for _, th := range w.Threads {
			if th.State == "busy" {
				out = append(out, th.Method+" "+th.Path)
			}
		}
	}
	return out
}

// The admin view lists the app, its mode, and a request in flight with its
// method and path on a busy thread; once it is over, the thread is idle and
// the request counted.
func TestAdminListsRequestInFlight(t *testing.T) {
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "threads 2", inOneProcess()))
	c.get(t, "/fast", 200)
	apps := c.adminApps(t)
	if len(apps) != 1 || apps[0].App != "wsgi_slow:app" {
		t.Fatalf("apps: %+v, want one, wsgi_slow:app", apps)
	}
	wantMode := "in-process"
	if processesMode > 0 {
		wantMode = "processes"
	}
	if apps[0].Mode != wantMode {
		t.Errorf("mode %q, want %q", apps[0].Mode, wantMode)
	}
	if apps[0].RequestsServed != 1 {
		t.Errorf("requests_served %d, want 1", apps[0].RequestsServed)
	}
	slow := slowRequest(c, "/slow-one?i=1")
	var seen []string
	ok := waitFor(800*time.Millisecond, func() bool {
		seen = busyPaths(c.adminApps(t)[0])
		return len(seen) == 1 && seen[0] == "GET /slow-one"
	})
	if !ok {
		t.Errorf("busy threads during a 1s request: %q, want [GET /slow-one]", seen)
	}
	if st := <-slow; st != 200 {
		t.Fatalf("slow request: %d", st)
	}
	if seen = busyPaths(c.adminApps(t)[0]); len(seen) != 0 {
		t.Errorf("busy threads after the request: %q, want none", seen)
	}
}

// POST /python/apps/<app>/restart replaces the worker processes with new
// ones (new pids) and the app keeps answering; in process it is a 501
// that says why.
func TestAdminRestart(t *testing.T) {
	if processesMode == 0 {
		c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app"))
		status, b := c.admin(t, "POST", "/python/apps/wsgi_slow:app/restart")
		if status != http.StatusNotImplemented {
			t.Errorf("restart in process: %d %s, want 501", status, b)
		}
		c.get(t, "/fast", 200)
	}
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "wsgi_slow:app", "processes 2"))
	pids := func() map[int]bool {
		out := map[int]bool{}
		for _, w := range c.adminApps(t)[0].Workers {
			if w.Ready {
				out[w.Pid] = true
			}
		}
		return out
	}
	old := pids()
	if len(old) != 2 {
		t.Fatalf("workers before restart: %v, want 2 ready", old)
	}
	if status, b := c.admin(t, "POST", "/python/apps/nosuch:app/restart"); status != http.StatusNotFound {
		t.Errorf("restart of an unknown app: %d %s, want 404", status, b)
	}
	if status, b := c.admin(t, "POST", "/python/apps/wsgi_slow:app/restart"); status != 200 {
		t.Fatalf("restart: %d %s", status, b)
	}
	var now map[int]bool
	replaced := waitFor(30*time.Second, func() bool {
		now = pids()
		if len(now) != 2 {
			return false
		}
		for p := range now {
			if old[p] {
				return false
			}
		}
		return true
	})
	if !replaced {
		t.Errorf("workers after restart: %v, want 2 new pids (old: %v)", now, old)
	}
	c.get(t, "/fast", 200)
	if got := metric(t, c.scrape(t), `caddysnake_worker_restarts_total{app="wsgi_slow:app"}`); got != 2 {
		t.Errorf("worker_restarts_total = %v, want 2", got)
	}
}
