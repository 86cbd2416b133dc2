package caddysnake

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// siteOf names where an app is served, for the start-up line: each HTTP
// server whose routes hold a python handler with this target, as its
// name, listen addresses and the hosts its top-level route matches
// ("srv0 :443 example.com"). Caddy provisions a handler with no reference
// to its route, so the http app's config is searched for the target; ""
// when it is not found (a handler outside the http app, unit tests).
func siteOf(ctx caddy.Context, key, target string) string {
	app, err := ctx.AppIfConfigured("http")
	if err != nil {
		return ""
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return ""
	}
	t, _ := json.Marshal(target)
	needle := append([]byte(`"`+key+`":`), t...)
	names := make([]string, 0, len(httpApp.Servers))
	for name := range httpApp.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	var sites []string
	for _, name := range names {
		srv := httpApp.Servers[name]
		var hosts []string
		found := false
		for _, r := range srv.Routes {
			raw, err := json.Marshal(r)
			if err != nil || !bytes.Contains(raw, needle) {
				continue
			}
			found = true
			// The matchers are loaded before the handlers (and their raw
			// JSON dropped): read the host matcher itself.
			for _, set := range r.MatcherSets {
				for _, m := range set {
					switch hm := m.(type) {
					case caddyhttp.MatchHost:
						hosts = append(hosts, hm...)
					case *caddyhttp.MatchHost:
						hosts = append(hosts, *hm...)
					}
				}
			}
		}
		if found {
			sites = append(sites, strings.Join(append(append([]string{name}, srv.Listen...), hosts...), " "))
		}
	}
	return strings.Join(sites, "; ")
}

// moduleKey is the JSON key naming the app: module_wsgi or module_asgi.
func (h *Handler) moduleKey() string {
	if h.ModuleASGI != "" {
		return "module_asgi"
	}
	return "module_wsgi"
}
