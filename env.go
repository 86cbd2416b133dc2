package caddysnake

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// envName is what env and env_file accept as a variable name: what shells
// and .env files use, so that a typo (a space, a dash) is caught at
// validate rather than set silently.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func checkEnvName(name string) error {
	if !envName.MatchString(name) {
		return fmt.Errorf("%q is not a variable name: use letters, digits and _, not starting with a digit", name)
	}
	if strings.HasPrefix(name, "CADDYSNAKE_WORKER_") {
		return fmt.Errorf("%s is caddysnake's own (the CADDYSNAKE_WORKER_ variables carry a worker's config and limits)", name)
	}
	return nil
}

// resolveEnv reads env_file and lays env over it (a variable set by env
// wins), checking every name and value, and makes h.env ("NAME=value",
// sorted). env_file is read at each config load, so `caddy reload` picks up
// its changes.
func (h *Handler) resolveEnv() error {
	vars := map[string]string{}
	if h.EnvFile != "" {
		abs, err := filepath.Abs(h.EnvFile)
		if err != nil {
			return fmt.Errorf("python: env_file %q: %v", h.EnvFile, err)
		}
		h.EnvFile = abs
		if vars, err = parseEnvFile(abs); err != nil {
			return fmt.Errorf("python: %v", err)
		}
	}
	for k, v := range h.Env {
		if err := checkEnvName(k); err != nil {
			return fmt.Errorf("python: env %v", err)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("python: env %s: the value holds a NUL byte, which no environment can carry", k)
		}
		vars[k] = v
	}
	h.env = h.env[:0]
	for k, v := range vars {
		h.env = append(h.env, k+"="+v)
	}
	slices.Sort(h.env)
	return nil
}

// parseEnvFile reads a .env file: NAME=value lines; blank lines and lines
// starting with # are skipped; "export " before a name is allowed; a value
// may be in single quotes (taken as is) or double quotes (\n, \t, \r, \",
// \\ and \$ escapes); an unquoted value ends at " #" (a comment). Values
// are literal: no ${VAR} expansion. Errors name the line.
func parseEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("env_file: %v", err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, err := parseEnvLine(line)
		if err != nil {
			return nil, fmt.Errorf("env_file %s line %d: %v", path, n, err)
		}
		vars[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("env_file %s: %v", path, err)
	}
	return vars, nil
}

func parseEnvLine(line string) (string, string, error) {
	line = strings.TrimPrefix(line, "export ")
	name, raw, ok := strings.Cut(line, "=")
	if !ok {
		return "", "", fmt.Errorf("expected NAME=value, got %q", line)
	}
	name = strings.TrimSpace(name)
	if err := checkEnvName(name); err != nil {
		return "", "", err
	}
	raw = strings.TrimSpace(raw)
	var value, rest string
	switch {
	case strings.HasPrefix(raw, "'"):
		end := strings.IndexByte(raw[1:], '\'')
		if end < 0 {
			return "", "", fmt.Errorf("%s: no closing ' (values span one line)", name)
		}
		value, rest = raw[1:1+end], raw[2+end:]
	case strings.HasPrefix(raw, `"`):
		var b strings.Builder
		i := 1
		for ; i < len(raw) && raw[i] != '"'; i++ {
			if raw[i] == '\\' && i+1 < len(raw) {
				i++
				switch c := raw[i]; c {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case '"', '\\', '$':
					b.WriteByte(c)
				default:
					b.WriteByte('\\')
					b.WriteByte(c)
				}
				continue
			}
			b.WriteByte(raw[i])
		}
		if i >= len(raw) {
			return "", "", fmt.Errorf(`%s: no closing " (values span one line)`, name)
		}
		value, rest = b.String(), raw[i+1:]
	default:
		value = raw
		if i := strings.Index(value, " #"); i >= 0 {
			value = value[:i]
		}
		if i := strings.Index(value, "\t#"); i >= 0 {
			value = value[:i]
		}
		value = strings.TrimSpace(value)
	}
	if rest = strings.TrimSpace(rest); rest != "" && !strings.HasPrefix(rest, "#") {
		return "", "", fmt.Errorf("%s: unexpected %q after the quoted value", name, rest)
	}
	if strings.ContainsRune(value, 0) {
		return "", "", fmt.Errorf("%s: the value holds a NUL byte", name)
	}
	return name, value, nil
}

// sharedEnv holds, per loaded config, the variables that apps served in
// Caddy's own process set: they all share that process's environment, so
// two of them setting one variable to different values would each see
// whichever was set last. Keyed by the config's context (its Done
// channel), so the config a reload replaces does not count.
var sharedEnv = struct {
	sync.Mutex
	byConfig map[<-chan struct{}]map[string]envClaim
}{byConfig: map[<-chan struct{}]map[string]envClaim{}}

type envClaim struct{ value, app string }

// claimSharedEnv refuses h's variables if another in-process app of the
// same config set one of them to another value.
func (h *Handler) claimSharedEnv(ctx caddy.Context) error {
	if h.Processes > 0 || len(h.env) == 0 {
		return nil
	}
	app := h.ModuleWSGI + h.ModuleASGI
	sharedEnv.Lock()
	defer sharedEnv.Unlock()
	key := ctx.Done()
	claims, ok := sharedEnv.byConfig[key]
	if !ok {
		claims = map[string]envClaim{}
		sharedEnv.byConfig[key] = claims
		context.AfterFunc(ctx, func() {
			sharedEnv.Lock()
			delete(sharedEnv.byConfig, key)
			sharedEnv.Unlock()
		})
	}
	for _, kv := range h.env {
		k, v, _ := strings.Cut(kv, "=")
		if c, ok := claims[k]; ok && c.value != v {
			return fmt.Errorf("python: env %s is %q for %s but %q for %s; apps served in Caddy's own process share "+
				"one environment: give both the same value, or serve one of them with processes 1 (a worker process "+
				"has an environment of its own)", k, c.value, c.app, v, app)
		}
	}
	for _, kv := range h.env {
		k, v, _ := strings.Cut(kv, "=")
		claims[k] = envClaim{v, app}
	}
	return nil
}

// unmarshalEnv reads `env NAME value` (repeatable) and `env_file path`.
func (h *Handler) unmarshalEnv(d *caddyfile.Dispenser, sub string) error {
	args := d.RemainingArgs()
	if sub == "env_file" {
		if len(args) != 1 {
			return d.Errf("env_file takes one argument, the file's path")
		}
		if h.EnvFile != "" {
			return d.Errf("env_file is already set to %q", h.EnvFile)
		}
		h.EnvFile = args[0]
		return nil
	}
	if len(args) != 2 {
		return d.Errf(`env takes a name and a value, e.g. env DJANGO_SETTINGS_MODULE mysite.settings (quote a value with spaces: "a b")`)
	}
	if err := checkEnvName(args[0]); err != nil {
		return d.Errf("env: %v", err)
	}
	if _, dup := h.Env[args[0]]; dup {
		return d.Errf("env %s is set twice", args[0])
	}
	if h.Env == nil {
		h.Env = map[string]string{}
	}
	h.Env[args[0]] = args[1]
	return nil
}
