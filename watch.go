package caddysnake

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/caddysnake/caddysnake/internal/engine"
	"github.com/caddysnake/caddysnake/internal/watch"
	"go.uber.org/zap"
)

// DefaultWatchGlobs is what an empty watch list means: the app's Python
// files, in every folder under working_dir.
var DefaultWatchGlobs = []string{"*.py"}

// reloader is what a watched app is served by: a worker pool, which can
// load the app afresh in new processes while the old ones drain.
type reloader interface{ Reload() error }

// watchGlobs is the globs watched: Watch, or the default if it is empty.
func (h *Handler) watchGlobs() []string {
	if len(h.Watch) == 0 {
		return DefaultWatchGlobs
	}
	return h.Watch
}

// watchProcesses serves a watched app from one worker process when it
// would run in Caddy's own: the main interpreter cannot re-import an app
// cleanly (modules imported by it stay in sys.modules, C extensions
// cannot be unloaded, threads and state it started live on), and a
// process can be replaced whole.
func (h *Handler) watchProcesses() {
	if h.Watch != nil && h.Processes == 0 {
		h.Processes, h.watchForced = 1, true
	}
}

// watchEnv is added to a watched app's workers' environment: they write
// no .pyc files, since CPython checks one against its source's size and
// mtime in whole seconds, and a save that keeps the size within the same
// second as the last one would be masked by the .pyc of the last.
func (h *Handler) watchEnv() []string {
	if h.Watch == nil {
		return nil
	}
	return []string{"PYTHONDONTWRITEBYTECODE=1"}
}

// checkWatch compiles the globs, so that a malformed one fails validate.
func (h *Handler) checkWatch() error {
	if h.Watch == nil {
		return nil
	}
	globs := h.watchGlobs()
	base := h.WorkingDir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		base = wd
	}
	var skip []string
	if h.Venv != "" {
		// Absolute, as the walk's paths are.
		if v, err := filepath.Abs(h.Venv); err == nil {
			skip = append(skip, v)
		}
	}
	name := h.ModuleWSGI + h.ModuleASGI
	warn := func(msg string, files int) {
		h.logger.Warn("python: "+msg, zap.String("app", name), zap.Int("watched", files))
	}
	w, err := watch.New(watch.Options{Base: base, Globs: globs, Skip: skip, Warn: warn})
	if err != nil {
		return fmt.Errorf("python: %v", err)
	}
	h.watcher = w
	return nil
}

// watchFields tell the start-up line what is watched, and why the app
// runs in a worker process.
func (h *Handler) watchFields() []zap.Field {
	if h.Watch == nil {
		return nil
	}
	globs := h.watchGlobs()
	f := []zap.Field{zap.Strings("watch", globs)}
	if h.watchForced {
		f = append(f, zap.String("watch_note", "watched, so served from 1 worker process (processes 1): "+
			"the main interpreter cannot re-import an app cleanly"))
	}
	return f
}

// startWatch polls the watched files and reloads the app when they change.
func (h *Handler) startWatch() {
	if h.watcher == nil {
		return
	}
	r, ok := h.app.(reloader)
	if !ok {
		return // cannot happen: a watched app runs in worker processes
	}
	logger, name := h.logger, h.ModuleWSGI+h.ModuleASGI
	n := h.watcher.Start(func(changed []string) {
		shown := changed
		if len(shown) > 5 {
			shown = shown[:5]
		}
		logger.Info("python: files changed, reloading the app", zap.String("app", name),
			zap.Strings("changed", shown), zap.Int("count", len(changed)))
		switch err := r.Reload(); {
		case errors.Is(err, engine.ErrStopped):
			logger.Debug("python: reload cut short: the app is closing", zap.String("app", name))
		case err != nil:
			logger.Error("python: reload failed; the app keeps serving its previous code until the next change",
				zap.String("app", name), zap.Error(err))
		}
	})
	if n == 0 {
		logger.Warn("python: watch: no file matches the globs yet; a file that appears will reload the app",
			zap.String("app", name), zap.Strings("watch", h.watchGlobs()))
	} else {
		logger.Info("python: watching files for changes", zap.String("app", name), zap.Int("files", n))
	}
}

// stopWatch stops the polling (Cleanup); a reload under way ends once the
// app closes, and waitWatch waits for it.
func (h *Handler) stopWatch() {
	if h.watcher != nil {
		h.watcher.Stop()
	}
}

func (h *Handler) waitWatch() {
	if h.watcher != nil {
		h.watcher.Wait()
	}
}
