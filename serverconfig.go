package caddysnake

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"github.com/caddysnake/caddysnake/internal/engine"
	"go.uber.org/zap"
)

// serverOptions is what `caddy python-server` serves, its flags checked
// and defaults filled in (cmd_pythonserver.go).
type serverOptions struct {
	App          string
	Interface    string // "wsgi" or "asgi"; "" until detected
	Listen       string
	Domain       string
	WorkingDir   string
	Venv         string
	Threads      int
	Interpreters int
	Processes    int
	StaticPath   string
	StaticRoute  string
	EnvFile      string
	Reload       bool
	AccessLog    bool
	Debug        bool
	Admin        string // an address, or "off"

	env map[string]string // EnvFile's variables, for the detection
}

// pythonHandlerJSON is the python handler for o, as Caddy's JSON config
// has it.
func pythonHandlerJSON(o serverOptions) (json.RawMessage, error) {
	h := Handler{WorkingDir: o.WorkingDir, Venv: o.Venv, Interpreters: o.Interpreters, Processes: o.Processes,
		EnvFile: o.EnvFile}
	if o.Reload {
		h.Watch = DefaultWatchGlobs // the watch subdirective alone
	}
	switch o.Interface {
	case "asgi":
		if o.Threads != 0 {
			return nil, errors.New("python-server: --threads applies to WSGI apps; an ASGI app runs on one event loop per interpreter")
		}
		h.ModuleASGI = o.App
	case "wsgi":
		h.ModuleWSGI, h.Threads = o.App, o.Threads
	default:
		return nil, fmt.Errorf("python-server: interface %q: expected wsgi or asgi", o.Interface)
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["handler"] = "python"
	return json.Marshal(m)
}

// buildServerConfig lays o out as a Caddy config: one server on o.Listen
// whose route serves the static folder (if any) with file_server first,
// then everything else with the python handler; with a domain, the route
// matches that host, which turns on automatic HTTPS.
func buildServerConfig(o serverOptions) (*caddy.Config, error) {
	python, err := pythonHandlerJSON(o)
	if err != nil {
		return nil, err
	}
	var routes caddyhttp.RouteList
	if o.StaticPath != "" {
		// As handle_path <route>/* { file_server } would: the prefix is
		// stripped, and a missing file is Caddy's 404, never the app's.
		routes = append(routes, caddyhttp.Route{
			MatcherSetsRaw: []caddy.ModuleMap{{
				"path": caddyconfig.JSON(caddyhttp.MatchPath{o.StaticRoute + "/*"}, nil),
			}},
			HandlersRaw: []json.RawMessage{
				caddyconfig.JSONModuleObject(rewrite.Rewrite{StripPathPrefix: o.StaticRoute}, "handler", "rewrite", nil),
				caddyconfig.JSONModuleObject(fileserver.FileServer{Root: o.StaticPath}, "handler", "file_server", nil),
			},
			Terminal: true,
		})
	}
	routes = append(routes, caddyhttp.Route{HandlersRaw: []json.RawMessage{python}})
	route := caddyhttp.Route{
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(caddyhttp.Subroute{Routes: routes}, "handler", "subroute", nil)},
	}
	if o.Domain != "" {
		route.MatcherSetsRaw = []caddy.ModuleMap{{"host": caddyconfig.JSON(caddyhttp.MatchHost{o.Domain}, nil)}}
	}
	server := &caddyhttp.Server{
		Listen:            []string{o.Listen},
		ReadHeaderTimeout: caddy.Duration(10 * time.Second),
		Routes:            caddyhttp.RouteList{route},
	}
	if o.Domain == "" {
		// No TLS, hence no HTTP/2 or 3: saying so is all Caddy would do
		// with them (a warning each at start-up).
		server.Protocols = []string{"h1"}
	}
	if o.AccessLog {
		server.Logs = &caddyhttp.ServerLogConfig{}
	}
	httpApp := caddyhttp.App{Servers: map[string]*caddyhttp.Server{"python": server}}
	persist := false
	cfg := &caddy.Config{
		Admin: &caddy.AdminConfig{
			Disabled: o.Admin == "off",
			Listen:   o.Admin,
			Config:   &caddy.ConfigSettings{Persist: &persist},
		},
		AppsRaw: caddy.ModuleMap{"http": caddyconfig.JSON(httpApp, nil)},
	}
	if o.Admin == "off" {
		cfg.Admin.Listen = ""
	}
	if o.Debug {
		cfg.Logging = &caddy.Logging{Logs: map[string]*caddy.CustomLog{
			"default": {BaseLog: caddy.BaseLog{Level: zap.DebugLevel.CapitalString()}},
		}}
	}
	return cfg, nil
}

// detectPrefix marks python-detect's answer among whatever the app prints
// as it is imported.
const (
	detectPrefix      = "caddysnake-interface="
	detectErrorPrefix = "caddysnake-detect-error=" // then the error as a JSON string
)

// detectInterface imports the app in a short-lived `caddy python-detect`
// (the same binary, so the same CPython and loader) with the env file's
// variables set, and returns "wsgi" or "asgi". A separate process, so that
// Caddy's own never holds a copy of the app it may serve from worker
// processes or sub-interpreters.
func detectInterface(o serverOptions) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "python-detect", "--app", o.App, "--working-dir", o.WorkingDir, "--venv", o.Venv)
	cmd.Env = os.Environ()
	for k, v := range o.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var answer, failure string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), detectPrefix); ok {
			answer = v
		} else if v, ok := strings.CutPrefix(sc.Text(), detectErrorPrefix); ok {
			_ = json.Unmarshal([]byte(v), &failure)
		}
	}
	if answer == "wsgi" || answer == "asgi" {
		return answer, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("python-server: importing %s to tell WSGI from ASGI took over 2 minutes: pass --interface wsgi or asgi", o.App)
	}
	if failure != "" {
		return "", fmt.Errorf("python-server: cannot import the app to tell WSGI from ASGI: %s", failure)
	}
	return "", fmt.Errorf("python-server: cannot import the app to tell WSGI from ASGI (%v): %s", runErr,
		strings.TrimSpace(stderr.String()))
}

func cmdPythonDetect(fs caddycmd.Flags) (int, error) {
	iface, err := engine.DetectInterface(fs.String("app"), fs.String("working-dir"), fs.String("venv"), nil)
	if err != nil {
		msg, _ := json.Marshal(err.Error())
		fmt.Println(detectErrorPrefix + string(msg))
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Println(detectPrefix + iface)
	return 0, nil
}
