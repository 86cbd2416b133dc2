package caddysnake

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// DefaultStopTimeout bounds how long the requests in flight may run on once
// Caddy stops or reloads, when its grace_period is not set: Caddy's own
// default is to wait forever, which one stuck request turns into a process
// that never exits (and, with SO_REUSEPORT, keeps taking connections from
// its replacement). 30s is systemd's and Kubernetes' usual stop budget
// less the lifespan shutdown.
const DefaultStopTimeout = 30 * time.Second

func init() {
	engine.Host(caddy.Exiting, caddy.Log)
}

// stopper abandons an app's requests in flight once the drain has lasted
// long enough (grace_period, else DefaultStopTimeout). The drain starts
// when the first of its servers begins to shut down (stop, or a reload that
// replaces them) or when the handler is cleaned up, whichever comes first.
type stopper struct {
	bound time.Duration
	once  sync.Once
	timer *time.Timer
	// Requests inside ServeHTTP, and how many ever entered: a reload
	// closes the app once they stop coming (closeWhenQuiet).
	inside, entered atomic.Int64
}

// watchShutdown arms s on the shutdown of the HTTP servers this config
// runs (every server of the http app: they stop together).
func (h *Handler) watchShutdown(ctx caddy.Context) {
	h.stop = &stopper{bound: DefaultStopTimeout}
	app, err := ctx.AppIfConfigured("http")
	if err != nil {
		return // not under the http app (unit tests): Cleanup arms it
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return
	}
	if httpApp.GracePeriod > 0 {
		h.stop.bound = time.Duration(httpApp.GracePeriod)
	}
	for _, srv := range httpApp.Servers {
		srv.RegisterOnShutdown(h.startDrain)
	}
}

// startDrain starts the clock on the requests in flight: when it runs out
// they are abandoned (503, or an aborted response; WSGI threads that do not
// come back are written off), so stop and reload always end.
func (h *Handler) startDrain() {
	if h.stop == nil {
		return // never provisioned
	}
	h.stop.once.Do(func() {
		app, logger, bound := h.app, h.logger, h.stop.bound
		if app == nil {
			return
		}
		h.stop.timer = time.AfterFunc(bound, func() {
			logger.Warn("python: requests still running after the stop bound are being abandoned",
				zap.Duration("bound", bound))
			app.Abandon()
		})
	})
}

// A reload cleans the old config's modules up as soon as its servers began
// to shut down, not once they finished (caddyhttp.App.Stop waits for them
// only when Caddy exits): a request already read from an old connection
// may still reach this handler after Cleanup. Closing the app at once
// would answer it 503; so the app closes once no request is inside and
// none came for lateQuiet (old connections close after their current
// request), or after the stop bound at the latest. WebSockets are not
// waited for: the app's close is what closes them (1001). Worker processes only
// (see Cleanup): in process, such a request gets 503.
const (
	lateQuiet = 250 * time.Millisecond
	latePoll  = 25 * time.Millisecond
)

func (h *Handler) closeWhenQuiet() {
	deadline := time.Now().Add(h.stop.bound)
	seen, quietSince := h.stop.entered.Load(), time.Now()
	for time.Now().Before(deadline) && !caddy.Exiting() {
		time.Sleep(latePoll)
		if n := h.stop.entered.Load(); n != seen || h.stop.inside.Load() > 0 {
			seen, quietSince = n, time.Now()
			continue
		}
		if time.Since(quietSince) >= lateQuiet {
			break
		}
	}
	h.app.Close()
}

// isUpgrade: an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT (a
// WebSocket), which a reload closes (1001) when the app closes.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodConnect || r.Header.Get("Upgrade") != ""
}
