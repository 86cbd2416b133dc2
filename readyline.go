package caddysnake

import (
	"cmp"
	"fmt"
	"os"

	"go.uber.org/zap"
)

// What the start-up line ("python app ready") says about where an app
// runs from (the site: site.go).

// defaultWorkingDir is the folder an app without working_dir is imported
// from: Caddy's working folder, as uvicorn and gunicorn do with theirs, so
// that `python "app:app"` run from the app's folder finds app.py. "" when
// working_dir is set (or the folder is unknown).
func defaultWorkingDir(workingDir string) string {
	if workingDir != "" {
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	return wd
}

// readyFields are the start-up line's fields the handler knows: the app's
// folders and how it is run. The engine (or the workers) add the rest,
// among them app_from, the folder the module was found in.
func (h *Handler) readyFields(defaultDir, site string) []zap.Field {
	wd := h.WorkingDir
	if wd == "" {
		wd = cmp.Or(defaultDir, "(none)") + " (working_dir not set: Caddy's working folder)"
	}
	return []zap.Field{
		zap.String("site", cmp.Or(site, "(not found in the http app)")),
		zap.String("working_dir", wd),
		zap.String("venv", cmp.Or(h.Venv, "(none)")),
		zap.String("mode", h.mode()),
	}
}

// mode says how the app is served, in the words of its settings.
func (h *Handler) mode() string {
	where := "the main interpreter"
	if h.Interpreters > 0 {
		where = fmt.Sprintf("%d sub-interpreters", h.Interpreters)
	}
	if h.Processes > 0 {
		return fmt.Sprintf("processes %d (%s each)", h.Processes, where)
	}
	return "in Caddy's process, " + where
}
