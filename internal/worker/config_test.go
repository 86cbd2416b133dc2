package worker

import (
	"reflect"
	"testing"
	"time"

	"github.com/caddysnake/caddysnake/internal/engine"
)

func TestConfigRoundTrip(t *testing.T) {
	for _, cfg := range []engine.Config{
		{WSGI: &engine.WSGIOptions{Target: "app:app", WorkingDir: "/w", Venv: "/v", Threads: 4,
			MaxWait: 3 * time.Second, Timeout: time.Minute, BodyTimeout: 30 * time.Second}, Interpreters: 2},
		{ASGI: &engine.ASGIOptions{Target: "m:a", Lifespan: "on", Loop: "asyncio",
			StartupTimeout: time.Second, ShutdownTimeout: 2 * time.Second, WSMaxMessage: 1 << 20,
			WSCompression: "off", RequestTimeout: time.Minute, BodyTimeout: time.Second}, FreeThreaded: true},
	} {
		s, err := EncodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeConfig(s)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, cfg) {
			t.Fatalf("round trip: got %+v, want %+v", got, cfg)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	if _, err := EncodeConfig(engine.Config{}); err == nil {
		t.Fatal("a config with neither WSGI nor ASGI was encoded")
	}
	for _, s := range []string{"", "{}", `{"WSGI":{"Target":"a:b"},"Bogus":1}`, "not json"} {
		if _, err := DecodeConfig(s); err == nil {
			t.Fatalf("DecodeConfig(%q) accepted", s)
		}
	}
}
