package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caddysnake/caddysnake/internal/engine"
)

// ConfigEnv is the environment variable that carries a worker's
// engine.Config from Caddy to the worker it starts.
const ConfigEnv = "CADDYSNAKE_WORKER_CONFIG"

// EncodeConfig lays out cfg for ConfigEnv. engine.Config and its option
// structs are plain exported data (durations are nanoseconds), so JSON
// carries them whole.
func EncodeConfig(cfg engine.Config) (string, error) {
	if (cfg.WSGI == nil) == (cfg.ASGI == nil) {
		return "", errors.New("worker config: exactly one of WSGI and ASGI must be set")
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("worker config: %w", err)
	}
	return string(b), nil
}

// DecodeConfig reads what EncodeConfig wrote; unknown fields are refused
// (a worker from another build than Caddy's).
func DecodeConfig(s string) (engine.Config, error) {
	var cfg engine.Config
	if s == "" {
		return cfg, fmt.Errorf("worker config: %s is not set", ConfigEnv)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("worker config: %w", err)
	}
	if (cfg.WSGI == nil) == (cfg.ASGI == nil) {
		return cfg, errors.New("worker config: exactly one of WSGI and ASGI must be set")
	}
	return cfg, nil
}
