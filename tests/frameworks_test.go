package tests

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON (%v): %.500s", err, b)
	}
	return m
}

func TestFlaskApp(t *testing.T) {
	t.Parallel()
	requireVenv(t)
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "flask_site:app", "venv {{VENV}}"))

	m := decodeJSON(t, c.get(t, "/json?x=1", 200))
	if args, _ := m["args"].(map[string]any); m["framework"] != "flask" || args["x"] != "1" {
		t.Errorf("/json: %v", m)
	}

	form := url.Values{"name": {"caddy snake é"}, "other": {"2"}}.Encode()
	resp, b := c.do(t, "POST", c.URL("/form"), strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 200 {
		t.Fatalf("/form: %d %s", resp.StatusCode, b)
	}
	m = decodeJSON(t, b)
	if m["name"] != "caddy snake é" || m["n"] != float64(2) {
		t.Errorf("/form: %v", m)
	}

	payload := `{"a": [1, 2, 3], "b": "x"}`
	resp, b = c.do(t, "POST", c.URL("/jsonpost"), strings.NewReader(payload), "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("/jsonpost: %d %s", resp.StatusCode, b)
	}
	m = decodeJSON(t, b)
	got, _ := json.Marshal(m["got"])
	if string(got) != `{"a":[1,2,3],"b":"x"}` || m["len"] != float64(len(payload)) {
		t.Errorf("/jsonpost: %v", m)
	}

	c.get(t, "/no/such/route", 404)
}

func TestDjangoApp(t *testing.T) {
	t.Parallel()
	requireVenv(t)
	c := startCaddy(t, pySite("http://127.0.0.1:{{PORT}}", "django_site:application", "venv {{VENV}}"))

	m := decodeJSON(t, c.get(t, "/json/", 200))
	if m["framework"] != "django" || m["method"] != "GET" || m["path"] != "/json/" {
		t.Errorf("/json/: %v", m)
	}

	body := strings.Repeat("django body ", 10_000)
	resp, b := c.do(t, "POST", c.URL("/echo/"), strings.NewReader(body), "Content-Type", "text/plain")
	if resp.StatusCode != 200 {
		t.Fatalf("/echo/: %d %.500s", resp.StatusCode, b)
	}
	m = decodeJSON(t, b)
	if m["len"] != float64(len(body)) || m["sha256"] != sha([]byte(body)) {
		t.Errorf("/echo/: %v, want len %d", m, len(body))
	}

	resp, b = c.do(t, "POST", c.URL("/echo/"), strings.NewReader(`{"k": 1}`), "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("/echo/ json: %d %.500s", resp.StatusCode, b)
	}
	m = decodeJSON(t, b)
	if j, _ := m["json"].(map[string]any); j["k"] != float64(1) {
		t.Errorf("/echo/ json: %v", m)
	}

	c.get(t, "/no/such/view/", 404)
}
